"""Every route of the HTTP surface over the real use cases: PostgreSQL (the corpus) and MongoDB."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import ssl
from collections.abc import Iterator
from typing import Any

import attrs
import httpx
import pytest
from bson import json_util

from crm_audit_adapters.bootstrap import Runtime, build_runtime
from crm_audit_adapters.crm_postgres.lookups import PostgresPeopleCounter
from crm_audit_adapters.crm_postgres.session import ReadOnlySession
from crm_audit_adapters.http import BasicAuthCredentials, SignedSessionResolver, create_app
from crm_audit_adapters.mongo.documents import encode_activity_log
from crm_audit_adapters.mongo.indexes import apply_migration
from crm_audit_adapters.settings import Settings
from crm_audit_transform.domain import ActivityLog, Actor, FieldChange
from crm_audit_transform.testing import FixedClock, InMemorySsoDirectory
from support.live_server import LiveServer, MountedApp

pytestmark = pytest.mark.postgres

COMPANY = "company-acme"
TENANT = "acme"
AUTH = "Basic " + base64.b64encode(b"ops:s3cret").decode()
SESSIONS = SignedSessionResolver(secret=b"session-secret")


def people_count(dsn: str) -> int:
    with ReadOnlySession.from_dsn(dsn) as session:
        return PostgresPeopleCounter(session).count_people(TENANT)


def seed_contacts(db: Any, company: str, count: int) -> None:
    created = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    db["contacts"].insert_many(
        [
            {"company_sso_id": company, "crm_data": {"id": n}, "created_at": created}
            for n in range(1, count + 1)
        ]
    )


def seed_record_contacts(db: Any, *numbers: int, company: str = COMPANY) -> None:
    """The contacts ``log(n)``'s records name: ``contact-{n}``, CRM person ``n``, of ``company``."""
    created = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    db["contacts"].insert_many(
        [
            {"_id": f"contact-{n}", "company_sso_id": company, "crm_data": {"id": n}, "created_at": created}
            for n in numbers
        ]
    )


def runtime_over(
    crm_dsn: str, mongo_db: Any, enabled: str, bindings: dict[str, str] | None = None, **overrides: Any
) -> Runtime:
    """The runner's own composition root, on the corpus database and the test's MongoDB; every
    enabled account bound to ``TENANT``, unless ``bindings`` says otherwise."""
    settings = Settings(
        database_url=crm_dsn,
        mongo_database=mongo_db.name,
        enabled_companies=enabled,
        tenants={**dict.fromkeys([*enabled.split(","), "company-other"], TENANT), **(bindings or {})},
        coverage_threshold=0.9,  # the corpus CDP covers 93.9% of acme's people (tests/conftest.py)
    )
    clock = FixedClock(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    return build_runtime(settings, mongo_client=mongo_db.client, clock=clock, **overrides)


CLIENT_TLS = ssl.create_default_context()
"""The clients' TLS context, made once: the server is plain HTTP, but each ``httpx.Client`` would
load the CA bundle again (about 50 ms, as long as a route test's own requests)."""


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[MountedApp, str]]:
    """One uvicorn server for the module; each test mounts its own app in it (``client_of``)."""
    mounted = MountedApp()
    with LiveServer(mounted) as live:
        yield mounted, live.url


@contextlib.contextmanager
def client_of(served: tuple[MountedApp, str], runtime: Runtime, timeout: float) -> Iterator[httpx.Client]:
    """An HTTP client of ``runtime``'s app, served by the module's server until the block ends."""
    mounted, url = served
    app = create_app(runtime.service, basic_auth=BasicAuthCredentials("ops", "s3cret"), sessions=SESSIONS)
    # Every body here is JSON: the routes refuse one sent as another type (test_cross_site_requests.py).
    json_type = {"Content-Type": "application/json"}
    with (
        mounted.mount(app),
        httpx.Client(base_url=url, timeout=timeout, verify=CLIENT_TLS, headers=json_type) as client,
    ):
        yield client


@pytest.fixture
def app_parts(crm_dsn: str, mongo_db: Any, served: tuple[MountedApp, str]) -> Iterator[dict[str, Any]]:
    apply_migration(mongo_db, "up")
    with (
        runtime_over(crm_dsn, mongo_db, f"{COMPANY},company-empty") as runtime,
        client_of(served, runtime, timeout=30) as client,
    ):
        yield {"client": client, "db": mongo_db, "dsn": crm_dsn}


def log(n: int, company: str = COMPANY) -> ActivityLog:
    return ActivityLog(
        company_sso_id=company,
        customer_id=f"contact-{n}",
        category="contact",
        action="updated",
        actor=Actor("system", "Qontak System"),
        changes=(FieldChange("phone", "Phone", "1", "2"),),
        timestamp=dt.datetime(2020, 1, 1, 12, 0, n % 60, tzinfo=dt.UTC),
        external_id=f"crm:acme:audit:{n}",
        metadata={"crm_audit_id": n, "crm_tenant": TENANT, "crm_person_id": n},
    )


def named(x: ActivityLog, external_id: str) -> ActivityLog:
    """``x`` under another ``external_id``, its ``crm_audit_id`` and ``crm_tenant`` the ones it names (the
    route refuses a record whose metadata contradicts it)."""
    tenant, _, audit_id = external_id.removeprefix("crm:").rpartition(":audit:")
    metadata = {**x.metadata, "crm_audit_id": int(audit_id), "crm_tenant": tenant}
    return attrs.evolve(x, external_id=external_id, metadata=metadata)


def body(*logs: ActivityLog) -> str:
    return json_util.dumps(
        {"records": [encode_activity_log(x) for x in logs]}, json_options=json_util.RELAXED_JSON_OPTIONS
    )


def _at_year_one() -> bytes:
    text = body(log(1))
    date = '{"$date": "2020-01-01T12:00:01Z"}'
    assert date in text
    return text.replace(date, '"0001-01-01T00:00:00+14:00"').encode()


RECORD_AT_YEAR_ONE = _at_year_one()  # a valid offset text whose UTC instant is before year 1
CODE = '{"$code": "function () { return 1; }"}'
CODE_WITH_SCOPE = '{"$code": "function () { return a; }", "$scope": {"a": 1}}'


def _holding(value: str, where: str) -> bytes:
    """One valid record with the Extended JSON ``value`` put at ``where``."""
    record = json.loads(body(log(1)))["records"][0]
    marker = "@value@"
    if where == "metadata":
        record["metadata"]["y"] = marker
    elif where == "to":
        record["attributes"][0]["to"] = marker
    elif where == "actor.type":
        record["actor"]["type"] = marker
    else:
        record[where] = marker
    return json.dumps({"records": [record]}).replace(json.dumps(marker), value).encode()


