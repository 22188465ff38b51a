"""The file-backed contact directory answers as the contacts read into memory would, page by page."""

from __future__ import annotations

import datetime as dt
import json
import pickle
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_audit_adapters.files import FileFormatError, JsonlContactDirectory, contact_index, read_contacts
from crm_audit_adapters.files.errors import FileChangedWhileRead
from crm_audit_adapters.files.long_lines import MEMBER_BYTES, MembersTooLong
from crm_audit_transform.domain import Contact
from crm_audit_transform.ports import ContactDirectory
from crm_audit_transform.testing import InMemoryContactDirectory

CONTACTS = Path(__file__).resolve().parents[2] / "src" / "crm_audit_transform" / "data"
CONTACTS = CONTACTS / "audited-5.8.0" / "contacts.jsonl"
CREATED = "2024-01-02T03:04:05Z"


def write_lines(path: Path, *lines: object) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def contact_line(_id: str, company: str, person_id: object) -> dict[str, object]:
    return {"_id": _id, "company_sso_id": company, "crm_data": {"id": person_id}, "created_at": CREATED}


def smallest_id_wins(contacts: list[Contact]) -> InMemoryContactDirectory:
    """The in-memory directory over the contacts in MongoDB's ``_id`` order (a string before an
    ObjectId, then by text): it keeps the first of a repeated person id, so the smallest ``_id``
    wins, as the file does (and ``MongoContactDirectory``), wherever its line is."""

    def order(contact: Contact) -> tuple[int, str]:
        return (1 if re.fullmatch(r"[0-9a-f]{24}", contact.id) else 0, contact.id)

    return InMemoryContactDirectory(sorted(contacts, key=order))


class TestCorpusContacts:
    def test_it_is_a_contact_directory(self) -> None:
        """The class satisfies the ContactDirectory port the run loop is given."""
        directory: ContactDirectory = JsonlContactDirectory(CONTACTS)
        first = next(c for c in read_contacts(CONTACTS) if c.company_sso_id == "company-acme")
        assert directory.contacts_by_crm_ids("company-acme", [first.crm_person_id]) == {
            first.crm_person_id: first
        }

    @pytest.mark.parametrize(
        "company",
        ["company-acme", "company-globex", "company-nusantara-retail", "company-acme-jsonb", "nobody"],
    )
    def test_every_page_of_ids_matches_the_in_memory_directory(self, company: str) -> None:
        """Id sets of several sizes, with missing and other companies' ids, get the same contacts."""
        contacts = read_contacts(CONTACTS)
        expected = InMemoryContactDirectory(contacts)
        directory = JsonlContactDirectory(CONTACTS)
        everyone = sorted({contact.crm_person_id for contact in contacts} | {0, -1, 10**6, 2**70})
        id_sets = [everyone, everyone[::3], everyone[1::7], everyone[-5:], [], [10**6]]
        for ids in id_sets:
            assert directory.contacts_by_crm_ids(company, ids) == expected.contacts_by_crm_ids(company, ids)

    def test_a_company_answer_holds_only_its_own_contacts(self) -> None:
        """Person ids repeat across companies; each answer is scoped to the company asked about."""
        directory = JsonlContactDirectory(CONTACTS)
        found = directory.contacts_by_crm_ids("company-globex", [1, 2, 3])
        assert found
        assert {contact.company_sso_id for contact in found.values()} == {"company-globex"}


