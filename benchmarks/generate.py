"""Write a synthetic CRM tenant of any size into PostgreSQL, shaped like the audited 5.8.0 corpus.

Every synthetic audit row is a real corpus row (``tests/fixtures/audited-5.8.0/audits.jsonl``, byte-exact
``audited_changes``) replayed as a *block*: block ``b`` replays the corpus history of tenant ``b % 3``
with every entity id shifted by ``b * ENTITY_STRIDE`` (auditable ids, ``associated_id``, the
``crm_person_id``/``crm_company_id``/… values inside ``audited_changes``, ``crm_person_id`` in comment
JSON) and user ids moved into one of ``USER_BLOCKS`` user groups. So the mix of actions, auditable
types, payload sizes, Ruby-tagged values, actors and comments is the corpus's own, per-entity version
histories stay coherent, and ``created_at`` increases with ``id``.

Alongside the ``audits`` and ``users`` tables (same DDL as the corpus's ``crm.sql``) it writes, under
``--data-dir``: ``contacts.jsonl`` (one CDP contact per synthetic person, as ``mongoexport`` writes
them: ~3% missing, ~10% synced in the middle of their history so the watermark skips their later
rows), ``sso.jsonl`` (USMAN's SSO ids by email: ~10% of users unknown) and ``manifest.json`` — the
formats ``crm_audit_adapters.files`` reads for a dry run.

Rows are rendered straight into COPY text format from templates compiled once, and streamed: memory
stays flat at any ``--rows``.

    .venv/bin/python benchmarks/generate.py --rows 1000000 [--dsn postgresql://…] [--schema bench_1000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent / "tests" / "fixtures" / "audited-5.8.0"
COMPANY_SSO_ID = "bench-company"
ENTITY_STRIDE = 1000  # corpus entity ids stay below 200 per tenant and type
USER_BLOCKS = 60  # a multiple of the corpus's 3 tenants, so a user group keeps its tenant's users
USER_STRIDE = 100
START = dt.datetime(2019, 1, 1)
SPAN = dt.timedelta(days=7 * 365)
_ID_KEYS = frozenset({"crm_person_id", "crm_company_id", "crm_deal_id", "crm_ticket_id", "crm_task_id"})
_TOP_KEY = re.compile(r"(\w+):(?: (.*))?$")
_COMMENT_PERSON = re.compile(r'("crm_person_id"\s*:\s*"?)(\d+)')
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})

AUDITS_DDL = """
CREATE TABLE {s}.audits (
    id bigint NOT NULL,
    auditable_id integer,
    auditable_type character varying,
    associated_id integer,
    associated_type character varying,
    user_id integer,
    user_type character varying,
    username character varying,
    action character varying,
    audited_changes text,
    version integer DEFAULT 0,
    comment character varying,
    remote_address character varying,
    request_uuid character varying,
    created_at timestamp without time zone
);
CREATE TABLE {s}.users (
    id bigint NOT NULL,
    email character varying NOT NULL,
    full_name character varying,
    deleted_at timestamp without time zone,
    created_at timestamp(6) without time zone NOT NULL,
    updated_at timestamp(6) without time zone NOT NULL
);
"""
INDEX_DDL = """
ALTER TABLE ONLY {s}.audits ADD CONSTRAINT audits_pkey PRIMARY KEY (id);
ALTER TABLE ONLY {s}.users ADD CONSTRAINT users_pkey PRIMARY KEY (id);
CREATE INDEX associated_index ON {s}.audits USING btree (associated_type, associated_id);
CREATE INDEX auditable_index ON {s}.audits USING btree (auditable_type, auditable_id, version);
CREATE INDEX index_audits_on_created_at ON {s}.audits USING btree (created_at);
CREATE INDEX index_audits_on_request_uuid ON {s}.audits USING btree (request_uuid);
CREATE INDEX user_index ON {s}.audits USING btree (user_id, user_type);
ANALYZE {s}.audits;
ANALYZE {s}.users;
"""


class Template(NamedTuple):
    """One corpus row compiled to a COPY line with numbered slots.

    ``fmt`` takes ``{0}`` id, ``{1}`` created_at, ``{2}`` request-uuid suffix, then one slot per
    shifted id: ``entity_bases`` first, ``user_bases`` after them.
    """

    tenant: str
    fmt: str
    entity_bases: tuple[int, ...]
    user_bases: tuple[int, ...]


def _copy_text(value: object) -> str:
    """A literal COPY text field, with ``{``/``}`` doubled for ``str.format``."""
    if value is None:
        return "\\N"
    return str(value).translate(_COPY_ESCAPES).replace("{", "{{").replace("}", "}}")


class _SlotWriter:
    """Builds a format string from literal text and id slots."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.entity_bases: list[int] = []
        self.user_bases: list[int] = []
        self._pending: list[tuple[str, int]] = []  # (kind, base) in order of appearance

    def literal(self, value: object) -> None:
        self.parts.append(_copy_text(value))

    def slot(self, kind: str, base: int) -> None:
        self.parts.append(f"\x00{len(self._pending)}\x00")
        self._pending.append((kind, base))

    def entity_or_null(self, value: int | None) -> None:
        self.literal(None) if value is None else self.slot("entity", value)

    def template(self, tenant: str) -> Template:
        # Number entity slots first, then user slots, so a row's arguments are two plain lists.
        entity = [i for i, (kind, _) in enumerate(self._pending) if kind == "entity"]
        user = [i for i, (kind, _) in enumerate(self._pending) if kind == "user"]
        number = {old: 3 + new for new, old in enumerate(entity + user)}
        fmt = re.sub(r"\x00(\d+)\x00", lambda m: f"{{{number[int(m.group(1))]}}}", "".join(self.parts))
        return Template(
            tenant,
            fmt,
            tuple(self._pending[i][1] for i in entity),
            tuple(self._pending[i][1] for i in user),
        )


