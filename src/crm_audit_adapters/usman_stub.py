"""A stand-in for USMAN that knows no user: ``python -m crm_audit_adapters.usman_stub [--port 8099]``.

It answers every ``POST`` with ``200 {"data": []}`` — USMAN's answer when it knows none of the
emails (docs/usman.md) — on 127.0.0.1 only, and needs no token. A run pointed at it
(``CRM_AUDIT_USMAN_BASE_URL=http://127.0.0.1:8099``, no ``CRM_AUDIT_USMAN_TOKEN``) migrates every
user-authored row with the actor ``[Deleted CRM User]``, the plan's rule for a user USMAN does not
know: no record is lost, none fails, none counts as degraded. It is for migrating on purpose
without SSO ids; a later run does not change actors already written (``trigger --fresh`` does).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["main", "make_server"]

NO_USERS = b'{"data": []}'


class _NoUsers(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(NO_USERS)))
        self.end_headers()
        self.wfile.write(NO_USERS)

    def log_message(self, format: str, *args: object) -> None:
        """Silent: a line per request would bury the runner's own output."""


def make_server(port: int = 8099) -> ThreadingHTTPServer:
    """The stub bound to ``127.0.0.1:port`` (0: a free port), not yet serving."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _NoUsers)
    server.daemon_threads = True
    return server


def main(argv: Sequence[str] | None = None) -> None:
    """Serve until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m crm_audit_adapters.usman_stub", description=__doc__)
    parser.add_argument("--port", type=int, default=8099, help="port on 127.0.0.1 (default 8099)")
    server = make_server(parser.parse_args(argv).port)
    print(f"USMAN stub (knows no user) at http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