class TestFileShapes:
    def test_of_a_repeated_person_id_the_first_contact_by_id_wins_as_in_mongodb(self, tmp_path: Path) -> None:
        """Two contacts of a company with one person id: the one MongoDB's directory keeps (the first
        by ``_id``, a string before an ObjectId) answers, whatever the order of the lines (mongoexport
        writes natural order unless told ``--sort``)."""
        path = write_lines(
            tmp_path / "c.jsonl",
            contact_line("b", "co", 7),
            contact_line("a", "co", 7),
            contact_line("c", "other", 7),
            {**contact_line("", "co", 2), "_id": {"$oid": "f" * 24}},
            {**contact_line("", "co", 2), "_id": {"$oid": "0" * 23 + "1"}},
            {**contact_line("", "co", 3), "_id": {"$oid": "0" * 24}},
            contact_line("zz-string-id", "co", 3),
            contact_line("c9", "co", 2**64),  # past int64: kept apart, by the same rule
            contact_line("c10", "co", 2**64),
        )
        directory = JsonlContactDirectory(path)
        assert directory.contacts_by_crm_ids("co", [2**64])[2**64].id == "c10"
        assert directory.contacts_by_crm_ids("co", [7])[7].id == "a"
        assert directory.contacts_by_crm_ids("other", [7])[7].id == "c"
        assert directory.contacts_by_crm_ids("co", [2])[2].id == "0" * 23 + "1"
        assert directory.contacts_by_crm_ids("co", [3])[3].id == "zz-string-id"

    def test_ids_out_of_order_across_the_checks_slices_are_still_sorted(self, tmp_path: Path) -> None:
        """A file in person id order is kept unsorted; one pair out of order where the ascending check
        changes slices (ids 65,535 and 65,536), the file's only one, must still be found."""
        ids = list(range(70_000))
        ids[65_535], ids[65_536] = ids[65_536], ids[65_535]
        lines = [contact_line(f"c{n:06d}", "co", person_id) for n, person_id in enumerate(ids)]
        directory = JsonlContactDirectory(write_lines(tmp_path / "c.jsonl", *lines))
        found = directory.contacts_by_crm_ids("co", [65_535, 65_536, 69_999])
        assert {person_id: contact.id for person_id, contact in found.items()} == {
            65_535: "c065536",
            65_536: "c065535",
            69_999: "c069999",
        }

    def test_extended_json_and_string_ids_are_read_like_read_contacts(self, tmp_path: Path) -> None:
        """mongoexport's $oid, $date and $numberLong, and a decimal-string id, give the same contacts."""
        path = write_lines(
            tmp_path / "c.jsonl",
            {
                "_id": {"$oid": "65a1b2c3d4e5f60718293a4b"},
                "company_sso_id": "co",
                "crm_data": {"id": {"$numberLong": "9007199254740993"}},
                "created_at": {"$date": "2024-01-02T03:04:05.123Z"},
            },
            contact_line("s", "co", "42"),
            "",
            {"_id": "native", "company_sso_id": "co", "crm_data": {}, "created_at": CREATED},
        )
        directory = JsonlContactDirectory(path)
        ids = [9007199254740993, 42, 1]
        assert directory.contacts_by_crm_ids("co", ids) == smallest_id_wins(
            read_contacts(path)
        ).contacts_by_crm_ids("co", ids)
        assert directory.contacts_by_crm_ids("co", [42])[42].created_at == dt.datetime(
            2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC
        )

    @pytest.mark.parametrize(
        "line",
        [
            "{not json",
            "[1]",
            contact_line("x", "co", "seven"),
            contact_line("x", "co", True),
            {"company_sso_id": "co", "crm_data": {"id": 1}, "created_at": CREATED},
            {"_id": "x", "company_sso_id": "", "crm_data": {"id": 1}, "created_at": CREATED},
        ],
    )
    def test_a_malformed_line_fails_opening_as_read_contacts_fails(
        self, tmp_path: Path, line: object
    ) -> None:
        """The same FileFormatError (file, line, message) as read_contacts, raised when the file is opened."""
        path = write_lines(tmp_path / "c.jsonl", contact_line("ok", "co", 1), line)
        with pytest.raises(FileFormatError) as expected:
            read_contacts(path)
        with pytest.raises(FileFormatError) as raised:
            JsonlContactDirectory(path)
        assert (raised.value.path, raised.value.line, raised.value.message) == (
            expected.value.path,
            expected.value.line,
            expected.value.message,
        )
        assert raised.value.line == 2

    def test_a_file_changed_after_opening_is_a_typed_error(self, tmp_path: Path) -> None:
        """A line that no longer holds the indexed contact raises FileFormatError, not a wrong answer."""
        path = write_lines(tmp_path / "c.jsonl", contact_line("a", "co", 1), contact_line("b", "co", 2))
        directory = JsonlContactDirectory(path)
        write_lines(path, contact_line("b", "co", 2), contact_line("a", "co", 1))
        with pytest.raises(FileFormatError, match="changed"):
            directory.contacts_by_crm_ids("co", [2])

    @pytest.mark.parametrize("same_size", [True, False])
    def test_a_file_rewritten_with_the_same_people_is_a_typed_error(
        self, tmp_path: Path, same_size: bool
    ) -> None:
        """Rewritten after opening with each line's company and person as before (an export run again
        in place), a contact was read with its new time or ``_id``, silently: the directory checked
        only those two. It now looks at the file before each read (``FileMark``) and raises."""
        path = write_lines(tmp_path / "c.jsonl", contact_line("a", "co", 1), contact_line("b", "co", 2))
        directory = JsonlContactDirectory(path)
        time = "2024-01-02T03:04:06Z" if same_size else "2024-01-02T03:04:06.5Z"
        write_lines(path, contact_line("a", "co", 1), {**contact_line("b", "co", 2), "created_at": time})
        with pytest.raises(FileChangedWhileRead, match="changed while it was read"):
            directory.contacts_by_crm_ids("co", [2])

    def test_contacts_appended_after_opening_are_not_found_and_the_others_are(self, tmp_path: Path) -> None:
        """Appended lines leave the indexed ones where they were: not in the index, not found."""
        path = write_lines(tmp_path / "c.jsonl", contact_line("a", "co", 1), contact_line("b", "co", 2))
        directory = JsonlContactDirectory(path)
        with path.open("a") as out:
            out.write(json.dumps(contact_line("c", "co", 3)) + "\n")
        assert sorted(directory.contacts_by_crm_ids("co", [1, 2, 3])) == [1, 2]


