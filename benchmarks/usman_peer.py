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

import json

from crm_audit_adapters.files import read_sso_directory
from support.usman_server import TOKEN, Reply, SeenRequest, UsmanServer, email_key

__all__ = ["TOKEN"]


def main() -> int:
    data_dir, company = Path(sys.argv[1]), sys.argv[2]
    directory = {company: read_sso_directory(data_dir / "sso.jsonl", company)}
    # The tests' answer() rebuilds its case-folded index on every request (fine for a test's dozen
    # users, 5 ms a request for a scale tenant's): here it is built once, answering the same.
    keys = {
        name: {email_key(email): sso for email, sso in users.items()} for name, users in directory.items()
    }

    def answer(server: UsmanServer, request: SeenRequest) -> Reply:
        payload = request.payload
        if not isinstance(payload, dict) or not isinstance(payload.get("emails"), list):
            return Reply(400, b'{"error": "bad request"}')
        users = keys.get(payload["company_sso_id"], {})
        data = [
            {"email": email, "sso_id": users[email_key(email)]}
            for email in payload["emails"]
            if email_key(email) in users
        ]
        server.requests.clear()  # the tests keep every request; a benchmark needs none of them
        return Reply(200, json.dumps({"data": data}).encode())

    with UsmanServer(directory=directory, default=answer) as server:
        print(server.url, flush=True)
        sys.stdin.read()  # until the parent closes the pipe
    return 0


if __name__ == "__main__":
    sys.exit(main())
