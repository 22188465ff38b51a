"""The MongoDB reader's stray stream (mongomock and the wire emulator): every copy of an id across
its keyset chunks, and the logs of another ``source_tag`` under an id of ours."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.database import Database

from crm_audit_adapters.mongo import MongoActivityLogStore, apply_migration
from crm_audit_adapters.mongo import verification as mongo_verification
from crm_audit_adapters.mongo.verification import MongoMigratedLogReader
from crm_audit_transform.usecases import RunSettings, VerifySettings
from crm_audit_transform.usecases._verify_walk import NOT_A_STRING
from crm_audit_transform.usecases.verify import VerifyPorts, verify_account
from crm_audit_transform.verification import VerifyReport
from support.corpus_account import World, audit_rows


def verify(world: World, db: Database[Any]) -> VerifyReport:
    ports = VerifyPorts(
        world.source,
        world.users,
        world.sso,
        world.contacts,
        MongoMigratedLogReader.in_database(db),
        jobs=world.jobs,
    )
    return verify_account(world.company, ports, world.transformer, settings=VerifySettings())


def migrated(db: Database[Any]) -> World:
    list(apply_migration(db, "up"))
    world = World("acme", rows=[row for row in audit_rows("acme") if row.id <= 40])
    world.logs = MongoActivityLogStore.in_database(db)  # type: ignore[assignment]
    world.trigger()
    world.run(settings=RunSettings(page_size=200, halt_threshold=1.0))
    return world


def copies(db: Database[Any], external_id: object, n: int, **fields: Any) -> None:
    """``n`` more logs of ``external_id``, copied from a stored log (the unique index dropped first)."""
    template = db.activity_logs.find_one({"source_tag": "crm_migration"}, {"_id": 0})
    assert template is not None
    db.activity_logs.insert_many([{**template, "external_id": external_id, **fields} for _ in range(n)])


def test_every_copy_of_an_id_is_streamed_across_chunks(
    mongo_db: Database[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With chunks of 2, an id on 3 logs spans two chunk boundaries: the stream yields one id per
    log, each copy. Before, a chunk went on after the last id it read (``$gt``), so the copies of
    that id in the next chunk were never read."""
    monkeypatch.setattr(mongo_verification, "_ID_CHUNK", 2)
    list(apply_migration(mongo_db, "up"))
    mongo_db.activity_logs.drop_index("uniq_company_external_id")
    template = {"company_sso_id": "company-a", "source_tag": "crm_migration"}
    ids = ["crm:t:audit:1", "crm:t:audit:2", "crm:t:audit:2", "crm:t:audit:2", "crm:t:audit:3"]
    mongo_db.activity_logs.insert_many([{**template, "external_id": ext_id} for ext_id in ids])
    reader = MongoMigratedLogReader.in_database(mongo_db)
    assert list(reader.migrated_external_ids("company-a")) == ids
    assert [ext_id for ext_id, _ in reader.tagged_external_ids("company-a", "crm:t:audit:")] == ids


def test_a_duplicated_stray_across_a_chunk_boundary_is_reported(
    mongo_db: Database[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three logs of a stray id spread over chunks of 2 are three strays and one duplicate of 3 logs."""
    monkeypatch.setattr(mongo_verification, "_ID_CHUNK", 2)
    world = migrated(mongo_db)
    mongo_db.activity_logs.drop_index("uniq_company_external_id")
    copies(mongo_db, "crm:acme:audit:99999999", 3)
    report = verify(world, mongo_db)
    assert (report.count("stray"), report.count("duplicate")) == (3, 1)
    assert [(f.external_id, f.detail) for f in report.findings["duplicate"].items] == [
        ("crm:acme:audit:99999999", "3 logs")
    ]


@pytest.mark.parametrize("tag", ["other_tool", None])
def test_an_id_of_ours_under_another_tag_is_a_stray(mongo_db: Database[Any], tag: str | None) -> None:
    """A log of another (or no) ``source_tag`` under an id of ours naming no in-scope audit is a
    stray naming its tag, and left there; another tool's own ids are not ours to report."""
    world = migrated(mongo_db)
    copies(mongo_db, "crm:acme:audit:99999999", 1, source_tag=tag)
    copies(mongo_db, "hubspot:12", 1, source_tag=tag)
    report = verify(world, mongo_db)
    assert report.outstanding == {"stray": 1}
    (item,) = report.findings["stray"].items
    assert (item.audit_id, item.external_id) == (99999999, "crm:acme:audit:99999999")
    assert repr(tag or "") in item.detail
    assert mongo_db.activity_logs.count_documents({"external_id": "crm:acme:audit:99999999"}) == 1


def test_a_number_beside_the_string_of_its_digits_is_two_strays_not_a_duplicate(
    mongo_db: Database[Any],
) -> None:
    """A ``crm_migration`` log of ``external_id: 5`` beside one of ``"5"`` (the unique index holds
    strings alone: both are stored) is two strays, the number's said not to be a string, and no
    duplicate. Before, the reader streamed the number as the text ``5``, one id with the string:
    a duplicate of two logs, which the unique index makes impossible."""
    world = migrated(mongo_db)
    copies(mongo_db, "5", 1)
    copies(mongo_db, 5, 1)
    report = verify(world, mongo_db)
    assert report.count("duplicate") == 0
    assert sorted((f.external_id, f.detail) for f in report.findings["stray"].items) == [
        ("5", NOT_A_STRING),
        ("5", "not an external_id of tenant 'acme'"),
    ]


def test_an_array_holding_a_string_is_a_stray_not_an_id(mongo_db: Database[Any]) -> None:
    """``external_id: ["crm:acme:audit:99999999"]`` matches ``$type: "string"`` (MongoDB matches an
    array by its items): it is a stray that is not a string, shown as its relaxed Extended JSON, and
    the string ids around it still stream in order. Before, the id stream yielded the list itself."""
    world = migrated(mongo_db)
    copies(mongo_db, ["crm:acme:audit:99999999"], 1)
    copies(mongo_db, "crm:acme:audit:99999998", 1)
    report = verify(world, mongo_db)
    assert sorted((f.external_id, f.audit_id, f.detail) for f in report.findings["stray"].items) == [
        ('["crm:acme:audit:99999999"]', None, NOT_A_STRING),
        ("crm:acme:audit:99999998", 99999998, "names no in-scope audit"),
    ]


def test_two_logs_of_one_number_are_a_duplicate_apart_from_the_string(mongo_db: Database[Any]) -> None:
    """Two logs of ``external_id: 5`` (both stored with the unique index in place: it holds strings
    alone) are one duplicate, said not to be a string; the one log of ``"5"`` beside them is none."""
    world = migrated(mongo_db)
    copies(mongo_db, 5, 2)
    copies(mongo_db, "5", 1)
    report = verify(world, mongo_db)
    assert report.count("stray") == 3
    assert [(f.external_id, f.detail) for f in report.findings["duplicate"].items] == [
        ("5", f"2 logs, {NOT_A_STRING}")
    ]
