"""The ASGI app: S2S routes under ``/private`` (BasicAuth), the tenant status route, the indicator.

Starlette is the framework: a small, well-kept ASGI toolkit with no model layer of its own, so the
records stay our attrs values and validation stays ours; it runs under any ASGI server and mounts
inside a service's own app.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import importlib.util
import json
import os
import secrets
import socket
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Final, cast

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from crm_audit_transform.errors import BatchTooLarge, LimitExceeded
from crm_audit_transform.loading import LoaderLimits, check_json_depth
from crm_audit_transform.timestamps import as_utc
from crm_audit_transform.verification import VerifyReportDocument, check_draw

from ..mongo.bson_values import MONGODB_MAX_NESTING
from ..strict_json import has_surrogate
from .answers import batch_answer, public_status_answer, rollback_answer
from .auth import (
    BASIC_CHALLENGE,
    MALFORMED_BEARER_CHALLENGE,
    BasicAuthCredentials,
    SessionResolver,
    SignedSessionResolver,
    bearer_challenge,
)
from .errors import HANDLERS, AnswerUnexpected, ApiError
from .openapi import openapi_document
from .records import decode_record, parse_body, refuse_unknown_keys, unique_members
from .service import HttpService

MAX_BATCH = 20
MIGRATE_BODY_DEPTH = MONGODB_MAX_NESTING + 5
"""The nesting ``/migrate`` bodies may reach, whatever ``max_json_depth``: a record MongoDB takes (its
document is level 1) sits in the body and its ``records`` (2 more), and its deepest value may be an
Extended JSON wrapper of two levels (``{"$binary": {"base64": …}}``, a datetime before 1970 as
``{"$date": {"$numberLong": …}}``; BSON leaves, no level to MongoDB), so a dry run's output is never
refused here; and one level more, so a record one level too deep fails alone (``write_error``), as in
a run, instead of the whole batch."""
Handler = Callable[[Request], Awaitable[Response]]
TRIGGER_KEYS: Final = frozenset({"company_sso_id", "tenant", "date_range_start", "restart"})
VERIFY_KEYS: Final = frozenset({"company_sso_id", "sample", "seed", "repair"})
COMPANY_KEYS: Final = frozenset({"company_sso_id"})
"""The keys of each JSON body (``cancel`` and ``rollback``: ``COMPANY_KEYS``); another is refused."""
JSON_MEDIA_TYPE: Final = "application/json"
"""The one media type a ``POST`` route reads (``Content-Type``, its parameters aside; RFC 8259 §11)."""
SAME_SITE_FETCHES: Final = frozenset({"same-origin", "none"})
"""The ``Sec-Fetch-Site`` values a ``POST`` route serves (Fetch Metadata): a page of the app's own
origin, or the user's own action (an address typed, a bookmark). A server-to-server caller sends no
such header and is served."""


def _static(name: str) -> str:
    return resources.files("crm_audit_adapters.http").joinpath("static", name).read_text("utf-8")


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` (declared or streamed)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "PAYLOAD_TOO_LARGE", f"the body may hold at most {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "PAYLOAD_TOO_LARGE", f"the body may hold at most {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _refuse_cross_site(request: Request) -> None:
    """403 ``CROSS_SITE_REQUEST`` for a browser request made by another site's page (``Sec-Fetch-Site``
    other than ``same-origin`` or ``none``: ``cross-site``, ``same-site``), before its credentials are
    read: the browser sends a cached BasicAuth login with any site's request, so a page elsewhere could
    act with the operator's rights (cross-site request forgery). Fetch Metadata, as OWASP's CSRF
    cheat sheet gives it; a browser that sends no such header is held by ``_refuse_non_json``."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site.strip().lower() not in SAME_SITE_FETCHES:
        raise ApiError(
            403,
            "CROSS_SITE_REQUEST",
            "a browser request from another site's page is refused: these routes take calls from "
            "servers or from the app's own origin",
        )