class TestLongLineOfAnotherCompany:
    BIG = '"' + "x" * (MEMBER_BYTES + 10) + '"'
    """A string too long to keep from a long line (past 1 MiB)."""

    def test_it_stops_only_its_own_companys_run(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A long line whose ``crm_data`` is too long to read stopped opening the directory, so the
        dry run of every company in the file; it now stops only its company's, when asked for, naming
        the line. A line whose company is itself too long is no company's asked for: passed over."""
        monkeypatch.setattr(contact_index, "MAX_LINE_BYTES", 4_096)
        path = write_lines(
            tmp_path / "c.jsonl",
            contact_line("a1", "co-a", 1),
            '{"_id": "b1", "company_sso_id": "co-b", "crm_data": {"notes": ' + self.BIG + "}}",
            '{"_id": "z1", "company_sso_id": ' + self.BIG + ', "crm_data": {"id": 1}}',
            contact_line("a2", "co-a", 2),
        )
        directory = JsonlContactDirectory(path)
        assert sorted(directory.contacts_by_crm_ids("co-a", [1, 2])) == [1, 2]
        for _ in range(2):
            with pytest.raises(MembersTooLong, match=f"line 2: .*its crm_data longer than {MEMBER_BYTES}"):
                directory.contacts_by_crm_ids("co-b", [1])

    def test_a_line_naming_no_company_still_stops_opening(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(contact_index, "MAX_LINE_BYTES", 4_096)
        path = write_lines(
            tmp_path / "c.jsonl", contact_line("a1", "co-a", 1), '{"_id": "n", "crm_data": ' + self.BIG + "}"
        )
        with pytest.raises(MembersTooLong, match=r"line 2: .*its crm_data longer than"):
            JsonlContactDirectory(path)


class TestParsedContacts:
    """A contact asked for by several pages is parsed once while it is kept; at most ``parsed`` are."""

    @staticmethod
    def counting_parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
        parsed_lines: list[int] = []
        parse = contact_index.parse_contact_line

        def counted(path: object, number: int, raw: bytes) -> Contact | None:
            parsed_lines.append(number)
            return parse(path, number, raw)  # type: ignore[arg-type]

        monkeypatch.setattr(contact_index, "parse_contact_line", counted)
        return parsed_lines

    def test_a_contact_asked_by_several_pages_is_parsed_once(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = write_lines(tmp_path / "c.jsonl", *(contact_line(f"c{n}", "co", n) for n in range(1, 6)))
        directory = JsonlContactDirectory(path)
        parsed_lines = self.counting_parses(monkeypatch)
        pages = [[1, 2, 3], [2, 3, 4], [1, 5, 9], [1, 2, 3, 4, 5]]
        answers = [directory.contacts_by_crm_ids("co", page) for page in pages]
        assert sorted(parsed_lines) == [1, 2, 3, 4, 5]  # line n holds person n: each read once
        contacts = {c.crm_person_id: c for c in read_contacts(path)}
        assert answers == [{i: contacts[i] for i in page if i in contacts} for page in pages]
        assert [list(answer) for answer in answers][-1] == [1, 2, 3, 4, 5]  # in file order, as before

    def test_at_most_parsed_contacts_are_kept_the_least_recently_used_out_first(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = write_lines(tmp_path / "c.jsonl", *(contact_line(f"c{n}", "co", n) for n in range(1, 5)))
        directory = JsonlContactDirectory(path, parsed=2)
        parsed_lines = self.counting_parses(monkeypatch)
        for page in ([1], [2], [1], [3], [1], [2]):  # 3 pushes out 2 (1 was used since), then 2 is read again
            directory.contacts_by_crm_ids("co", page)
            assert len(directory._parsed) <= 2
        assert parsed_lines == [1, 2, 3, 2]
        assert len(directory.contacts_by_crm_ids("co", [1, 2, 3, 4])) == 4  # a page wider than kept
        assert len(directory._parsed) == 2

    def test_none_kept_with_parsed_zero_and_a_negative_count_is_refused(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = write_lines(tmp_path / "c.jsonl", contact_line("a", "co", 1))
        directory = JsonlContactDirectory(path, parsed=0)
        parsed_lines = self.counting_parses(monkeypatch)
        assert directory.contacts_by_crm_ids("co", [1]) == directory.contacts_by_crm_ids("co", [1])
        assert parsed_lines == [1, 1]
        with pytest.raises(ValueError, match="at least 0"):
            JsonlContactDirectory(path, parsed=-1)

    def test_a_copy_for_a_worker_carries_the_index_but_no_parsed_contact(self, tmp_path: Path) -> None:
        path = write_lines(tmp_path / "c.jsonl", contact_line("a", "co", 1), contact_line("b", "co", 2))
        directory = JsonlContactDirectory(path)
        answer = directory.contacts_by_crm_ids("co", [1, 2])
        copied = pickle.loads(pickle.dumps(directory.worker_copy()))
        assert len(directory._parsed) == 2
        assert len(copied._parsed) == 0
        assert copied.contacts_by_crm_ids("co", [2, 1]) == answer

    def test_a_file_changed_after_a_contact_was_kept_is_still_caught_on_a_line_not_kept(
        self, tmp_path: Path
    ) -> None:
        """The kept contacts do not hide a change: the next line read is still checked."""
        path = write_lines(tmp_path / "c.jsonl", contact_line("a", "co", 1), contact_line("b", "co", 2))
        directory = JsonlContactDirectory(path)
        directory.contacts_by_crm_ids("co", [1])
        write_lines(path, contact_line("b", "co", 2), contact_line("a", "co", 1))
        with pytest.raises(FileFormatError, match="changed"):
            directory.contacts_by_crm_ids("co", [1, 2])


contact_records = st.lists(
    st.tuples(
        st.sampled_from(["co", "other"]),
        st.one_of(st.none(), st.integers(-3, 12), st.integers(0, 12).map(str), st.just(2**64)),
    ),
    max_size=30,
)


class TestGeneratedFiles:
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(records=contact_records, asked=st.lists(st.integers(-4, 13) | st.just(2**64), max_size=12))
    def test_any_contacts_file_answers_as_its_contacts_in_memory(
        self, tmp_path: Path, records: list[tuple[str, object]], asked: list[int]
    ) -> None:
        """For any file, lookups match read_contacts with the smallest _id of each person id kept."""
        path = write_lines(
            tmp_path / "c.jsonl",
            *(contact_line(f"c{n}", company, person_id) for n, (company, person_id) in enumerate(records)),
        )
        contacts = read_contacts(path)
        expected = smallest_id_wins(contacts)
        directory = JsonlContactDirectory(path)
        for company in ("co", "other", "absent"):
            assert directory.contacts_by_crm_ids(company, asked) == expected.contacts_by_crm_ids(
                company, asked
            )

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        records=contact_records,
        pages=st.lists(st.lists(st.integers(-4, 13), max_size=8), max_size=6),
        parsed=st.integers(0, 4),
    )
    def test_pages_asked_in_turn_answer_as_the_contacts_in_memory_whatever_is_kept(
        self, tmp_path: Path, records: list[tuple[str, object]], pages: list[list[int]], parsed: int
    ) -> None:
        """Whatever the pages ask, in any order and however few contacts are kept between them."""
        path = write_lines(
            tmp_path / "c.jsonl",
            *(contact_line(f"c{n}", company, person_id) for n, (company, person_id) in enumerate(records)),
        )
        expected = smallest_id_wins(read_contacts(path))
        directory = JsonlContactDirectory(path, parsed=parsed)
        for page in pages:
            for company in ("co", "other"):
                assert directory.contacts_by_crm_ids(company, page) == expected.contacts_by_crm_ids(
                    company, page
                )
                assert len(directory._parsed) <= parsed