def error_code(response: Any) -> str:
    payload = response.json()
    assert set(payload) == {"error"}
    assert "Traceback" not in response.text
    return str(payload["error"]["code"])


class TestMigrateRoute:
    def test_inserts_then_skips_the_same_batch_as_duplicates(self, app_parts: dict[str, Any]) -> None:
        """Posting a batch twice inserts it once; the replay is skipped record by record."""
        seed_record_contacts(app_parts["db"], 1, 2)
        client = app_parts["client"]
        first = client.post(
            "/private/activity_logs/migrate", content=body(log(1), log(2)), headers={"Authorization": AUTH}
        )
        assert first.status_code == 200
        assert first.json()["inserted"] == 2
        again = client.post(
            "/private/activity_logs/migrate", content=body(log(1), log(2)), headers={"Authorization": AUTH}
        )
        assert again.json()["inserted"] == 0
        assert again.json()["skipped"] == 2
        assert {r["reason"] for r in again.json()["results"]} == {"duplicate_external_id"}
        assert app_parts["db"]["activity_logs"].count_documents({}) == 2

    def test_a_customer_that_is_not_the_accounts_contact_is_skipped_never_written(
        self, app_parts: dict[str, Any]
    ) -> None:
        """As a run counts a row whose person has no contact of the account: a record is written only
        when its customer_id is the contact its metadata.crm_person_id names. Another account's
        contact, a person without a contact, a customer_id that is not that person's contact and a
        record naming no person are each skipped contact_not_found; the batch's good record lands."""
        db = app_parts["db"]
        seed_record_contacts(db, 1, 2)
        seed_record_contacts(db, 3, company="company-other")
        records = [
            log(1),
            log(3),  # person 3's contact is company-other's
            log(4),  # no contact at all
            attrs.evolve(log(5), metadata={"crm_person_id": 2}),  # person 2 is contact-2, not contact-5
            attrs.evolve(log(6), metadata={"crm_audit_id": 6}),  # names no person
            attrs.evolve(log(7), metadata={"crm_person_id": "1"}),  # not a person id as a run writes it
        ]
        response = app_parts["client"].post(
            "/private/activity_logs/migrate", content=body(*records), headers={"Authorization": AUTH}
        )
        assert response.status_code == 200, response.text
        answer = response.json()
        assert (answer["inserted"], answer["skipped"], answer["failed"]) == (1, 5, 0)
        assert [(r["external_id"], r["status"], r["reason"]) for r in answer["results"]] == [
            ("crm:acme:audit:1", "inserted", None),
            *((f"crm:acme:audit:{n}", "skipped", "contact_not_found") for n in (3, 4, 5, 6, 7)),
        ]
        assert [d["external_id"] for d in db["activity_logs"].find({})] == ["crm:acme:audit:1"]

    @pytest.mark.parametrize(
        "external_id",
        [
            "crm:acme:audit:026",
            "crm:acme:audit:+26",
            "crm:acme:audit:-0",
            "crm:acme:audit: 26",
            "crm:acme:audit:2\u0666",
            "crm:acme:audit:",
            "crm::audit:26",
            "crm:acme:26",
            "acme:audit:26",
            "crm:acme:audit:" + "9" * 25,
            f"crm:acme:audit:{2**63}",  # outside bigint (audits.id): no run writes it
            f"crm:acme:audit:{-(2**63) - 1}",
            "crm:acme:audit:" + "9" * 20,
        ],
    )
    def test_an_external_id_not_spelled_as_the_run_writes_it_is_refused(
        self, app_parts: dict[str, Any], external_id: str
    ) -> None:
        """crm:acme:audit:026 names no audit (verify reports it as a stray) and would sit beside the
        run's crm:acme:audit:26, the same record twice: 400 INVALID_RECORD naming the field; none written."""
        record = json.loads(body(log(26)))["records"][0]
        record["external_id"] = external_id
        response = app_parts["client"].post(
            "/private/activity_logs/migrate", json={"records": [record]}, headers={"Authorization": AUTH}
        )
        assert response.status_code == 400, response.text
        assert error_code(response) == "INVALID_RECORD"
        assert "records[0].external_id" in response.json()["error"]["message"]
        assert app_parts["db"]["activity_logs"].count_documents({}) == 0

    @pytest.mark.parametrize(
        ("change", "named"),
        [
            ({"atributes": []}, "records[1]: unknown key(s) 'atributes'"),
            ({"metadata": {"crm_audit_id": 27, "crm_tenant": TENANT}}, "records[1].metadata.crm_audit_id"),
            ({"metadata": {"crm_audit_id": 26, "crm_tenant": "globex"}}, "records[1].metadata.crm_tenant"),
        ],
    )
    def test_a_record_with_an_unknown_key_or_a_contradicting_metadata_is_refused(
        self, app_parts: dict[str, Any], change: dict[str, Any], named: str
    ) -> None:
        """An unknown key was dropped (a misspelt "atributes" stored the log with no change) and a
        metadata.crm_audit_id or crm_tenant other than external_id's was stored (verify then reported the
        log drifted): 400 INVALID_RECORD naming the key or field, the whole batch refused, none written.
        Fails on the old code: the batch was answered 200 and written."""
        records = json.loads(body(log(25), log(26)))["records"]
        records[1].update(change)
        response = app_parts["client"].post(
            "/private/activity_logs/migrate", json={"records": records}, headers={"Authorization": AUTH}
        )
        assert response.status_code == 400, response.text
        assert error_code(response) == "INVALID_RECORD"
        assert named in response.json()["error"]["message"]
        assert app_parts["db"]["activity_logs"].count_documents({}) == 0

    @pytest.mark.parametrize(
        ("company", "external_id", "status", "code"),
        [
            ("company-other", "crm:acme:audit:1", 403, "FLAG_DISABLED"),  # bound, its flag off
            ("company-unbound", "crm:nobodys:audit:1", 422, "TENANT_UNBOUND"),  # no binding: checked first
            ("company-unbound", "crm:acme:audit:1", 409, "TENANT_MISMATCH"),  # a tenant bound to others
            (COMPANY, "crm:globex:audit:1", 409, "TENANT_MISMATCH"),  # another tenant's audit
            ("company-empty", "crm:nosuchtenant:audit:1", 409, "TENANT_MISMATCH"),
        ],
    )
    def test_refuses_what_a_run_would_refuse_and_writes_nothing(
        self, app_parts: dict[str, Any], company: str, external_id: str, status: int, code: str
    ) -> None:
        """The route is a write path like ``run``: an account whose flag is off, one with no tenant
        binding, a record of another tenant than the account's are refused whole, before any write
        (a valid record in the same batch is not written either)."""
        refused = named(log(2, company=company), external_id)
        response = app_parts["client"].post(
            "/private/activity_logs/migrate", content=body(log(1), refused), headers={"Authorization": AUTH}
        )
        assert (response.status_code, error_code(response)) == (status, code), response.text
        assert app_parts["db"]["activity_logs"].count_documents({}) == 0

    def test_refuses_while_the_account_is_rolled_back(self, app_parts: dict[str, Any]) -> None:
        """A rollback under way holds the account: 409 JOB_ALREADY_RUNNING, as for trigger and run."""
        db = app_parts["db"]
        client = app_parts["client"]
        seed_contacts(db, COMPANY, people_count(app_parts["dsn"]))
        trigger = client.post(
            "/private/activity_logs/crm_migration/trigger",
            json={"company_sso_id": COMPANY},
            headers={"Authorization": AUTH},
        )
        assert trigger.status_code == 202, trigger.text
        db["crm_activity_log_migration_jobs"].update_many({}, {"$set": {"status": "rolling_back"}})
        response = client.post(
            "/private/activity_logs/migrate", content=body(log(1)), headers={"Authorization": AUTH}
        )
        assert (response.status_code, error_code(response)) == (409, "JOB_ALREADY_RUNNING")
        assert db["activity_logs"].count_documents({}) == 0

    def test_refuses_more_than_twenty_records(self, app_parts: dict[str, Any]) -> None:
        """Twenty-one records are refused whole with BATCH_TOO_LARGE and nothing is written."""
        response = app_parts["client"].post(
            "/private/activity_logs/migrate",
            content=body(*[log(n) for n in range(21)]),
            headers={"Authorization": AUTH},
        )
        assert response.status_code == 400
        assert error_code(response) == "BATCH_TOO_LARGE"
        assert app_parts["db"]["activity_logs"].count_documents({}) == 0

    @pytest.mark.parametrize(
        ("payload", "code"),
        [
            (b"{not json", "MALFORMED_BODY"),
            (b"[]", "MALFORMED_BODY"),
            (b'{"records": [1]}', "INVALID_RECORD"),
            (b'{"records": [{"company_sso_id": "x"}]}', "INVALID_RECORD"),
            (b"\xff\xfe", "MALFORMED_BODY"),
            (b'{"records": ' + b"[" * 5000 + b"]" * 5000 + b"}", "MALFORMED_BODY"),
            (b'{"records": ["' + b'\\"' * (1 << 19), "MALFORMED_BODY"),  # a string never closed: hours
            (b'{"records": [{"metadata": {"x": {"$numberDecimal": "abc"}}}]}', "MALFORMED_BODY"),
            (b'{"records": [{"metadata": {"x": {"$numberDecimal": "1e99999999999"}}}]}', "MALFORMED_BODY"),
            (b'{"records": [{"timestamp": {"$date": "0001-01-01T00:00:00+14:00"}}]}', "MALFORMED_BODY"),
            (b'{"records": [{"metadata": {"x": {"$binary": {}}}}]}', "MALFORMED_BODY"),  # was a 500
            (b'{"records": [{"metadata": {"x": {"$binary": {}, "$type": "00"}}}]}', "MALFORMED_BODY"),
            (b'{"records": [{"metadata": {"x": {"$date": 1e400}}}]}', "MALFORMED_BODY"),
            (b'{"records": [], "records": []}', "MALFORMED_BODY"),  # a member twice: which counts?
            (b'{"records": [{"source_tag": "crm_migration", "source_tag": "x"}]}', "MALFORMED_BODY"),
            (b'{"records": [{"metadata": {"x": {"$date": 0, "$date": 1}}}]}', "MALFORMED_BODY"),
            (RECORD_AT_YEAR_ONE, "INVALID_RECORD"),
        ],
    )
    def test_malformed_bodies_get_one_clear_error(
        self, app_parts: dict[str, Any], payload: bytes, code: str
    ) -> None:
        """Bodies that are not JSON, nest too deeply, hold a bad $numberDecimal, $binary or $date (one
        before year 1 in UTC included), or hold bad records, get a 400 in the error envelope, never a 500."""
        response = app_parts["client"].post(
            "/private/activity_logs/migrate", content=payload, headers={"Authorization": AUTH}
        )
        assert response.status_code == 400
        assert error_code(response) == code

    @pytest.mark.parametrize(
        ("value", "where"),
        [
            *(
                (code, where)
                for code in (CODE, CODE_WITH_SCOPE)
                for where in ("metadata", "to", "external_id")
            ),
            ('{"$code": "company-acme"}', "company_sso_id"),
            ('{"$code": "system"}', "actor.type"),
        ],
    )
    def test_bson_javascript_is_refused_anywhere_in_a_record(
        self, app_parts: dict[str, Any], value: str, where: str
    ) -> None:
        """$code (with or without $scope) decodes to bson.Code, a str: refused as INVALID_RECORD like
        $minKey, never stored as BSON JavaScript, even where it equals the expected text."""
        response = app_parts["client"].post(
            "/private/activity_logs/migrate", content=_holding(value, where), headers={"Authorization": AUTH}
        )
        assert response.status_code == 400, response.text
        assert error_code(response) == "INVALID_RECORD"
        assert app_parts["db"]["activity_logs"].count_documents({}) == 0

    @pytest.mark.parametrize(
        "company",
        ['"caf\\udce9"', '"   "', json.dumps("c" * 129)],
        ids=["lone-surrogate", "blank", "129-chars"],
    )
    def test_a_records_company_under_the_routes_rule_is_a_400(
        self, app_parts: dict[str, Any], company: str
    ) -> None:
        """A record's ``company_sso_id`` is held to every route's rule (``INVALID_COMPANY``): at most 128
        characters, not blank, Unicode text. A lone surrogate reached the binding check, whose refusal
        quoting it could not be encoded: 500 ``INTERNAL``, against "no request body reaches a 500"."""
        response = app_parts["client"].post(
            "/private/activity_logs/migrate",
            content=_holding(company, "company_sso_id"),
            headers={"Authorization": AUTH, "Content-Type": "application/json"},
        )
        assert response.status_code == 400, response.text
        assert error_code(response) == "INVALID_RECORD"
        assert response.json()["error"]["message"].startswith("records[0].company_sso_id: ")
        assert app_parts["db"]["activity_logs"].count_documents({}) == 0

    @pytest.mark.parametrize(("levels", "where"), [(97, "to"), (98, "metadata")])
    @pytest.mark.parametrize(
        "leaf",
        [
            "1",
            # Two-level Extended JSON leaves a dry run writes: bytes, and a datetime before 1970.
            '{"$binary": {"base64": "AA==", "subType": "00"}}',
            '{"$date": {"$numberLong": "-1000"}}',
        ],
    )
    def test_a_value_nested_as_deep_as_mongodb_takes_is_accepted(
        self, app_parts: dict[str, Any], levels: int, where: str, leaf: str
    ) -> None:
        """The route took 32 levels while a dry run writes up to 97 (98 in metadata), which its
        docstring promises can be posted as written. It takes what the writers take; one level more
        fails that record alone (write_error), as in a run; past MongoDB's 100 the body is refused."""
        client = app_parts["client"]
        seed_record_contacts(app_parts["db"], 1)

        def post(depth: int, number: int) -> Any:
            record = json.loads(_holding("[" * depth + leaf + "]" * depth, where))["records"][0]
            record["external_id"] = f"crm:acme:audit:{number}"
            record["metadata"]["crm_audit_id"] = number
            return client.post(
                "/private/activity_logs/migrate", json={"records": [record]}, headers={"Authorization": AUTH}
            )

        taken = post(levels, 1)
        assert taken.status_code == 200, taken.text
        assert taken.json()["inserted"] == 1
        deeper = post(levels + 1, 2)
        assert deeper.status_code == 200, deeper.text
        assert [(r["status"], r["reason"]) for r in deeper.json()["results"]] == [("failed", "write_error")]
        past = post(103, 3)  # refused before parsing, as any body nested past what a record can hold
        assert past.status_code == 400
        assert error_code(past) == "MALFORMED_BODY"
        assert app_parts["db"]["activity_logs"].count_documents({}) == 1

    def test_a_number_long_is_the_integer_it_holds(self, app_parts: dict[str, Any]) -> None:
        """{"$numberLong": "5"} in metadata is stored as the integer 5 (exact types keep Int64 in)."""
        seed_record_contacts(app_parts["db"], 1)
        response = app_parts["client"].post(
            "/private/activity_logs/migrate",
            content=_holding('{"$numberLong": "5"}', "metadata"),
            headers={"Authorization": AUTH},
        )
        assert response.status_code == 200, response.text
        [stored] = app_parts["db"]["activity_logs"].find({})
        assert stored["metadata"]["y"] == 5

    def test_a_record_naming_another_source_tag_is_refused(self, app_parts: dict[str, Any]) -> None:
        """The route writes migrated logs only: a native-looking source tag is refused."""
        doc = encode_activity_log(log(1))
        doc["source_tag"] = "live_feed"
        response = app_parts["client"].post(
            "/private/activity_logs/migrate",
            content=json.dumps({"records": [json.loads(json_util.dumps(doc))]}),
            headers={"Authorization": AUTH},
        )
        assert response.status_code == 400
        assert "source_tag" in response.json()["error"]["message"]

    def test_oversized_body_is_refused(self, app_parts: dict[str, Any]) -> None:
        """A body past the size limit is refused with 413 before it is parsed."""
        huge = b'{"records": [], "pad": "' + b"x" * (3 << 20) + b'"}'
        response = app_parts["client"].post(
            "/private/activity_logs/migrate", content=huge, headers={"Authorization": AUTH}
        )
        assert response.status_code == 413
        assert error_code(response) == "PAYLOAD_TOO_LARGE"

    def test_every_route_that_takes_a_body_answers_413_as_documented(self, app_parts: dict[str, Any]) -> None:
        """Each POST route refuses a body past the limit with 413, and its OpenAPI entry lists 413."""
        client = app_parts["client"]
        huge = b'{"company_sso_id": "x", "pad": "' + b"x" * (3 << 20) + b'"}'
        paths = client.get("/openapi.json").json()["paths"]
        posts = [path for path, item in paths.items() if "post" in item]
        assert len(posts) == 5
        for path in posts:
            response = client.post(path, content=huge, headers={"Authorization": AUTH})
            assert (response.status_code, error_code(response)) == (413, "PAYLOAD_TOO_LARGE"), path
            assert "413" in paths[path]["post"]["responses"], path


