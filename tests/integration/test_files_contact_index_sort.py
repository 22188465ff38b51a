"""A contacts file not in person id order is sorted a run at a time and the runs merged: the index
answers as one sort would, and opening it holds about two copies of the index, not a Python int
(and a key) for every contact. Peaks are counted by tracemalloc (bytes allocated, not time)."""

from __future__ import annotations

import json
import random
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_audit_adapters.files import JsonlContactDirectory, contact_index, read_contacts
from crm_audit_transform.testing import InMemoryContactDirectory

CREATED = "2024-01-02T03:04:05Z"


def write_contacts(path: Path, records: list[tuple[str, str, object]]) -> Path:
    with path.open("w") as out:
        for _id, company, person_id in records:
            line = {
                "_id": _id,
                "company_sso_id": company,
                "crm_data": {"id": person_id},
                "created_at": CREATED,
            }
            out.write(json.dumps(line) + "\n")
    return path


class TestSortedInRuns:
    @settings(
        max_examples=80,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        records=st.lists(
            st.tuples(st.sampled_from(["co", "other"]), st.integers(-3, 12) | st.just(2**64)),
            max_size=40,
        ),
        ids=st.randoms(use_true_random=False),
        run=st.integers(1, 5),
    )
    def test_runs_merged_answer_as_the_contacts_in_memory(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        records: list[tuple[str, object]],
        ids: random.Random,
        run: int,
    ) -> None:
        """Runs of 1-5 contacts merged: every person id's contact is the one with the smallest _id
        (MongoDB's), whatever the lines' order, as the in-memory directory over _id order gives."""
        monkeypatch.setattr(contact_index, "SORT_RUN", run)
        names = [f"c{n:02d}" for n in range(len(records))]
        ids.shuffle(names)  # the _ids in no order against the lines
        path = write_contacts(
            tmp_path / "c.jsonl",
            [(name, company, person) for name, (company, person) in zip(names, records, strict=True)],
        )
        expected = InMemoryContactDirectory(sorted(read_contacts(path), key=lambda contact: contact.id))
        directory = JsonlContactDirectory(path)
        asked = [*range(-4, 14), 2**64]
        for company in ("co", "other"):
            assert directory.contacts_by_crm_ids(company, asked) == expected.contacts_by_crm_ids(
                company, asked
            )


class TestOpeningHoldsLittle:
    def test_a_shuffled_file_holds_about_two_copies_of_the_index(self, tmp_path: Path) -> None:
        """40,000 contacts in no person id order: opening peaks under 70 bytes a contact (the index
        keeps 24); one sort of them all held about 113 (a Python int and its key a contact)."""
        people = list(range(1, 40_001))
        random.Random(7).shuffle(people)
        path = write_contacts(tmp_path / "c.jsonl", [(f"c{person}", "co", person) for person in people])
        tracemalloc.start()
        try:
            directory = JsonlContactDirectory(path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak / len(people) < 70, peak / len(people)
        found = directory.contacts_by_crm_ids("co", [1, 20_000, 40_000])
        assert {person: contact.id for person, contact in found.items()} == {
            1: "c1",
            20_000: "c20000",
            40_000: "c40000",
        }