def _refuse_non_json(request: Request) -> None:
    """415 ``UNSUPPORTED_MEDIA_TYPE`` for a body not sent as ``application/json`` (none given included),
    before it is read. Another site's page can send a body without the browser asking this server
    first (a CORS preflight, which this app never grants) only as ``text/plain``, a form's types or
    none: a ``<form enctype="text/plain">`` posts a text that parses as JSON, with the browser's cached
    BasicAuth login. Requiring the JSON type keeps such a request out in every browser. The answer
    quotes neither the body nor the type given."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != JSON_MEDIA_TYPE:
        raise ApiError(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            f"the body must be sent with Content-Type: {JSON_MEDIA_TYPE}",
        )


def _shallow_enough(raw: bytes, max_depth: int) -> bytes:
    """The body, refused with 400 when it nests deeper than the loader's ``max_depth`` (before parsing)."""
    try:
        check_json_depth(raw.decode("utf-8", "replace"), max_depth)
    except LimitExceeded:
        raise ApiError(400, "MALFORMED_BODY", f"body nests deeper than {max_depth} levels") from None
    return raw


async def _json_object(
    request: Request, limit: int, max_depth: int, keys: frozenset[str]
) -> dict[str, object]:
    """The body, a JSON object of ``keys`` only (``refuse_unknown_keys``), none named twice
    (``unique_members``)."""
    try:
        raw = _shallow_enough(await _read_body(request, limit), max_depth)
        body = json.loads(raw, object_pairs_hook=unique_members)
    except (ValueError, UnicodeDecodeError, RecursionError):  # nesting past the interpreter's stack
        raise ApiError(400, "MALFORMED_BODY", "body is not valid JSON (or nested too deeply)") from None
    if not isinstance(body, dict):
        raise ApiError(400, "MALFORMED_BODY", "body must be a JSON object")
    refuse_unknown_keys(body, keys)
    return body


def _repair_owner() -> str:
    """The lease owner of one verify request: its own, so that a second ``repair`` of the account (from
    this process or another replica) meets the first's lease (409 ``LEASE_HELD``) as a second run does.
    The service's default owner (``"verify"``) is one name for every caller: two repairs under it would
    both hold the job, and the one that ended second be refused with a misleading ``JOB_NOT_RUNNABLE``."""
    return f"verify:http:{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _company(value: object) -> str:
    """``company_sso_id`` as given, else ``INVALID_COMPANY`` (400). A text holding a lone surrogate
    (JSON's escape ``"\\udce9"``, which RFC 8259 §8.2 leaves undefined) is refused too: it names no
    account MongoDB or PostgreSQL could store, and their drivers refuse to encode it (a 500)."""
    if not isinstance(value, str) or not value.strip() or len(value) > 128 or has_surrogate(value):
        raise ApiError(
            400,
            "INVALID_COMPANY",
            "company_sso_id must be a non-empty string of at most 128 characters, Unicode text "
            "(no lone surrogate escape)",
        )
    return value


