"""Lookup data from JSONL: CRM users, CDP contacts (plain and mongoexport), the SSO directory, entities."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import pytest
from bson import Binary
from bson.binary import UuidRepresentation

from crm_audit_adapters.files import (
    FileFormatError,
    read_contacts,
    read_entities,
    read_sso_directory,
    read_users,
)
from crm_audit_transform.domain import Contact, CrmUser, EntityRef

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "audited-5.8.0"


def write_lines(path: Path, *lines: object) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


class TestUsers:
    def test_a_tenants_users_include_soft_deleted_ones_and_not_hard_deleted_ones(self) -> None:
        """acme: user 6 is soft-deleted (deleted_at, aware UTC), user 3 is gone from the file."""
        users = read_users(CORPUS / "users.jsonl", "acme")
        assert 3 not in users
        assert users[1] == CrmUser(1, "agus.1@acme.example", "Agus de la Cruz", None)
        deleted_at = users[6].deleted_at
        assert deleted_at is not None
        assert deleted_at.tzinfo is dt.UTC

    def test_every_tenant_together_is_refused_because_ids_collide(self) -> None:
        """Ids restart per tenant: without a tenant a repeated id is an error, not an overwrite."""
        with pytest.raises(FileFormatError, match="appears twice"):
            read_users(CORPUS / "users.jsonl")

    @pytest.mark.parametrize(
        "deleted_at",
        ["infinity", "-infinity", "10000-01-01 00:00:00", "0044-03-15 00:00:00 BC", "0001-01-01T00:00+05:00"],
    )
    def test_a_deleted_at_datetime_cannot_hold_reads_as_soft_deleted(
        self, tmp_path: Path, deleted_at: str
    ) -> None:
        """PostgreSQL holds such times and its source reads the user as soft-deleted; the file agrees
        (it was a BAD_INPUT that stopped the dry run). Text that is no time at all is still refused."""
        path = write_lines(tmp_path / "u.jsonl", {"id": 1, "email": "a@x", "deleted_at": deleted_at})
        assert read_users(path)[1].deleted_at is not None
        for no_time in ("10000-13-01 BC", "\u0661\u0660\u0660\u0660\u0660-01-01"):  # Arabic-Indic 10000
            bad = write_lines(tmp_path / "bad.jsonl", {"id": 1, "email": "a@x", "deleted_at": no_time})
            with pytest.raises(FileFormatError, match="not a timestamp"):
                read_users(bad)

    def test_a_bad_user_line_names_its_line(self, tmp_path: Path) -> None:
        """A user whose id is neither an integer nor a non-empty string is reported with its line number."""
        path = write_lines(tmp_path / "u.jsonl", {"id": 1, "email": "a@x"}, {"id": True, "email": "b@x"})
        with pytest.raises(FileFormatError, match="id is not an integer or a non-empty string") as caught:
            read_users(path)
        assert caught.value.line == 2

    def test_an_id_past_pythons_digit_limit_is_described_as_its_json(self, tmp_path: Path) -> None:
        """Such an id is kept undecoded (``JsonbText``): the error said "a value of type JsonbText",
        a name of this code; it now says what the file holds, as an audits line's error does."""
        path = write_lines(tmp_path / "u.jsonl", '{"id": 1' + "0" * 5_000 + ', "email": "a@x"}')
        with pytest.raises(FileFormatError, match=r"a number of 5001 characters of JSON, not decoded$"):
            read_users(path)


class TestEntities:
    def test_entities_are_keyed_by_type_and_id_and_remember_deleted_ones(self) -> None:
        """entities.jsonl becomes EntityRef values; exists=false rows keep their last name."""
        entities = read_entities(CORPUS / "entities.jsonl", "acme")
        assert entities[("Crm::Person", 3)] == EntityRef(
            "Crm::Person", 3, "José Jl. Jend. Sudirman Kav. 52–53, Jakarta Selatan", exists=False
        )
        assert {key[0] for key in entities} == {
            "Crm::Person",
            "Crm::Company",
            "Crm::Deal",
            "Crm::Ticket",
            "Crm::Task",
        }

    def test_exists_must_be_a_boolean(self, tmp_path: Path) -> None:
        """A string where exists belongs is an error, not truthy."""
        path = write_lines(tmp_path / "e.jsonl", {"type": "Crm::Deal", "id": 1, "name": "x", "exists": "no"})
        with pytest.raises(FileFormatError, match="exists"):
            read_entities(path)


