"""Verify's stray pass over in-memory ports: every copy of a stray id, and ids of ours under another tag."""

from __future__ import annotations

import attrs

from crm_audit_transform.domain import ActivityLog
from crm_audit_transform.testing import InMemoryActivityLogStore
from crm_audit_transform.usecases import RunSettings, VerifySettings
from crm_audit_transform.usecases.verify import verify_account
from crm_audit_transform.verification import VerifyReport
from support.corpus_account import World

STRAY = "crm:acme:audit:99999999"


def migrated_world() -> World:
    world = World("acme")
    world.trigger()
    world.run(settings=RunSettings(page_size=200, halt_threshold=1.0))
    return world


def verify(world: World) -> VerifyReport:
    return verify_account(
        world.company, world.verify_ports(), world.transformer, settings=VerifySettings(page_size=200)
    )


def first_log(world: World) -> ActivityLog:
    return next(log for log in world.logs.logs if log.external_id)


class TestStrayPass:
    def test_a_stray_id_on_two_logs_is_a_duplicate_too(self) -> None:
        """Two logs of one stray id are two strays and one duplicate: the page pass never reads an id
        that names no walked audit, so before, the stray pass counted both and no duplicate."""
        world = migrated_world()
        twin = attrs.evolve(first_log(world), external_id=STRAY)
        world.logs = InMemoryActivityLogStore([*world.logs.logs, twin, twin])
        report = verify(world)
        assert (report.count("stray"), report.count("duplicate")) == (2, 1)
        assert [(f.external_id, f.detail) for f in report.findings["duplicate"].items] == [(STRAY, "2 logs")]

    def test_an_id_of_ours_under_another_tag_without_its_row_is_a_stray(self) -> None:
        """A log of another ``source_tag`` (or none) under one of our external ids that names no
        in-scope audit is reported stray, naming its tag: an id collision, left as it is (not ours to
        delete). Before, verify read only ``crm_migration`` logs there and reported the account clean."""
        world = migrated_world()
        foreign = attrs.evolve(first_log(world), external_id=STRAY, source_tag="other_tool")
        native = attrs.evolve(foreign, external_id="hubspot:12")  # not an id of ours: not reported
        world.logs = InMemoryActivityLogStore([*world.logs.logs, foreign, native])
        report = verify(world)
        assert report.outstanding == {"stray": 1}
        (item,) = report.findings["stray"].items
        assert (item.audit_id, item.external_id) == (99999999, STRAY)
        assert "'other_tool'" in item.detail
        assert not report.clean
        assert foreign in world.logs.logs
