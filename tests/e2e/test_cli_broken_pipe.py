"""A reader that closes stdout early (``… | head -1``) ends the command quietly, as Unix tools end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from crm_audit_adapters.cli.main import BROKEN_PIPE

CLI = Path(sys.executable).with_name("crm-audit-migrate")


def test_dry_run_into_a_closed_pipe_stops_without_an_error(tmp_path: Path) -> None:
    """dry-run --out - whose reader took one line and left: no error line, exit 141 (SIGPIPE's)."""
    with subprocess.Popen(
        [str(CLI), "dry-run", "--example", "--out", "-"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        first = process.stdout.readline()
        # The example writes far more than a pipe buffer holds, so the writer meets the closed pipe.
        process.stdout.close()
        stderr = process.stderr.read().decode()
        code = process.wait(timeout=120)
    assert first.startswith(b'{"company_sso_id"')
    assert "error:" not in stderr
    assert "Traceback" not in stderr
    assert "Exception ignored" not in stderr
    assert code == BROKEN_PIPE == 141