class TestBasicAuth:
    @pytest.mark.parametrize(
        "header",
        [
            None,
            "Basic " + base64.b64encode(b"ops:wrong").decode(),
            "Basic !!!",
            "Bearer token",
            "Basic " + base64.b64encode(b"ops").decode(),
            b"Basic \xff\xff",  # not ASCII: base64 refuses the text with ValueError, not binascii.Error
        ],
    )
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("POST", "/private/activity_logs/migrate"),
            ("POST", "/private/activity_logs/crm_migration/trigger"),
            ("GET", "/private/activity_logs/crm_migration/status?company_sso_id=company-acme"),
            ("POST", "/private/activity_logs/crm_migration/rollback"),
        ],
    )
    def test_every_private_route_needs_valid_credentials(
        self, app_parts: dict[str, Any], header: str | bytes | None, method: str, path: str
    ) -> None:
        """Missing, wrong or malformed credentials get 401 with a Basic challenge on every /private route."""
        headers = {"Authorization": header} if header else {}
        response = app_parts["client"].request(method, path, headers=headers, content=b"{}")
        assert response.status_code == 401
        assert error_code(response) == "UNAUTHORIZED"
        assert response.headers["www-authenticate"].startswith("Basic")


class TestJobRoutes:
    def post(self, client: httpx.Client, path: str, payload: dict[str, Any]) -> Any:
        return client.post(
            f"/private/activity_logs/crm_migration/{path}", json=payload, headers={"Authorization": AUTH}
        )

    @pytest.mark.parametrize("path", ["trigger", "rollback"])
    def test_a_body_nested_past_the_interpreter_stack_is_a_400(
        self, app_parts: dict[str, Any], path: str
    ) -> None:
        """JSON nested 5,000 deep is the client's malformed body (400), never a 500."""
        response = app_parts["client"].post(
            f"/private/activity_logs/crm_migration/{path}",
            content=b'{"x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            headers={"Authorization": AUTH},
        )
        assert response.status_code == 400
        assert error_code(response) == "MALFORMED_BODY"

    @pytest.mark.parametrize("path", ["trigger", "cancel", "rollback", "verify"])
    def test_a_company_holding_a_lone_surrogate_is_a_400(self, app_parts: dict[str, Any], path: str) -> None:
        """``"caf\\udce9"``: JSON's escape of a lone surrogate, which no Unicode text holds. The
        drivers refuse to encode it, and the route answered 500 (INTERNAL). It is the client's bad
        field, ``INVALID_COMPANY``."""
        response = app_parts["client"].post(
            f"/private/activity_logs/crm_migration/{path}",
            content=b'{"company_sso_id": "caf\\udce9"'
            + (b', "tenant": "acme"}' if path == "trigger" else b"}"),
            headers={"Authorization": AUTH, "Content-Type": "application/json"},
        )
        assert response.status_code == 400, response.text
        assert error_code(response) == "INVALID_COMPANY"

    @pytest.mark.parametrize(
        ("path", "payload", "named"),
        [
            ("trigger", {"company_sso_id": COMPANY, "date_range_strat": "2024-04-14"}, "'date_range_strat'"),
            ("trigger", {"company_sso_id": COMPANY, "tenant": TENANT, "shards": 4}, "'shards'"),
            ("verify", {"company_sso_id": COMPANY, "repiar": True}, "'repiar'"),
            ("verify", {"company_sso_id": COMPANY, "tenant": TENANT}, "'tenant'"),
            ("cancel", {"company_sso_id": COMPANY, "force": True}, "'force'"),
            ("rollback", {"company_sso_id": COMPANY, "yes": True}, "'yes'"),
        ],
    )
    def test_a_body_key_the_route_does_not_take_is_a_400(
        self, app_parts: dict[str, Any], path: str, payload: dict[str, Any], named: str
    ) -> None:
        """A key a route does not read was ignored: a misspelt "date_range_strat" triggered a job over
        the whole history, "repiar" verified without repairing, "shards" made one unsharded job. 400
        MALFORMED_BODY naming it, before anything is done (no job). Fails on the old code: 202 or 200."""
        response = self.post(app_parts["client"], path, payload)
        assert response.status_code == 400, response.text
        assert error_code(response) == "MALFORMED_BODY"
        assert named in response.json()["error"]["message"]
        assert app_parts["db"]["crm_activity_log_migration_jobs"].count_documents({}) == 0

    @pytest.mark.parametrize(
        ("path", "payload"),
        [
            ("trigger", b'{"company_sso_id": "%s", "company_sso_id": "company-other"}' % COMPANY.encode()),
            ("verify", b'{"company_sso_id": "%s", "repair": true, "repair": false}' % COMPANY.encode()),
            ("rollback", b'{"company_sso_id": "company-other", "company_sso_id": "%s"}' % COMPANY.encode()),
        ],
    )
    def test_a_body_naming_a_member_twice_is_a_400(
        self, app_parts: dict[str, Any], path: str, payload: bytes
    ) -> None:
        """A member named twice was read as Python reads it, the last one winning: a trigger for
        COMPANY and company-other acted on company-other, where a proxy's log or a review of the
        request read the first. 400 MALFORMED_BODY naming the member, before anything is done."""
        response = app_parts["client"].post(
            f"/private/activity_logs/crm_migration/{path}",
            content=payload,
            headers={"Authorization": AUTH, "Content-Type": "application/json"},
        )
        assert response.status_code == 400, response.text
        assert error_code(response) == "MALFORMED_BODY"
        assert "more than once" in response.json()["error"]["message"]
        assert app_parts["db"]["crm_activity_log_migration_jobs"].count_documents({}) == 0

    def test_flag_off_is_forbidden(self, app_parts: dict[str, Any]) -> None:
        """An account whose flag is off gets 403 FLAG_DISABLED."""
        response = self.post(
            app_parts["client"], "trigger", {"company_sso_id": "company-other", "tenant": TENANT}
        )
        assert response.status_code == 403
        assert error_code(response) == "FLAG_DISABLED"

    def test_low_contact_coverage_is_refused_without_a_job_row(self, app_parts: dict[str, Any]) -> None:
        """Phase-A coverage below 99% gets 422 contacts_not_migrated, and no job document exists."""
        seed_contacts(app_parts["db"], COMPANY, people_count(app_parts["dsn"]) // 2)
        response = self.post(app_parts["client"], "trigger", {"company_sso_id": COMPANY, "tenant": TENANT})
        assert response.status_code == 422
        assert error_code(response) == "contacts_not_migrated"
        assert app_parts["db"]["crm_activity_log_migration_jobs"].count_documents({}) == 0

    def test_a_cutoff_in_the_future_is_refused_without_a_job_row(self, app_parts: dict[str, Any]) -> None:
        """A future ``date_range_start`` is 400, as the runner's ``--date-range-start`` refuses it:
        nothing would be in scope, so the job would complete at once without a row and close the
        account (``ALREADY_COMPLETED``). The guards pass otherwise: the same trigger without it is 202."""
        client = app_parts["client"]
        seed_contacts(app_parts["db"], COMPANY, people_count(app_parts["dsn"]))
        future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).isoformat()
        for spelled in (future, "9999-12-31T23:59:59Z", "9999-12-31"):
            payload = {"company_sso_id": COMPANY, "tenant": TENANT, "date_range_start": spelled}
            response = self.post(client, "trigger", payload)
            assert (response.status_code, error_code(response)) == (400, "INVALID_DATE_RANGE_START")
            assert "in the future" in response.json()["error"]["message"]
        assert app_parts["db"]["crm_activity_log_migration_jobs"].count_documents({}) == 0
        started = self.post(client, "trigger", {"company_sso_id": COMPANY, "tenant": TENANT})
        assert started.status_code == 202

    def test_a_cutoff_is_in_the_future_by_the_services_clock(self, app_parts: dict[str, Any]) -> None:
        """The route reads the runtime's clock, as the guards do: here a fixed one (2026-01-01), behind
        the wall clock. A cutoff a day after it is 400 ``INVALID_DATE_RANGE_START`` with no job row; one
        a day before it is taken. Before, the route read the wall clock, passed the first, and the
        guards' ValueError was a 500 INTERNAL: this test fails there."""
        client = app_parts["client"]
        seed_contacts(app_parts["db"], COMPANY, people_count(app_parts["dsn"]))
        clock_now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)  # runtime_over's FixedClock
        ahead = clock_now + dt.timedelta(days=1)
        assert ahead < dt.datetime.now(dt.UTC)  # in the wall clock's past
        payload = {"company_sso_id": COMPANY, "tenant": TENANT, "date_range_start": ahead.isoformat()}
        response = self.post(client, "trigger", payload)
        assert (response.status_code, error_code(response)) == (400, "INVALID_DATE_RANGE_START")
        assert app_parts["db"]["crm_activity_log_migration_jobs"].count_documents({}) == 0
        payload["date_range_start"] = (clock_now - dt.timedelta(days=1)).isoformat()
        assert self.post(client, "trigger", payload).status_code == 202

    def test_trigger_then_running_then_status_then_rollback(self, app_parts: dict[str, Any]) -> None:
        """A trigger creates an in-progress job; a second gets 409; rollback is refused while it runs."""
        client = app_parts["client"]
        seed_contacts(app_parts["db"], COMPANY, people_count(app_parts["dsn"]))
        started = self.post(client, "trigger", {"company_sso_id": COMPANY, "tenant": TENANT})
        assert started.status_code == 202
        assert started.json()["status"] == "in_progress"
        again = self.post(client, "trigger", {"company_sso_id": COMPANY, "tenant": TENANT})
        assert again.status_code == 409
        assert error_code(again) == "JOB_ALREADY_RUNNING"
        status = client.get(
            "/private/activity_logs/crm_migration/status",
            params={"company_sso_id": COMPANY},
            headers={"Authorization": AUTH},
        )
        assert status.json()["status"] == "in_progress"
        assert "accuracy_pct" in status.json()
        refused = self.post(client, "rollback", {"company_sso_id": COMPANY})
        assert refused.status_code == 409

    def test_completed_job_refuses_a_new_trigger_and_rollback_is_idempotent(
        self, app_parts: dict[str, Any]
    ) -> None:
        """After completion a trigger gets ALREADY_COMPLETED; rollback deletes once, keeps native logs."""
        client = app_parts["client"]
        db = app_parts["db"]
        seed_contacts(db, COMPANY, people_count(app_parts["dsn"]))
        seed_record_contacts(db, 1, 2)
        assert self.post(client, "trigger", {"company_sso_id": COMPANY, "tenant": TENANT}).status_code == 202
        db["crm_activity_log_migration_jobs"].update_many({}, {"$set": {"status": "completed"}})
        refused = self.post(client, "trigger", {"company_sso_id": COMPANY, "tenant": TENANT})
        assert refused.status_code == 409
        assert error_code(refused) == "ALREADY_COMPLETED"
        client.post(
            "/private/activity_logs/migrate", content=body(log(1), log(2)), headers={"Authorization": AUTH}
        )
        db["activity_logs"].insert_one(
            {"company_sso_id": COMPANY, "category": "contact", "action": "updated"}
        )
        first = self.post(client, "rollback", {"company_sso_id": COMPANY})
        second = self.post(client, "rollback", {"company_sso_id": COMPANY})
        assert (first.json(), second.json()) == ({"deleted": 2}, {"deleted": 0})
        assert db["activity_logs"].count_documents({}) == 1

    def test_a_rollback_held_by_another_rollback_says_a_rollback_holds_it(
        self, app_parts: dict[str, Any]
    ) -> None:
        """A rollback that meets another one's live hold is 409 LEASE_HELD naming a rollback as the
        holder (not a runner), and the holder's token stays out of the answer."""
        client = app_parts["client"]
        db = app_parts["db"]
        seed_contacts(db, COMPANY, people_count(app_parts["dsn"]))
        assert self.post(client, "trigger", {"company_sso_id": COMPANY, "tenant": TENANT}).status_code == 202
        until = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        db["crm_activity_log_migration_jobs"].update_many(
            {},
            {"$set": {"status": "rolling_back", "lease_owner": "rollback:f00d", "lease_expires_at": until}},
        )
        refused = self.post(client, "rollback", {"company_sso_id": COMPANY})
        assert (refused.status_code, error_code(refused)) == (409, "LEASE_HELD")
        assert refused.json()["error"]["message"].startswith("a rollback holds the account's job")
        assert "f00d" not in refused.text

    def test_status_without_a_job_is_not_started(self, app_parts: dict[str, Any]) -> None:
        """An account that never triggered reads not_started."""
        response = app_parts["client"].get(
            "/private/activity_logs/crm_migration/status",
            params={"company_sso_id": "company-empty"},
            headers={"Authorization": AUTH},
        )
        assert response.json()["status"] == "not_started"

    @pytest.mark.parametrize(
        "doc",
        [
            {
                "_id": "junk-1",
                "company_sso_id": "company-empty",
                "status": "completed",
                "created_at": "2026-01-01",
            },
            "Halted",
        ],
    )
    def test_an_unreadable_job_is_a_typed_500_never_served_as_stored(
        self, app_parts: dict[str, Any], doc: object
    ) -> None:
        """An undecodable job document was a 500 INTERNAL, and a status outside the enum ("Halted")
        was served as is; both are 500 JOB_UNREADABLE naming the document."""
        jobs = app_parts["db"]["crm_activity_log_migration_jobs"]
        client = app_parts["client"]
        if isinstance(doc, dict):
            jobs.insert_one(doc)
            job_id = "junk-1"
        else:
            from crm_audit_adapters.mongo import encode_job
            from support.mongo import migration_job

            job_id = "job-h"
            jobs.insert_one(encode_job(migration_job(job_id, company="company-empty")) | {"status": doc})
        response = client.get(
            "/private/activity_logs/crm_migration/status",
            params={"company_sso_id": "company-empty"},
            headers={"Authorization": AUTH},
        )
        assert response.status_code == 500
        assert error_code(response) == "JOB_UNREADABLE"
        assert f"job {job_id} of account company-empty" in response.json()["error"]["message"]

    def test_a_deeply_nested_trigger_body_is_400(self, app_parts: dict[str, Any]) -> None:
        """JSON nested past the parser's recursion limit is a 400 MALFORMED_BODY, not a 500."""
        response = app_parts["client"].post(
            "/private/activity_logs/crm_migration/trigger",
            content=b"[" * 100_000 + b"]" * 100_000,
            headers={"Authorization": AUTH},
        )
        assert response.status_code == 400
        assert error_code(response) == "MALFORMED_BODY"

    @pytest.mark.parametrize(
        "payload",
        [
            {},
            {"company_sso_id": COMPANY, "tenant": ""},
            {"company_sso_id": "", "tenant": TENANT},
            {"company_sso_id": COMPANY, "tenant": TENANT, "date_range_start": "yesterday"},
            {"company_sso_id": COMPANY, "tenant": TENANT, "date_range_start": "0001-01-01T00:00:00+14:00"},
        ],
    )
    def test_bad_trigger_bodies_are_400(self, app_parts: dict[str, Any], payload: dict[str, Any]) -> None:
        """Missing or malformed trigger fields are a 400 naming the field, never a 500."""
        response = self.post(app_parts["client"], "trigger", payload)
        assert response.status_code == 400
        assert error_code(response).startswith("INVALID_")


