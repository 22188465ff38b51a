"""The CLI run over one mongomock CDP, for the tests of its commands' confirmations."""

from __future__ import annotations

from collections.abc import Mapping

import mongomock
from click.testing import CliRunner, Result

from crm_audit_adapters.cli import Overrides, cli


class CliOverCdp:
    """``run`` invokes the CLI under ``env`` with one mongomock ``client`` as its CDP, so that the
    data outlives each command; ``answer`` is what stdin holds (``None``: nothing)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.client: mongomock.MongoClient = mongomock.MongoClient(tz_aware=True)
        self._overrides = Overrides(mongo_client=self.client)
        self._env = dict(env)

    def run(self, *args: str, answer: str | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), obj=self._overrides, env=self._env, input=answer)