def _query_value(request: Request, name: str) -> str | None:
    """``name``'s value in the query string, None when it is not given; 400 ``MALFORMED_QUERY`` when
    it is given more than once, or when the query string is not UTF-8 once percent-decoded.

    Starlette's ``query_params`` reads both without a word: the last of repeated values wins (the
    route answered for one account of two named) and a byte that is no UTF-8 turns into U+FFFD (the
    route answered for an account nobody named). The same reader (``urllib.parse.parse_qsl``, blank
    values kept), strict."""
    raw = request.scope.get("query_string", b"")
    try:
        pairs = urllib.parse.parse_qsl(raw.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise ApiError(
            400, "MALFORMED_QUERY", "the query string is not UTF-8 text once percent-decoded"
        ) from None
    values = [value for key, value in pairs if key == name]
    if len(values) > 1:
        raise ApiError(
            400, "MALFORMED_QUERY", f"{name} is given {len(values)} times in the query: give it once"
        )
    return values[0] if values else None


def _optional_time(value: object, now: Callable[[], dt.datetime]) -> dt.datetime | None:
    """``date_range_start`` as a UTC datetime, None when absent; 400 ``INVALID_DATE_RANGE_START`` for a
    text that is no ISO 8601 time, or one after ``now()`` (the service's clock, ``HttpService.clock``)."""
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise ApiError(400, "INVALID_DATE_RANGE_START", "date_range_start must be an ISO 8601 timestamp")
    try:
        cutoff = as_utc(parsed, naive="utc")
    except OverflowError:  # 0001-01-01T00:00+14:00: valid text, before year 1 in UTC
        raise ApiError(400, "INVALID_DATE_RANGE_START", "date_range_start is out of range in UTC") from None
    # As the runner's --date-range-start: a cutoff in the future leaves nothing in scope, so the job
    # would start at 100 % and complete without migrating a row, closing the account (ALREADY_COMPLETED).
    # The service's clock, as its guards read it: the wall clock here may disagree with a runtime built
    # on another (a fixed one in tests), and a cutoff between the two would be a 500 (the guards' ValueError).
    if cutoff > now():
        raise ApiError(400, "INVALID_DATE_RANGE_START", "date_range_start is in the future")
    return cutoff


def create_app(
    service: HttpService,
    *,
    basic_auth: BasicAuthCredentials,
    sessions: SessionResolver,
    max_body_bytes: int = 2 << 20,
    max_json_depth: int = LoaderLimits().max_depth,
    indicator_interval_ms: int = 15_000,
    on_close: Callable[[], None] | None = None,
) -> Starlette:
    """The app over ``service``; ``on_close`` runs when the server shuts the app down.

    ``max_json_depth`` bounds the nesting of request bodies (the runner's ``[loader] max_depth``):
    deeper bodies are a 400, checked without recursion before they are parsed. ``/migrate`` takes at
    least ``MIGRATE_BODY_DEPTH`` levels: the records a dry run writes, as MongoDB takes them.
    """

    # The cookie a refused session came in, for the challenge's error="invalid_token"; a resolver of
    # the service's own reads cookies this app does not know, and its Bearer header alone counts.
    session_cookie = sessions.cookie_name if isinstance(sessions, SignedSessionResolver) else None

    def private(handler: Handler, *, json_body: bool = True) -> Handler:
        """``handler`` behind BasicAuth; with ``json_body`` (each ``POST``), a cross-site browser
        request is refused first (403) and a body not sent as JSON after the credentials (415)."""

        async def guarded(request: Request) -> Response:
            if json_body:
                _refuse_cross_site(request)
            if not basic_auth.accepts(request):
                raise ApiError(
                    401, "UNAUTHORIZED", "valid BasicAuth credentials are required", challenge=BASIC_CHALLENGE
                )
            if json_body:
                _refuse_non_json(request)
            return await handler(request)

        return guarded

    async def migrate(request: Request) -> Response:
        raw = await _read_body(request, max_body_bytes)
        records = parse_body(_shallow_enough(raw, max(max_json_depth, MIGRATE_BODY_DEPTH)))
        if len(records) > MAX_BATCH:
            raise BatchTooLarge(len(records), MAX_BATCH)
        logs = [decode_record(doc, f"records[{i}]") for i, doc in enumerate(records)]
        # The account must be bound, as for trigger and verify: no unbound override over HTTP.
        call = functools.partial(service.migrate, logs, require_binding=True)
        return JSONResponse(batch_answer(await run_in_threadpool(call)))

    async def trigger(request: Request) -> Response:
        body = await _json_object(request, max_body_bytes, max_json_depth, TRIGGER_KEYS)
        tenant = body.get("tenant")
        # Optional: the account's bound tenant is used; a different one is TENANT_MISMATCH.
        if tenant is not None and (not isinstance(tenant, str) or not tenant):
            raise ApiError(400, "INVALID_TENANT", "tenant must be a non-empty string when given")
        restart = body.get("restart")
        if restart not in (None, "resume", "fresh"):
            raise ApiError(400, "INVALID_RESTART", 'restart must be "resume" or "fresh" when given')
        if restart == "resume" and body.get("date_range_start") is not None:
            # A resumed job keeps its cutoff: its cursor and counts were made under it.
            raise ApiError(
                400,
                "INVALID_RESTART",
                'date_range_start cannot be given with restart "resume": the job keeps its cutoff',
            )
        status = await run_in_threadpool(
            functools.partial(
                service.trigger,
                _company(body.get("company_sso_id")),
                tenant,
                date_range_start=_optional_time(body.get("date_range_start"), lambda: service.clock.now()),
                restart=restart,
            )
        )
        return JSONResponse(status.as_dict(), status_code=202)

    async def cancel(request: Request) -> Response:
        body = await _json_object(request, max_body_bytes, max_json_depth, COMPANY_KEYS)
        status = await run_in_threadpool(service.cancel, _company(body.get("company_sso_id")))
        return JSONResponse(status.as_dict())

    async def status(request: Request) -> Response:
        company = _company(_query_value(request, "company_sso_id"))
        return JSONResponse((await run_in_threadpool(service.status, company)).as_dict())

    async def rollback(request: Request) -> Response:
        body = await _json_object(request, max_body_bytes, max_json_depth, COMPANY_KEYS)
        result = await run_in_threadpool(service.rollback, _company(body.get("company_sso_id")))
        return JSONResponse(rollback_answer(result))

    async def verify(request: Request) -> Response:
        body = await _json_object(request, max_body_bytes, max_json_depth, VERIFY_KEYS)
        company = _company(body.get("company_sso_id"))
        sample, seed, repair = body.get("sample"), body.get("seed"), body.get("repair", False)
        check_draw(sample, seed)  # 400 INVALID_SAMPLE / INVALID_SEED: the service's one rule, before the pool
        if type(repair) is not bool:
            raise ApiError(400, "INVALID_REPAIR", "repair must be a boolean")

        def call() -> VerifyReportDocument:
            drawn = secrets.randbits(63) if seed is None else cast("int", seed)
            report = service.verify(
                company,
                sample=cast("int | None", sample),
                seed=drawn,
                repair=repair,
                owner=_repair_owner(),
                require_binding=True,
            )
            return report.to_json()

        # A report that is not clean is still the answer (200): CI gates read its ``clean``.
        return JSONResponse(await run_in_threadpool(call))

    async def tenant_status(request: Request) -> Response:
        company = sessions(request)
        if company is None:
            # RFC 6750 §3: a Bearer challenge (a Basic one had a browser ask for a login here).
            challenge = bearer_challenge(request, session_cookie)
            if challenge == MALFORMED_BEARER_CHALLENGE:  # §3.1: a malformed request, 400
                raise ApiError(
                    400,
                    "MALFORMED_AUTHORIZATION",
                    "the Authorization header's Bearer credentials are not one token (RFC 6750 §2.1)",
                    challenge=challenge,
                )
            raise ApiError(401, "UNAUTHENTICATED", "a valid session is required", challenge=challenge)
        named = _query_value(request, "company_sso_id")
        if named is not None and named != company:
            raise ApiError(403, "FORBIDDEN", "the session's tenant may only read its own status")
        found = await run_in_threadpool(service.status, company)
        # The web app never sees accuracy figures or internal fields: only what the indicator needs.
        return JSONResponse(public_status_answer(found))

    script = _static("crm-migration-status.js")
    demo = (
        _static("demo.html")
        .replace("{{src}}", "/iag/v1/crm_migration/status")
        .replace("{{interval}}", str(indicator_interval_ms))
        .replace("{{script}}", "/static/crm-migration-status.js")
    )

    async def indicator(_request: Request) -> Response:
        return Response(script, media_type="text/javascript; charset=utf-8")

    async def demo_page(_request: Request) -> Response:
        return HTMLResponse(demo)

    async def openapi(_request: Request) -> Response:
        return JSONResponse(openapi_document())

    async def metrics(_request: Request) -> Response:
        # Prometheus's text format; the run metrics of this process (or of every process of a
        # prefork server in multiprocess mode). Only with the [celery] extra's prometheus_client.
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        from ..observability import process_metrics
        from ..observability.exporter import metrics_registry

        process_metrics()  # the families exist (at zero) before the first run of this process
        return Response(generate_latest(metrics_registry()), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/private/activity_logs/migrate", private(migrate), methods=["POST"]),
        Route("/private/activity_logs/crm_migration/trigger", private(trigger), methods=["POST"]),
        Route("/private/activity_logs/crm_migration/cancel", private(cancel), methods=["POST"]),
        Route(
            "/private/activity_logs/crm_migration/status", private(status, json_body=False), methods=["GET"]
        ),
        Route("/private/activity_logs/crm_migration/rollback", private(rollback), methods=["POST"]),
        Route("/private/activity_logs/crm_migration/verify", private(verify), methods=["POST"]),
        Route("/iag/v1/crm_migration/status", tenant_status, methods=["GET"]),
        Route("/static/crm-migration-status.js", indicator, methods=["GET"]),
        Route("/demo/contact", demo_page, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    if importlib.util.find_spec("prometheus_client") is not None:
        routes.append(Route("/metrics", metrics, methods=["GET"]))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        if on_close is not None:
            await run_in_threadpool(on_close)

    return Starlette(
        routes=routes,
        exception_handlers=dict(HANDLERS),
        middleware=[Middleware(AnswerUnexpected)],
        lifespan=lifespan,
    )