@pytest.fixture
def verify_parts(crm_dsn: str, mongo_db: Any, served: tuple[MountedApp, str]) -> Iterator[dict[str, Any]]:
    """The app with an SSO directory (verify resolves actors as a run does)."""
    apply_migration(mongo_db, "up")
    with (
        runtime_over(crm_dsn, mongo_db, COMPANY, sso=InMemorySsoDirectory({})) as runtime,
        client_of(served, runtime, timeout=60) as client,
    ):
        yield {"client": client, "db": mongo_db}


class TestVerifyRoute:
    def post(self, client: httpx.Client, payload: dict[str, Any]) -> Any:
        return client.post(
            "/private/activity_logs/crm_migration/verify", json=payload, headers={"Authorization": AUTH}
        )

    def test_a_bound_account_gets_its_report(self, verify_parts: dict[str, Any]) -> None:
        """Verify walks the bound tenant's audits and answers the report; no contact means nothing is owed."""
        response = self.post(verify_parts["client"], {"company_sso_id": COMPANY, "sample": 2, "seed": 1})
        assert response.status_code == 200, response.text
        report = response.json()
        assert (report["tenant"], report["clean"], report["job"], report["migrated"]) == (
            TENANT,
            True,
            None,
            0,
        )
        assert report["audits"] == sum(report["skipped"].values()) + sum(report["failed"].values()) > 0
        assert set(report["skipped"]) == {"contact_not_found"}

    def test_an_unbound_account_is_refused(self, verify_parts: dict[str, Any]) -> None:
        """Over HTTP an account must have a tenant binding: 422 TENANT_UNBOUND, nothing read."""
        response = self.post(verify_parts["client"], {"company_sso_id": "company-unbound"})
        assert response.status_code == 422
        assert error_code(response) == "TENANT_UNBOUND"

    def test_repair_without_a_job_is_not_found_and_a_bad_sample_is_refused(
        self, verify_parts: dict[str, Any]
    ) -> None:
        """Repair needs a job to count into (404); a sample must be a non-negative integer (400)."""
        client = verify_parts["client"]
        repair = self.post(client, {"company_sso_id": COMPANY, "repair": True})
        assert repair.status_code == 404
        assert error_code(repair) == "JOB_NOT_FOUND"
        bad = self.post(client, {"company_sso_id": COMPANY, "sample": -1})
        assert bad.status_code == 400
        assert error_code(bad) == "INVALID_SAMPLE"


