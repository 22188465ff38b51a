"""``crm-audit-migrate``: the ops runner (click), a thin shell over the use cases.

Tests drive it with click's ``CliRunner``: ``runner.invoke(cli, args, obj=Overrides(...))`` injects
a shared ``mongomock.MongoClient()`` (or a USMAN, a clock) so state outlives each command.
"""

from __future__ import annotations

from . import commands, dry_run, enrich, verify, workers  # registers the commands on the group
from .main import cli, main
from .state import Overrides

__all__ = ["Overrides", "cli", "commands", "dry_run", "enrich", "main", "verify", "workers"]