def _changes_with_slots(text: str, out: _SlotWriter) -> None:
    """Emit ``audited_changes`` with the linked-entity ids of its top-level keys as slots."""
    key: str | None = None
    for line in text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"):
        slot_value: str | None = None
        prefix = ""
        if line.startswith("-") and not line.startswith("---"):
            rest = line[2:] if line.startswith("- ") else ""
            if key in _ID_KEYS and rest.isdigit():
                prefix, slot_value = "- ", rest
        elif not line.startswith(" "):
            match = _TOP_KEY.match(line)
            key = match.group(1) if match else None
            if match and key in _ID_KEYS and (match.group(2) or "").isdigit():
                prefix, slot_value = f"{key}: ", match.group(2)
        if slot_value is None:
            out.literal(line + "\n")
        else:
            out.literal(prefix)
            out.slot("entity", int(slot_value))
            out.literal("\n")
    if not text.endswith("\n"):
        out.parts[-1] = out.parts[-1].removesuffix("\\n")


def _comment_with_slots(comment: str | None, out: _SlotWriter) -> None:
    if comment is None or not comment.lstrip().startswith("{"):
        out.literal(comment)
        return
    position = 0
    for match in _COMMENT_PERSON.finditer(comment):
        out.literal(comment[position : match.start(2)])
        out.slot("entity", int(match.group(2)))
        position = match.end(2)
    out.literal(comment[position:])


def compile_template(row: dict[str, Any]) -> Template:
    """Compile a corpus row (a line of ``audits.jsonl``) into a reusable :class:`Template`."""
    out = _SlotWriter()
    out.parts.append("{0}\t")
    out.entity_or_null(row["auditable_id"])
    out.parts.append("\t")
    out.literal(row["auditable_type"])
    out.parts.append("\t")
    out.entity_or_null(row["associated_id"])
    out.parts.append("\t")
    for column in ("associated_type",):
        out.literal(row[column])
        out.parts.append("\t")
    if row["user_id"] is None:
        out.literal(None)
    else:
        out.slot("user", row["user_id"])
    out.parts.append("\t")
    for column in ("user_type", "username", "action"):
        out.literal(row[column])
        out.parts.append("\t")
    changes = row["audited_changes"]
    if changes is None:
        out.literal(None)
    else:
        _changes_with_slots(changes, out)
    out.parts.append("\t")
    out.literal(row["version"])
    out.parts.append("\t")
    _comment_with_slots(row["comment"], out)
    out.parts.append("\t")
    out.literal(row["remote_address"])
    out.parts.append("\t")
    uuid = row["request_uuid"]
    if uuid is None:
        out.literal(None)
    else:
        out.literal(uuid[:24])
        out.parts.append("{2}")
    out.parts.append("\t{1}\n")
    return out.template(row["tenant"])