def triggered_with_session(app_parts: dict[str, Any]) -> httpx.Client:
    """The app's client after a trigger of ``COMPANY``, holding that tenant's session cookie."""
    client: httpx.Client = app_parts["client"]
    seed_contacts(app_parts["db"], COMPANY, people_count(app_parts["dsn"]))
    client.post(
        "/private/activity_logs/crm_migration/trigger",
        json={"company_sso_id": COMPANY, "tenant": TENANT},
        headers={"Authorization": AUTH},
    )
    client.cookies.set("crm_session", SESSIONS.sign(COMPANY))
    return client


class TestTenantStatusRoute:
    def test_reads_the_session_tenant_without_accuracy(self, app_parts: dict[str, Any]) -> None:
        """The web route answers for the session's tenant and never exposes accuracy_pct."""
        client = triggered_with_session(app_parts)
        response = client.get("/iag/v1/crm_migration/status")
        assert response.status_code == 200
        assert response.json()["status"] == "in_progress"
        assert "accuracy_pct" not in response.json()
        assert set(response.json()) == {"status", "progress_pct", "updated_at", "finished_at"}

    def test_the_document_lists_the_fields_a_job_status_sends(self, app_parts: dict[str, Any]) -> None:
        """The public status schema declares what the route sends for a job and nothing more: no
        ``started_at``, which the job model does not hold (it records its trigger, ``created_at``)."""
        client = triggered_with_session(app_parts)
        sent = client.get("/iag/v1/crm_migration/status").json()
        answer = client.get("/openapi.json").json()["paths"]["/iag/v1/crm_migration/status"]["get"]
        schema = answer["responses"]["200"]["content"]["application/json"]["schema"]
        assert set(schema["properties"]) == set(sent)
        assert "started_at" not in schema["properties"]

    def test_naming_another_tenant_is_forbidden(self, app_parts: dict[str, Any]) -> None:
        """A session of one tenant asking for another tenant's status gets 403."""
        client = app_parts["client"]
        client.cookies.set("crm_session", SESSIONS.sign(COMPANY))
        response = client.get("/iag/v1/crm_migration/status", params={"company_sso_id": "company-globex"})
        assert response.status_code == 403
        assert error_code(response) == "FORBIDDEN"

    @pytest.mark.parametrize(
        "token",
        [None, "company-acme", "company-acme.deadbeef", SESSIONS.sign("x").replace(".", ".A", 1)],
        # Fixed ids: the signed token carries the time, and xdist workers must collect the same ids.
        ids=["none", "unsigned", "bad-signature", "forged-timestamp"],
    )
    def test_missing_or_forged_sessions_are_401(self, app_parts: dict[str, Any], token: str | None) -> None:
        """No session, an unsigned one or a forged signature gets 401."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = app_parts["client"].get("/iag/v1/crm_migration/status", headers=headers)
        assert response.status_code == 401

    def test_bearer_token_works_like_the_cookie(self, app_parts: dict[str, Any]) -> None:
        """A signed bearer token names the tenant just as the cookie does."""
        response = app_parts["client"].get(
            "/iag/v1/crm_migration/status",
            headers={"Authorization": f"Bearer {SESSIONS.sign('company-empty')}"},
        )
        assert response.json() == {"status": "not_started"}


class TestServedAssets:
    def test_openapi_document_and_indicator_are_served(self, app_parts: dict[str, Any]) -> None:
        """The OpenAPI document lists every route and the indicator script is served as JavaScript."""
        client = app_parts["client"]
        paths = client.get("/openapi.json").json()["paths"]
        assert "/private/activity_logs/migrate" in paths
        assert "/iag/v1/crm_migration/status" in paths
        script = client.get("/static/crm-migration-status.js")
        assert script.headers["content-type"].startswith("text/javascript")
        assert "customElements.define" in script.text

    def test_metrics_are_served_in_prometheus_text_format(self, app_parts: dict[str, Any]) -> None:
        """/metrics answers prometheus_client's text format with the run metrics' families."""
        response = app_parts["client"].get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert "# TYPE crm_audit_rows_total counter" in response.text

    def test_unknown_route_uses_the_envelope(self, app_parts: dict[str, Any]) -> None:
        """A 404 comes in the same error envelope as every other error."""
        response = app_parts["client"].get("/nope")
        assert response.status_code == 404
        assert error_code(response) == "NOT_FOUND"


class TestWritePathPreconditions:
    def test_migrate_without_the_indexes_is_503_and_writes_nothing(self, app_parts: dict[str, Any]) -> None:
        """With migration 035 reverted, a batch is refused INDEXES_MISSING (503) and nothing is stored."""
        apply_migration(app_parts["db"], "down")
        response = app_parts["client"].post(
            "/private/activity_logs/migrate", content=body(log(1)), headers={"Authorization": AUTH}
        )
        assert response.status_code == 503
        assert error_code(response) == "INDEXES_MISSING"
        assert app_parts["db"]["activity_logs"].count_documents({}) == 0

    def test_trigger_with_another_tenant_than_the_binding_is_409(self, app_parts: dict[str, Any]) -> None:
        """The HTTP trigger applies the tenant binding: TENANT_MISMATCH (409) and no job document."""
        response = app_parts["client"].post(
            "/private/activity_logs/crm_migration/trigger",
            json={"company_sso_id": COMPANY, "tenant": "globex"},
            headers={"Authorization": AUTH},
        )
        assert response.status_code == 409
        assert error_code(response) == "TENANT_MISMATCH"
        assert app_parts["db"]["crm_activity_log_migration_jobs"].count_documents({}) == 0


class TestTenantAnswers:
    @pytest.fixture
    def client(self, crm_dsn: str, mongo_db: Any, served: tuple[MountedApp, str]) -> Iterator[httpx.Client]:
        """The app with ``pubco`` bound to ``public``: a schema, but not a CRM tenant's."""
        apply_migration(mongo_db, "up")
        sso = InMemorySsoDirectory({})
        with (
            runtime_over(crm_dsn, mongo_db, "*", bindings={"pubco": "public"}, sso=sso) as runtime,
            client_of(served, runtime, timeout=60) as client,
        ):
            yield client

    @pytest.mark.parametrize("route", ["trigger", "verify"])
    def test_an_account_bound_to_a_schema_without_the_crm_tables_is_422_unknown_tenant(
        self, client: httpx.Client, mongo_db: Any, route: str
    ) -> None:
        """A binding to ``public`` is a tenant that does not exist (422 UNKNOWN_TENANT), not an outage
        to retry (503); no job document is written."""
        response = client.post(
            f"/private/activity_logs/crm_migration/{route}",
            json={"company_sso_id": "pubco"},
            headers={"Authorization": AUTH},
        )
        assert response.status_code == 422, response.text
        assert error_code(response) == "UNKNOWN_TENANT"
        assert "public" in response.json()["error"]["message"]
        assert mongo_db["crm_activity_log_migration_jobs"].count_documents({}) == 0

    @pytest.mark.parametrize(
        ("route", "payload"),
        [
            ("crm_migration/trigger", {"company_sso_id": "company-unbound"}),
            ("crm_migration/trigger", {"company_sso_id": "company-unbound", "tenant": "nobodys"}),
            ("crm_migration/verify", {"company_sso_id": "company-unbound"}),
            (
                "migrate",
                json.loads(body(named(log(1, company="company-unbound"), "crm:nobodys:audit:1"))),
            ),
        ],
    )
    def test_tenant_unbound_speaks_of_the_binding_not_of_a_cli_option(
        self, client: httpx.Client, route: str, payload: dict[str, Any]
    ) -> None:
        """Over HTTP there is no ``--tenant`` and nothing allows an unbound tenant: the 422 says the
        account needs a binding, and never "unless explicitly allowed" (a trigger naming a tenant
        and /migrate, whose records name one, said it)."""
        response = client.post(
            f"/private/activity_logs/{route}", json=payload, headers={"Authorization": AUTH}
        )
        assert response.status_code == 422
        assert error_code(response) == "TENANT_UNBOUND"
        message = response.json()["error"]["message"]
        assert "--" not in message, message
        assert "allow" not in message, message
        assert "CRM_AUDIT_TENANTS" in message