class TestContacts:
    def test_plain_json_contacts_become_contacts(self, tmp_path: Path) -> None:
        """{_id, company_sso_id, crm_data: {id}, created_at} lines become Contact values."""
        path = write_lines(
            tmp_path / "c.jsonl",
            {
                "_id": "c1",
                "company_sso_id": "co",
                "crm_data": {"id": 12},
                "created_at": "2024-01-02T03:04:05Z",
            },
        )
        assert read_contacts(path) == [
            Contact("c1", "co", 12, dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
        ]

    def test_mongoexport_extended_json_is_understood(self, tmp_path: Path) -> None:
        """$oid, $date and $numberLong from mongoexport read as id string, aware datetime and int."""
        line = (
            '{"_id": {"$oid": "65f000000000000000000001"}, "company_sso_id": "co",'
            ' "crm_data": {"id": {"$numberLong": "9007199254740993"}},'
            ' "created_at": {"$date": "2024-01-02T03:04:05.678Z"}}'
        )
        [contact] = read_contacts(write_lines(tmp_path / "c.jsonl", line))
        assert contact == Contact(
            "65f000000000000000000001",
            "co",
            9007199254740993,
            dt.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC),
        )

    def test_contacts_without_a_crm_id_are_native_and_not_returned(self, tmp_path: Path) -> None:
        """Only contacts synced from the CRM (crm_data.id set) can be migration targets."""
        created = "2024-01-02T03:04:05Z"
        path = write_lines(
            tmp_path / "c.jsonl",
            {"_id": "native", "company_sso_id": "co", "created_at": created},
            {"_id": "null", "company_sso_id": "co", "crm_data": {"id": None}, "created_at": created},
            {"_id": "crm", "company_sso_id": "co", "crm_data": {"id": 5}, "created_at": created},
        )
        assert [contact.id for contact in read_contacts(path)] == ["crm"]

    @pytest.mark.parametrize(
        ("created_at", "end"),
        [
            ('{"$date": {"$numberLong": "253402300800000"}}', dt.datetime.max),
            ('"0001-01-01T00:00:00+05:00"', dt.datetime.min),
            ('{"$date": {"$numberLong": "-62135596800001"}}', dt.datetime.min),
        ],
    )
    def test_a_created_at_past_datetimes_range_is_the_ranges_end(
        self, tmp_path: Path, created_at: str, end: dt.datetime
    ) -> None:
        """A sync time past years 1-9999 (mongoexport writes a $numberLong $date there) no longer stops
        the dry run with BAD_INPUT: it is the end of the range it falls past, so the watermark compares
        as it would with the real time (every audit before a year-10000 contact, none before a BC one).
        Text that ``fromisoformat`` cannot read (``-infinity``, year 10000) is no time at all, as in
        MongoDB (``TestContactSyncTimeAsMongoDB``)."""
        line = f'{{"_id": "c", "company_sso_id": "co", "crm_data": {{"id": 1}}, "created_at": {created_at}}}'
        (contact,) = read_contacts(write_lines(tmp_path / "c.jsonl", line))
        assert contact.created_at == end.replace(tzinfo=dt.UTC)

    @pytest.mark.parametrize(
        ("line", "message"),
        [
            (
                {"_id": "c", "company_sso_id": "co", "crm_data": {"id": "x"}, "created_at": "2024-01-01"},
                "crm_data.id",
            ),
            ({"company_sso_id": "co", "crm_data": {"id": 1}, "created_at": "2024-01-01"}, "_id"),
            ({"_id": "c", "crm_data": {"id": 1}, "created_at": "2024-01-01"}, "company_sso_id"),
            ("{oops", "JSON"),
            ('{"_id": "c", "company_sso_id": "co", "crm_data": {"id": 1}, "x": {"$binary": {}}}', "JSON"),
            ('{"_id": "c", "crm_data": {"id": 1}, "x": {"$binary": {"base64": 1}, "$type": "0"}}', "JSON"),
            ('{"_id": "c", "company_sso_id": "co", "crm_data": {"id": 1}, "x": {"$date": 1e400}}', "JSON"),
            ('{"_id": "c", "crm_data": {"id": 1}, "x": {"$numberDecimal": "1e99999999"}}', "JSON"),
        ],
    )
    def test_a_bad_contact_line_names_its_line(self, tmp_path: Path, line: object, message: str) -> None:
        """Unreadable contacts raise FileFormatError at their line."""
        with pytest.raises(FileFormatError, match=message) as caught:
            read_contacts(write_lines(tmp_path / "c.jsonl", "", line))
        assert caught.value.line == 2


