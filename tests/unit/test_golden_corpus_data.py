"""The corpus shipped in the package data cannot drift from the fixtures it was taken from."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import pytest

from support.corpus_world import kit_files

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "audited-5.8.0"
COPIES = ("audits.jsonl", "jsonb/audits.jsonl", "users.jsonl")
DERIVED = ("companies.json", "contacts.jsonl", "sso.jsonl")


@functools.cache  # one derivation serves every test here
def derived_files() -> dict[str, str]:
    return kit_files()


def packaged(name: str) -> bytes:
    folder = resources.files("crm_audit_transform").joinpath("data", "audited-5.8.0")
    return folder.joinpath(*name.split("/")).read_bytes()


class TestPackagedCorpus:
    @pytest.mark.parametrize("name", COPIES)
    def test_shipped_copy_is_byte_identical_to_the_fixture(self, name: str) -> None:
        """Each shipped corpus file equals tests/fixtures/audited-5.8.0/ byte for byte."""
        assert packaged(name) == (FIXTURES / name).read_bytes()

    @pytest.mark.parametrize("name", DERIVED)
    def test_shipped_derived_file_is_what_the_derivation_writes(self, name: str) -> None:
        """Each derived file equals what the builder (tests/support/corpus_world.py) derives now."""
        assert packaged(name).decode("utf-8") == derived_files()[name]

    def test_the_derivation_makes_exactly_the_shipped_derived_files(self) -> None:
        """derive.py writes no file the kit does not read, and misses none it does."""
        assert sorted(derived_files()) == sorted(DERIVED)

    def test_only_the_kit_files_and_their_readme_are_shipped(self) -> None:
        """The package carries the rows, users and derived lookups; not the dump, truth or entities."""
        folder = ROOT / "src" / "crm_audit_transform" / "data" / "audited-5.8.0"
        shipped = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        assert shipped == sorted([*COPIES, *DERIVED, "README.md"])
