"""What every command shares: the settings (read on first use) and optional test overrides."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click
from attrs import define, field

from crm_audit_transform.ports import Clock, SsoDirectory

from ..bootstrap import Runtime, build_runtime
from ..settings import Settings, load_settings

if TYPE_CHECKING:
    from pymongo import MongoClient

    from ..mongo.documents_types import Document


@define
class Overrides:
    """Parts a caller injects instead of building them from settings (tests, embedding services).

    ``mongo_client``: a pymongo-compatible client (e.g. one ``mongomock.MongoClient()`` shared by
    several invocations, so data outlives each command); ``sso``, ``clock``: ports;
    ``prepare``: called with the runtime before a command uses it (to wrap a port, say).
    """

    mongo_client: MongoClient[Document] | None = None
    sso: SsoDirectory | None = None
    clock: Clock | None = None
    prepare: Callable[[Runtime], None] | None = None


@define
class CliState:
    settings_path: str | None = None
    debug: bool = False
    overrides: Overrides = field(factory=Overrides)
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        """The settings, read on first use; their "did you mean" warnings go to stderr once."""
        if self._settings is None:
            self._settings = load_settings(self.settings_path)
            for warning in self._settings.warnings:
                click.echo(f"warning: {warning}", err=True)
        return self._settings

    @property
    def loaded_settings(self) -> Settings | None:
        """The settings if they were read (for scrubbing an error's secrets), else None."""
        return self._settings

    def runtime(self, *, lease_bounded_mongo: bool = True) -> Runtime:
        """The command's ``Runtime``; ``lease_bounded_mongo`` as ``Runtime`` takes it."""
        o = self.overrides
        runtime = build_runtime(
            self.settings,
            mongo_client=o.mongo_client,
            sso=o.sso,
            clock=o.clock,
            notice=lambda text: click.echo(text, err=True),
            lease_bounded_mongo=lease_bounded_mongo,
        )
        if o.prepare is not None:
            o.prepare(runtime)
        return runtime