class TestContactLineShortcut:
    @pytest.mark.parametrize(
        "line",
        [
            {
                "_id": {"$oid": "00000000000000000000000a"},
                "company_sso_id": "co",
                "crm_data": {"id": 7},
                "created_at": "2025-12-31T00:00:00Z",
            },
            {
                "_id": "c-1",
                "company_sso_id": "co",
                "crm_data": {"id": 7},
                "created_at": "2025-12-31 08:00:00+07:00",
            },
            {
                "_id": {"$oid": "00000000000000000000000A"},
                "company_sso_id": "co",
                "crm_data": {"id": 7},
                "created_at": "2025-12-31T00:00:00Z",
            },
            {
                "_id": {"$oid": "0a"},
                "company_sso_id": "co",
                "crm_data": {"id": 7},
                "created_at": "2025-12-31",
            },
            {
                "_id": "c-1",
                "company_sso_id": "co",
                "crm_data": {"id": 7},
                "created_at": {"$date": "2025-12-31T00:00:00Z"},
            },
            {
                "_id": "c-1",
                "company_sso_id": "co",
                "crm_data": {"id": {"$numberLong": "7"}},
                "created_at": "2025-12-31",
            },
            {"_id": "c-1", "company_sso_id": "co", "crm_data": {"id": 2**64 + 1}, "created_at": "2025-12-31"},
            {"_id": "c-1", "company_sso_id": "co", "crm_data": {"id": "7"}, "created_at": "2025-12-31"},
            {"_id": "c-1", "company_sso_id": "co", "crm_data": {"id": True}, "created_at": "2025-12-31"},
            {"_id": "c-1", "company_sso_id": "co", "crm_data": {"id": None}, "created_at": "2025-12-31"},
            {"_id": "c-1", "company_sso_id": "", "crm_data": {"id": 7}, "created_at": "2025-12-31"},
            {"_id": "c-1", "company_sso_id": "co", "crm_data": {"id": 7}, "created_at": "soon"},
            {
                "_id": "c-1",
                "company_sso_id": "co",
                "crm_data": {"id": 7},
                "created_at": "2025-12-31",
                "note": {"$bad": 1},
            },
            {"company_sso_id": "co", "crm_data": {"id": 7}, "created_at": "2025-12-31"},
        ],
    )
    def test_the_orjson_shortcut_reads_a_line_as_json_util_does(self, line: dict[str, object]) -> None:
        """A contact line gives the same contact, or the same error, whichever decoder read it."""
        from crm_audit_adapters.files import directories

        raw = json.dumps(line).encode() + b"\n"

        def general() -> object:
            original = directories._plain_contact
            directories._plain_contact = lambda raw: None  # type: ignore[assignment]
            try:
                return outcome(lambda: directories.parse_contact_line("c.jsonl", 1, raw))
            finally:
                directories._plain_contact = original

        found = outcome(lambda: directories.parse_contact_line("c.jsonl", 1, raw))
        assert found == general()
        assert isinstance(found, Contact | None) or found[0] == "FileFormatError"  # type: ignore[index]


