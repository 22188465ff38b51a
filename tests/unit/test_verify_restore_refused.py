"""Verify --repair over in-memory ports: a drifted log the store refuses to set back is counted,
and the repair goes on with the others."""

from __future__ import annotations

from collections.abc import Collection

import attrs

from crm_audit_adapters.cli import exit_codes
from crm_audit_transform.domain import ActivityLog
from crm_audit_transform.errors import RestoreRefused
from crm_audit_transform.testing import InMemoryActivityLogStore
from crm_audit_transform.usecases import RunSettings, VerifySettings
from crm_audit_transform.usecases.verify import verify_account
from support.corpus_account import World


class RefusesOne(InMemoryActivityLogStore):
    """An in-memory store that refuses to set back the log of one external id, as MongoDB refuses a
    document past 16 MiB."""

    refused = ""

    def restore_migrated(self, log: ActivityLog, run_keys: Collection[str]) -> bool:
        if log.external_id == self.refused:
            raise RestoreRefused(log.external_id, "code 17419: Resulting document after update is larger")
        return super().restore_migrated(log, run_keys)


def test_a_refused_restore_is_counted_and_the_rest_is_set_back() -> None:
    """Three drifted logs, one refused: two restored, one ``restore_refused``, still drifted (not
    clean), no error out of the repair; before, the store's error stopped it at that log."""
    world = World("acme")
    world.trigger()
    world.run(settings=RunSettings(page_size=200, halt_threshold=1.0))
    logs = list(world.logs.logs)
    edited = [n for n, log in enumerate(logs) if log.external_id][:3]
    for n in edited:
        logs[n] = attrs.evolve(logs[n], category="other")
    store = RefusesOne(logs)
    store.refused = logs[edited[1]].external_id
    world.logs = store
    report = verify_account(
        world.company,
        world.verify_ports(),
        world.transformer,
        settings=VerifySettings(page_size=200, repair=True),
    )
    assert (report.count("drifted"), report.restored, report.restore_refused) == (3, 2, 1)
    assert report.outstanding == {"drifted": 1}
    assert report.to_json()["restore_refused"] == 1
    assert not report.clean


def test_a_refused_restore_has_its_own_code_and_exit() -> None:
    """``RestoreRefused`` is ``RESTORE_REFUSED``, exit 7 (no retry changes the log's size), where a
    caller lets it out of a command; before, it had no code and was printed as a guard's
    ``REFUSED`` (exit 4)."""
    error = RestoreRefused("crm:acme:audit:7", "code 17419: Resulting document after update is larger")
    assert exit_codes.error_code(error) == "RESTORE_REFUSED"
    assert exit_codes.exit_code_for(error) == exit_codes.BAD_INPUT == 7
    assert exit_codes.one_line(error) == (
        "RESTORE_REFUSED: the log crm:acme:audit:7 cannot be set back: "
        "code 17419: Resulting document after update is larger"
    )