class TestCancelAndRestartRoutes:
    def post(self, client: httpx.Client, path: str, payload: dict[str, Any]) -> Any:
        return client.post(
            f"/private/activity_logs/crm_migration/{path}", json=payload, headers={"Authorization": AUTH}
        )

    def test_cancel_then_restart_needs_resume_or_fresh(self, app_parts: dict[str, Any]) -> None:
        """cancel → cancelled (lease fields shown); a plain trigger is 409 RESUME_OR_FRESH; resume works."""
        client = app_parts["client"]
        seed_contacts(app_parts["db"], COMPANY, people_count(app_parts["dsn"]))
        assert self.post(client, "trigger", {"company_sso_id": COMPANY}).status_code == 202
        cancelled = self.post(client, "cancel", {"company_sso_id": COMPANY})
        assert cancelled.status_code == 200
        doc = cancelled.json()
        assert doc["status"] == "cancelled"
        assert {"actors_degraded", "lease_owner", "lease_expires_at"} <= set(doc)
        again = self.post(client, "cancel", {"company_sso_id": COMPANY})
        assert (again.status_code, error_code(again)) == (404, "JOB_NOT_FOUND")
        plain = self.post(client, "trigger", {"company_sso_id": COMPANY})
        assert (plain.status_code, error_code(plain)) == (409, "RESUME_OR_FRESH")
        bad = self.post(client, "trigger", {"company_sso_id": COMPANY, "restart": "later"})
        assert (bad.status_code, error_code(bad)) == (400, "INVALID_RESTART")
        recut = {"company_sso_id": COMPANY, "restart": "resume", "date_range_start": "2023-01-01T00:00:00Z"}
        refused = self.post(client, "trigger", recut)
        assert (refused.status_code, error_code(refused)) == (400, "INVALID_RESTART")
        resumed = self.post(client, "trigger", {"company_sso_id": COMPANY, "restart": "resume"})
        assert resumed.status_code == 202
        assert resumed.json()["status"] == "in_progress"
        assert app_parts["db"]["crm_activity_log_migration_jobs"].count_documents({}) == 1