def outcome(read: object) -> object:
    try:
        return read()  # type: ignore[operator]
    except Exception as error:
        return type(error).__name__, str(error)


class TestSsoDirectory:
    def test_lines_become_an_email_to_sso_id_map(self, tmp_path: Path) -> None:
        """{email, sso_id} lines map emails as written to SSO ids."""
        path = write_lines(
            tmp_path / "s.jsonl", {"email": "A@x", "sso_id": "1"}, {"email": "b@x", "sso_id": "2"}
        )
        assert read_sso_directory(path) == {"A@x": "1", "b@x": "2"}

    def test_a_company_argument_keeps_that_companys_lines_and_unowned_ones(self, tmp_path: Path) -> None:
        """Lines naming another company_sso_id are passed over."""
        path = write_lines(
            tmp_path / "s.jsonl",
            {"email": "a@x", "sso_id": "1", "company_sso_id": "co"},
            {"email": "b@x", "sso_id": "2", "company_sso_id": "other"},
            {"email": "c@x", "sso_id": "3"},
        )
        assert read_sso_directory(path, "co") == {"a@x": "1", "c@x": "3"}

    def test_one_email_with_two_ids_is_an_error(self, tmp_path: Path) -> None:
        """Conflicting answers are refused rather than one silently winning."""
        path = write_lines(
            tmp_path / "s.jsonl", {"email": "a@x", "sso_id": "1"}, {"email": "a@x", "sso_id": "2"}
        )
        with pytest.raises(FileFormatError, match="two sso ids") as caught:
            read_sso_directory(path)
        assert caught.value.line == 2


OBJECT_ID = "65a1b2c3d4e5f60718293a4b"


class TestContactSyncTimeAsMongoDB:
    """A contacts file and ``MongoContactDirectory`` read one contact to the same sync time, or both
    to no contact: a dry run's watermark is the run's."""

    @pytest.mark.parametrize(
        "created_at",
        [
            "2024-01-02T03:04:05Z",
            "2024-01-02 03:04:05",
            "0001-01-01T00:00:00+05:00",
            "yesterday",
            "-infinity",
            "10000-01-01T00:00:00Z",
            "",
            5,
            None,
            ...,
            {"nested": 1},
        ],
    )
    @pytest.mark.parametrize("doc_id", ["oid", "hex", "name"])
    def test_the_file_reads_the_sync_time_mongodb_reads(
        self, tmp_path: Path, created_at: object, doc_id: str
    ) -> None:
        """Text MongoDB's directory cannot read as a time, a number, null or no created_at is the
        insertion time of an ObjectId ``_id``; with another ``_id`` neither finds the contact. Before,
        the file stopped the dry run with BAD_INPUT for each of them, and read ``-infinity`` or year
        10000 as the range's end, where MongoDB reads the ObjectId's time."""
        from bson import ObjectId

        from crm_audit_adapters.files import JsonlContactDirectory
        from crm_audit_adapters.mongo import MongoContactDirectory

        stored_id: object = ObjectId(OBJECT_ID) if doc_id != "name" else "c-1"
        written_id: object = {"$oid": OBJECT_ID} if doc_id == "oid" else str(stored_id)
        doc: dict[str, object] = {"_id": stored_id, "company_sso_id": "co", "crm_data": {"id": 1}}
        line: dict[str, object] = {"_id": written_id, "company_sso_id": "co", "crm_data": {"id": 1}}
        if created_at is not ...:
            doc["created_at"] = line["created_at"] = created_at

        class Reply:
            def find(self, *args: object, **kwargs: object) -> list[dict[str, object]]:
                return [doc]

        in_mongo = MongoContactDirectory(Reply()).contacts_by_crm_ids("co", [1])  # type: ignore[arg-type]
        path = write_lines(tmp_path / "c.jsonl", line)
        in_file = JsonlContactDirectory(path).contacts_by_crm_ids("co", [1])
        assert in_file == in_mongo
        assert [contact.created_at for contact in read_contacts(path)] == [
            contact.created_at for contact in in_mongo.values()
        ]
        if doc_id != "name":
            assert in_file[1].id == OBJECT_ID


