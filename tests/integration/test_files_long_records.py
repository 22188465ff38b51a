"""Records past ``max_record_bytes`` in a psql CSV export: read on without being held, then a row's
failure, another tenant's record passed over, or a stop that names the record, never a lost row."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_audit_adapters.files import CheckedRows, FileAuditSource, FileFormatError
from crm_audit_adapters.files.audits import file_tenants
from crm_audit_adapters.files.psql_csv import LongRecord, csv_records, leading_fields, split_record
from crm_audit_transform.config import load_default_config

SCOPE = tuple(load_default_config().scope)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
CAP = 4_096
LONG = '"---\nname: ' + 'a ""quoted"" word, and a line\n' * 200 + '"'
"""A quoted ``audited_changes`` of 6,000 bytes, over many lines, with quotes and commas inside."""


def csv_file(path: Path, header: str, *records: str) -> Path:
    path.write_bytes((header + "\n" + "".join(record + "\n" for record in records)).encode())
    return path


def row(audit_id: int, changes: str = '"---\nname: x\n"', tenant: str = "") -> str:
    kind = SCOPE[0]
    return f"{tenant}{audit_id},{kind},create,{changes},2024-01-0{audit_id % 9 + 1} 00:00:00"


def pages(source: FileAuditSource, tenant: str) -> list[int]:
    ids, after = [], 0
    while rows := source.page(tenant, SCOPE, after_id=after, cutoff=EPOCH, limit=10):
        ids += [found.id for found in rows]
        after = rows[-1].id
    return ids


HEADER = "id,auditable_type,action,audited_changes,created_at"


class TestLongCsvRecords:
    def test_a_record_past_the_cap_whose_head_names_its_id_is_its_rows_failure(self, tmp_path: Path) -> None:
        """A record longer than max_record_bytes stopped the whole dry run. It is read on, never held:
        its row fails (invalid_audit_row), as a PostgreSQL row past the loader's limits fails alone,
        and the rows after it are paged, their line numbers right."""
        path = csv_file(tmp_path / "a.csv", HEADER, row(1), row(2, LONG), row(3), "4,x")
        assert [number for number, _ in csv_records(path)] == [1, 2, 5, 207, 210]  # read whole
        checked = CheckedRows(path)
        with FileAuditSource(path, "acme", checked=checked, max_record_bytes=CAP) as source:
            with pytest.raises(FileFormatError, match=r"line 210: 2 fields where the header has 5"):
                pages(source, "acme")
            assert [outcome.audit_id for outcome in checked.outcomes] == [2]
        [failed] = checked.outcomes
        assert failed.reason == "invalid_audit_row"
        assert f"line 5: record longer than {CAP} bytes" in failed.detail

    def test_the_other_rows_come_once_each(self, tmp_path: Path) -> None:
        path = csv_file(tmp_path / "a.csv", HEADER, row(1), row(2, LONG), row(3), row(4, LONG), row(5))
        checked = CheckedRows(path)
        with FileAuditSource(path, "acme", checked=checked, max_record_bytes=CAP) as source:
            assert pages(source, "acme") == [1, 3, 5]
        assert [(o.audit_id, o.reason) for o in checked.outcomes] == [
            (2, "invalid_audit_row"),
            (4, "invalid_audit_row"),
        ]

    def test_a_record_whose_id_follows_its_long_value_stops_the_read(self, tmp_path: Path) -> None:
        """Its row cannot be named, so it cannot be counted: the read stops (BAD_INPUT)."""
        header = "auditable_type,action,audited_changes,created_at,id"
        kind = SCOPE[0]
        path = csv_file(
            tmp_path / "a.csv",
            header,
            f'{kind},create,"x",2024-01-01,1',
            f"{kind},create,{LONG},2024-01-01,2",
        )
        with (
            FileAuditSource(path, "acme", checked=CheckedRows(path), max_record_bytes=CAP) as source,
            pytest.raises(FileFormatError, match=f"line 3: record longer than {CAP} bytes.*no id before"),
        ):
            pages(source, "acme")

    def test_an_unbalanced_quote_that_joins_records_stops_the_read(self, tmp_path: Path) -> None:
        """A quote that never closes its field makes one "record" of the records after it: counting it
        as one failed row would lose them, so the read stops, naming where it began."""
        joined = [row(i, '"' + "y" * 100 + '"') for i in range(3, 60)]  # 57 records, 7 KiB
        records = [row(1), row(2, '"---\nname: broken'), *joined, row(60, 'stray"'), row(61)]
        assert [number for number, _ in csv_records(csv_file(tmp_path / "b.csv", HEADER, *records))] == [
            1, 2, 5, 65,
        ]  # fmt: skip
        path = csv_file(tmp_path / "a.csv", HEADER, *records)
        with (
            FileAuditSource(path, "acme", checked=CheckedRows(path), max_record_bytes=CAP) as source,
            pytest.raises(FileFormatError, match=f"line 5: record longer than {CAP} bytes.*unbalanced quote"),
        ):
            pages(source, "acme")

    def test_a_tenant_column_passes_over_another_tenants_long_record(self, tmp_path: Path) -> None:
        """With a tenant column, another tenant's long record is passed over (file_tenants still names
        it); one whose tenant comes after its long value stops the read."""
        header = "tenant," + HEADER
        path = csv_file(
            tmp_path / "a.csv",
            header,
            row(1, tenant="acme,"),
            row(2, LONG, "globex,"),
            row(3, tenant="acme,"),
        )
        checked = CheckedRows(path)
        with FileAuditSource(path, "acme", checked=checked, max_record_bytes=CAP) as source:
            assert pages(source, "acme") == [1, 3]
        assert checked.outcomes == []
        assert file_tenants(path) == {"acme", "globex"}
        late = csv_file(tmp_path / "b.csv", HEADER + ",tenant", row(1) + ",acme", row(2, LONG) + ",acme")
        with (
            FileAuditSource(late, "acme", checked=CheckedRows(late), max_record_bytes=CAP) as source,
            pytest.raises(FileFormatError, match="its tenant comes after the long value"),
        ):
            pages(source, "acme")

    def test_without_on_long_a_long_record_still_raises(self, tmp_path: Path) -> None:
        path = csv_file(tmp_path / "a.csv", HEADER, row(1), row(2, LONG))
        with pytest.raises(FileFormatError, match=f"line 5: record longer than {CAP} bytes"):
            list(csv_records(path, CAP))

    def test_an_unterminated_long_quote_at_the_end_still_raises(self, tmp_path: Path) -> None:
        path = csv_file(tmp_path / "a.csv", HEADER, row(1), row(2, LONG[:-1]))
        with pytest.raises(
            FileFormatError,
            match="line 5: record longer than 4096 bytes runs to the end of the file: an unterminated quoted",
        ):
            list(csv_records(path, CAP, on_long=lambda number, record: None))

    @pytest.mark.parametrize("cap", [CAP, 1 << 20], ids=["read-on", "held"])
    def test_a_last_record_without_its_line_end_stops_the_read(self, tmp_path: Path, cap: int) -> None:
        """Past the cap or within it (measured, then held), a last record the file ends inside is
        refused naming its first line, not counted as its row's failure nor read as a row: psql ends
        every record with a line end, and its last field may be cut."""
        path = csv_file(tmp_path / "a.csv", HEADER, row(1), row(2, LONG))
        path.write_bytes(path.read_bytes()[:-4])
        checked = CheckedRows(path)
        with (
            FileAuditSource(path, "acme", checked=checked, max_record_bytes=cap) as source,
            pytest.raises(FileFormatError, match=r"line 5: .*ends without a line end after this record"),
        ):
            pages(source, "acme")
        assert checked.outcomes == []


FIELD = st.one_of(
    st.text(st.sampled_from('ab,"\n\r'), max_size=12).map(lambda text: '"' + text.replace('"', '""') + '"'),
    st.text(st.sampled_from("ab\r"), max_size=6),
)
"""A field as psql writes it (quoted, with any of its characters inside; or plain), or, rarely, a
malformed one (below)."""
JUNK = st.text(st.sampled_from('ab,"\r'), max_size=6)


class TestLongRecordScan:
    @settings(max_examples=300, derandomize=True, database=None, deadline=None)
    @given(
        records=st.lists(
            st.lists(st.one_of(FIELD, FIELD, JUNK), min_size=1, max_size=5), min_size=1, max_size=4
        ),
        cap=st.integers(2, 40),  # a record past 2 bytes is no blank line (CRLF)
        last_line_end=st.booleans(),
    )
    def test_a_long_records_fields_and_form_are_what_the_whole_record_gives(
        self,
        tmp_path_factory: pytest.TempPathFactory,
        records: list[list[str]],
        cap: int,
        last_line_end: bool,
    ) -> None:
        """Read on in blocks past any cap, a record ends where csv_records ends it read whole, and has
        the field count and the well-formedness split_record finds, its head's whole fields first."""
        path = tmp_path_factory.mktemp("scan") / "r.csv"
        text = "".join(",".join(fields) + "\n" for fields in records)
        path.write_bytes((text if last_line_end else text[:-1]).encode())
        try:
            whole = list(csv_records(path, 1 << 20))
        except FileFormatError:
            return  # an unterminated quote: both raise (tested above)
        long: list[tuple[int, LongRecord]] = []
        short = list(csv_records(path, cap, on_long=lambda number, record: long.append((number, record))))
        starts = sorted([number for number, _ in short] + [number for number, _ in long])
        assert starts == [number for number, _ in whole]
        by_start = dict(whole)
        for number, record in long:
            raw = by_start[number]
            try:
                fields = split_record(path, number, raw)
            except FileFormatError:
                assert not record.well_formed
                continue
            assert record.well_formed
            assert record.fields == len(fields)
            head = leading_fields(record.head)
            assert head == fields[: len(head)]