def load_templates(corpus: Path = CORPUS) -> dict[str, list[Template]]:
    """The corpus's rows compiled per tenant, in id order (a tenant's replayable history)."""
    by_tenant: dict[str, list[Template]] = {}
    with (corpus / "audits.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            template = compile_template(json.loads(line))
            by_tenant.setdefault(template.tenant, []).append(template)
    return by_tenant


def _timestamp(index: int, rows: int) -> dt.datetime:
    # The same arithmetic as audit_lines (timedelta × large int would overflow a C int).
    return START + SPAN / max(rows, 1) * index


def _block_tenants(tenants: Sequence[str], block: int) -> str:
    return tenants[block % len(tenants)]


def audit_lines(templates: dict[str, list[Template]], rows: int) -> Iterator[str]:
    """``rows`` COPY text lines of synthetic audits, ids 1..rows, ``created_at`` increasing with id."""
    tenants = sorted(templates)
    index, block = 0, 0
    step = SPAN / max(rows, 1)
    while index < rows:
        history = templates[_block_tenants(tenants, block)]
        entity_offset = block * ENTITY_STRIDE
        user_offset = (block % USER_BLOCKS) * USER_STRIDE
        suffix = f"{block:012x}"
        for template in history[: rows - index]:
            stamp = START + step * index
            index += 1
            yield template.fmt.format(
                index,
                f"{stamp:%Y-%m-%d %H:%M:%S.%f}",
                suffix,
                *[base + entity_offset for base in template.entity_bases],
                *[base + user_offset for base in template.user_bases],
            )
        block += 1


def _persons(corpus: Path) -> dict[str, list[int]]:
    persons: dict[str, list[int]] = {}
    with (corpus / "entities.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            entity = json.loads(line)
            if entity["type"] == "Crm::Person":
                persons.setdefault(entity["tenant"], []).append(entity["id"])
    return persons


def _spread(value: int) -> int:
    """A deterministic 0..99 bucket of an id (Knuth's multiplicative hash)."""
    return (value * 2654435761 >> 8) % 100


def contact_records(
    templates: dict[str, list[Template]], rows: int, corpus: Path = CORPUS
) -> Iterator[dict[str, Any]]:
    """CDP contacts for every synthetic person: 3% missing, 10% synced mid-history, the rest after it."""
    persons, tenants = _persons(corpus), sorted(templates)
    after_all = _timestamp(rows, rows) + dt.timedelta(days=1)
    start, block = 0, 0
    while start < rows:
        tenant = _block_tenants(tenants, block)
        length = min(len(templates[tenant]), rows - start)
        middle = _timestamp(start + length // 2, rows)
        for person in persons.get(tenant, []):
            crm_person_id = person + block * ENTITY_STRIDE
            bucket = _spread(crm_person_id)
            if bucket < 3:
                continue
            synced = middle if bucket < 13 else after_all
            yield {
                "_id": {"$oid": f"{crm_person_id:024x}"},
                "company_sso_id": COMPANY_SSO_ID,
                "crm_data": {"id": crm_person_id},
                "created_at": synced.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z"),
            }
        start += length
        block += 1


def user_records(rows: int, tenants: Sequence[str], corpus: Path = CORPUS) -> Iterator[dict[str, Any]]:
    """The users the synthetic audits reference (hard-deleted ones stay absent, soft-deleted stay)."""
    by_tenant: dict[str, list[dict[str, Any]]] = {}
    with (corpus / "users.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            user = json.loads(line)
            by_tenant.setdefault(user["tenant"], []).append(user)
    blocks = min(USER_BLOCKS, -(-rows // 700) + len(tenants))  # enough for the blocks rows can reach
    for group in range(blocks):
        for user in by_tenant.get(tenants[group % len(tenants)], []):
            local, _, domain = user["email"].partition("@")
            yield {
                "id": user["id"] + group * USER_STRIDE,
                "email": f"{local}.g{group}@{domain}",
                "full_name": user["full_name"],
                "deleted_at": user["deleted_at"],
            }


def sso_records(users: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """USMAN's answer per email; ~10% of users are unknown there (their actor degrades)."""
    for user in users:
        if _spread(user["id"]) >= 10:
            yield {
                "company_sso_id": COMPANY_SSO_ID,
                "email": user["email"],
                "sso_id": f"00000000-0000-4000-8000-{user['id']:012d}",
            }


def _write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def generate(dsn: str, rows: int, schema: str, data_dir: Path, *, log: Any = print) -> dict[str, Any]:
    """Create ``schema`` (dropping an old one), load ``rows`` audits and the users, write the JSONL."""
    import psycopg
    from psycopg import sql

    started = time.perf_counter()
    templates = load_templates()
    tenants = sorted(templates)
    users = list(user_records(rows, tenants))
    ident = sql.Identifier(schema)
    data_dir.mkdir(parents=True, exist_ok=True)
    with psycopg.connect(dsn) as conn:
        # Table creation and COPY in one transaction: with wal_level=minimal the load skips the WAL.
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(ident))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
        conn.execute(sql.SQL(AUDITS_DDL).format(s=ident))
        with conn.cursor().copy(sql.SQL("COPY {}.audits FROM STDIN").format(ident)) as copy:
            chunk: list[str] = []
            for line in audit_lines(templates, rows):
                chunk.append(line)
                if len(chunk) == 2000:
                    copy.write("".join(chunk).encode())
                    chunk.clear()
            if chunk:
                copy.write("".join(chunk).encode())
        with conn.cursor().copy(
            sql.SQL(
                "COPY {}.users (id, email, full_name, deleted_at, created_at, updated_at) FROM STDIN"
            ).format(ident)
        ) as copy:
            for user in users:
                copy.write_row(
                    (user["id"], user["email"], user["full_name"], user["deleted_at"], START, START)
                )
        conn.commit()
        loaded = time.perf_counter()
        log(f"loaded {rows} audits into {schema} in {loaded - started:.1f}s; indexing")
        conn.execute(sql.SQL(INDEX_DDL).format(s=ident))
        conn.commit()
        size = conn.execute(
            "SELECT pg_total_relation_size(format('%%I.audits', %s::text)::regclass)", (schema,)
        ).fetchone()
    contacts = _write_jsonl(data_dir / "contacts.jsonl", contact_records(templates, rows))
    sso = _write_jsonl(data_dir / "sso.jsonl", sso_records(users))
    manifest = {
        "rows": rows,
        "schema": schema,
        "company_sso_id": COMPANY_SSO_ID,
        "users": len(users),
        "contacts": contacts,
        "sso_ids": sso,
        "audits_bytes_with_indexes": size[0] if size else None,
        "load_seconds": round(loaded - started, 2),
        "total_seconds": round(time.perf_counter() - started, 2),
    }
    (data_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    log(f"generated {schema}: {json.dumps(manifest)}")
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, required=True, help="audit rows to write")
    parser.add_argument(
        "--dsn",
        help="target database (default: a throwaway cluster, kept only while "
        "this command runs — so use --dsn to keep the data for run_scale.py --dsn)",
    )
    parser.add_argument("--schema", help="tenant schema (default bench_<rows>)")
    parser.add_argument("--data-dir", type=Path, help="JSONL output (default benchmarks/data/<schema>)")
    args = parser.parse_args(argv)
    schema = args.schema or f"bench_{args.rows}"
    data_dir = args.data_dir or HERE / "data" / schema
    if args.dsn:
        generate(args.dsn, args.rows, schema, data_dir)
        return 0
    from crm_audit_adapters.crm_postgres.throwaway import create_database, throwaway_server

    with throwaway_server() as server:
        generate(create_database(server.dsn, "crm_bench"), args.rows, schema, data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
