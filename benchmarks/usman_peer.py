"""A USMAN for the scale benchmark, in a process of its own so that it never shares the run's GIL.

    .venv/bin/python benchmarks/usman_peer.py DATA_DIR COMPANY_SSO_ID

Serves the SSO directory ``DATA_DIR/sso.jsonl`` with the test suite's USMAN server (the contract of
docs/usman.md, on 127.0.0.1, a free port), prints its base URL on one line, and stops when its
standard input closes (the benchmark that started it ended, however it ended).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from crm_audit_adapters.files import read_sso_directory
from support.usman_server import TOKEN, UsmanServer

__all__ = ["TOKEN"]


def main() -> int:
    data_dir, company = Path(sys.argv[1]), sys.argv[2]
    directory = {company: read_sso_directory(data_dir / "sso.jsonl", company)}
    with UsmanServer(directory=directory) as server:
        print(server.url, flush=True)
        sys.stdin.read()  # until the parent closes the pipe
    return 0


if __name__ == "__main__":
    sys.exit(main())