class TestContactIdAsMongoDB:
    """A contacts file and ``MongoContactDirectory`` give one contact ``_id`` the same text, or both
    find no contact: a dry run's customer_id is the run's."""

    UUID_TEXT = "7d4c1f0e-2f6a-4c7b-9a55-0c2b9d3e8f11"

    @pytest.mark.parametrize(
        ("stored", "text"),
        [
            (Binary.from_uuid(uuid.UUID(UUID_TEXT), UuidRepresentation.STANDARD), UUID_TEXT),
            (Binary(uuid.UUID(UUID_TEXT).bytes, 3), None),
            (Binary(b"\x01\x02", 0), None),
            (12345, "12345"),
            (1.5, None),
            ({"a": 1}, None),
        ],
        ids=["uuid", "legacy-uuid", "bytes", "int", "double", "document"],
    )
    def test_the_file_gives_the_id_mongodb_gives(
        self, tmp_path: Path, stored: object, text: str | None
    ) -> None:
        """A ``$binary`` UUID ``_id`` (subtype 4) is its canonical text; another binary, a double or a
        document finds no contact. Before, both wrote Python's bytes repr, ``b'}L\\x1f…'``."""
        from bson import json_util

        from crm_audit_adapters.files import JsonlContactDirectory
        from crm_audit_adapters.mongo import MongoContactDirectory

        doc: dict[str, object] = {"_id": stored, "company_sso_id": "co", "crm_data": {"id": 1}}
        doc["created_at"] = "2024-01-02T03:04:05Z"

        class Reply:
            def find(self, *args: object, **kwargs: object) -> list[dict[str, object]]:
                return [doc]

        in_mongo = MongoContactDirectory(Reply()).contacts_by_crm_ids("co", [1])  # type: ignore[arg-type]
        path = tmp_path / "c.jsonl"
        path.write_text(json_util.dumps(doc, json_options=json_util.RELAXED_JSON_OPTIONS) + "\n")
        in_file = JsonlContactDirectory(path).contacts_by_crm_ids("co", [1])
        assert in_file == in_mongo
        assert [contact.id for contact in read_contacts(path)] == [c.id for c in in_mongo.values()]
        assert [contact.id for contact in in_file.values()] == ([] if text is None else [text])


class TestDeepAndLongValues:
    DEEP = "[" * 100_000 + "]" * 100_000

    def test_a_contact_nested_past_the_recursion_limit_is_bad_input_naming_its_line(
        self, tmp_path: Path
    ) -> None:
        """json_util recursed until RecursionError, which escaped both readers: the dry run ended
        INTERNAL (exit 1) instead of BAD_INPUT naming the file and line."""
        from crm_audit_adapters.files import JsonlContactDirectory

        good = {"_id": "c", "company_sso_id": "co", "crm_data": {"id": 1}, "created_at": "2024-01-01"}
        deep = (
            '{"_id": "d", "company_sso_id": "co", "crm_data": ' + self.DEEP + ', "created_at": "2024-01-01"}'
        )
        path = write_lines(tmp_path / "c.jsonl", good, deep)
        for read in (read_contacts, JsonlContactDirectory):
            with pytest.raises(
                FileFormatError, match=r"line 2: .*(nested too deep|more than 100,000 values)"
            ) as caught:
                read(path)
            assert len(str(caught.value)) < 300

    def test_an_error_quotes_a_long_value_cut_short(self, tmp_path: Path) -> None:
        """A users or SSO line's bad member was quoted whole: one error line of 200 KB."""
        users = write_lines(tmp_path / "u.jsonl", '{"tenant": "acme", "id": ' + self.DEEP + "}")
        sso = write_lines(tmp_path / "s.jsonl", {"email": "x" * 200_000 + "@a", "sso_id": 5})
        for read, path in ((read_users, users), (read_sso_directory, sso)):
            with pytest.raises(FileFormatError, match="line 1: ") as caught:
                read(path)
            assert len(str(caught.value)) < 300
