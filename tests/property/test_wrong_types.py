"""Wrong types from a library caller: a typed error, or the row's own failure, never an untyped crash.

Services build the public values themselves (docs/api.md). A ``str`` ``created_at`` in an ``AuditRow``
raised ``AttributeError`` from its converter ('str' object has no attribute 'tzinfo'), and so did every
timestamp converter, a ``Tally``'s counts given as anything but a mapping, a ``RuleChain`` of
something else than stages, a ``JsonbText`` holding no text. Now a constructor that converts or
checks raises ``TypeError`` / ``ValueError``; an ``AuditRow`` keeps what it was given and the
transformer fails that row (``invalid_audit_row``, naming the column), as docs/mapping.md says.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crm_audit_transform as api
from crm_audit_transform import (
    AuditedChangesError,
    AuditRow,
    Contact,
    CrmUser,
    Failed,
    JsonbText,
    LookupPorts,
    Migrated,
    Skipped,
    fetch_lookups,
    load_audited_changes,
    load_default_config,
)
from crm_audit_transform.testing import (
    InMemoryAuditSource,
    InMemoryContactDirectory,
    InMemorySsoDirectory,
    InMemoryUserDirectory,
)
from crm_audit_transform.timestamps import as_utc

NOW = dt.datetime(2021, 1, 1, tzinfo=dt.UTC)
PROFILE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Odd:
    """A value of a type of the caller's own."""

    def __repr__(self) -> str:
        return "Odd()"


wrong_values = st.one_of(
    st.none(),
    st.text(max_size=6),
    st.just("2021-01-01T00:00:00Z"),
    st.binary(max_size=6),
    st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2030, 1, 1)),  # naive
    st.dates(),
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.decimals(allow_nan=False, places=2),
    st.lists(st.integers(), max_size=3),
    st.tuples(st.text(max_size=2)),
    st.dictionaries(st.text(max_size=3), st.integers() | st.text(max_size=2) | st.none(), max_size=3),
    st.builds(Odd),
)


def _stage() -> api.Stage:
    return api.Stage("noop", lambda draft: None)


# A valid instance's arguments for each public class whose constructor converts or checks a value
# (attrs converters, validators, post-init hooks); the test below keeps this table complete.
VALID: dict[type, dict[str, Any]] = {
    api.ActivityLog: {
        "company_sso_id": "co",
        "customer_id": "c",
        "category": "deal",
        "action": "update",
        "actor": api.Actor("system", "Qontak System"),
        "changes": (),
        "timestamp": NOW,
    },
    api.AuditRow: {
        "tenant": "acme",
        "id": 1,
        "auditable_type": "Crm::Deal",
        "auditable_id": 1,
        "action": "update",
        "audited_changes": "",
        "created_at": NOW,
    },
    api.Contact: {"id": "c", "company_sso_id": "co", "crm_person_id": 1, "created_at": NOW},
    api.EnrichmentTally: {},
    api.HaltRule: {},
    api.JobShard: {"shard": 0, "after_id": 0, "until_id": None, "last_audit_id": 0},
    api.LoaderLimits: {},
    api.LookupRequest: {"user_ids": (1,), "person_ids": (1,)},
    api.MigrationJob: {
        "job_id": "j",
        "company_sso_id": "co",
        "tenant": "acme",
        "status": "in_progress",
        "cutoff": NOW,
        "created_at": NOW,
        "updated_at": NOW,
        "shards": (api.JobShard(0, 0, None, 0, "in_progress"),),
    },
    api.RuleChain: {"stages": (_stage(),)},
    api.ScopeBounds: {"min_id": 1, "max_id": 2, "oldest_created_at": NOW},
    api.Tally: {},
}
CHECKED_BY_HOOKS = {api.MigrationJob: ("shards",), api.RuleChain: ("stages",)}
"""The fields a post-init hook reads (its other fields are stored as given)."""


def checked_fields(cls: type) -> tuple[str, ...]:
    own = tuple(f.name for f in attrs.fields(cls) if f.converter is not None or f.validator is not None)
    return own + CHECKED_BY_HOOKS.get(cls, ())


def public_classes_that_check() -> set[type]:
    found = set()
    for name in api.__all__:
        cls = getattr(api, name)
        if isinstance(cls, type) and attrs.has(cls):
            hooks = hasattr(cls, "__attrs_post_init__") or hasattr(cls, "__attrs_pre_init__")
            if hooks or any(f.converter is not None or f.validator is not None for f in attrs.fields(cls)):
                found.add(cls)
    return found


def test_every_public_class_that_converts_or_checks_is_tried() -> None:
    """A public class that gains a converter, validator or hook must be added to ``VALID``."""
    assert public_classes_that_check() == set(VALID)
    for cls, arguments in VALID.items():
        cls(**arguments)  # the table's own values are valid


@PROFILE
@given(st.sampled_from(sorted(VALID, key=lambda cls: cls.__name__)), st.data())
def test_a_wrong_type_is_a_typed_error_or_kept(cls: type, data: st.DataObject) -> None:
    """Any wrong-typed value of a converted or checked field builds the value or raises ``TypeError``
    / ``ValueError``: never ``AttributeError`` or another error of the constructor's own code."""
    name = data.draw(st.sampled_from(checked_fields(cls)))
    value = data.draw(wrong_values | st.tuples(wrong_values))
    try:
        cls(**{**VALID[cls], name: value})
    except (TypeError, ValueError) as exc:
        error = exc
    else:
        return
    assert str(error)


@pytest.mark.parametrize(
    ("cls", "name"),
    [(api.Contact, "created_at"), (api.ActivityLog, "timestamp"), (api.ScopeBounds, "oldest_created_at")],
)
@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("2021-01-01T00:00:00Z", TypeError),
        (b"2021", TypeError),
        (None, TypeError),
        (1609459200, TypeError),
        (dt.date(2021, 1, 1), TypeError),
        (dt.datetime(2021, 1, 1), ValueError),
    ],
)
def test_a_timestamp_field_names_itself_in_its_error(
    cls: type, name: str, value: object, error: type
) -> None:
    """ISO text, bytes, None, epoch seconds and a date are a ``TypeError``, a naive datetime a
    ``ValueError``, each naming the class and field; ISO text is never parsed."""
    with pytest.raises(error, match=rf"^{cls.__name__}\.{name}"):
        cls(**{**VALID[cls], name: value})


@pytest.mark.parametrize("value", ["2021-01-01T00:00:00Z", b"x", None, 1.5, dt.date(2021, 1, 1), Odd()])
def test_as_utc_refuses_anything_but_a_datetime(value: object) -> None:
    """``as_utc`` of a value that is no ``datetime`` is a ``TypeError`` naming its type."""
    with pytest.raises(TypeError, match=type(value).__name__):
        as_utc(value)  # type: ignore[arg-type]


@given(wrong_values | st.tuples(wrong_values) | st.builds(JsonbText, wrong_values))
def test_load_audited_changes_raises_only_its_own_errors(value: object) -> None:
    """The loader of any value raises nothing but ``AuditedChangesError`` (its documented errors)."""
    with contextlib.suppress(AuditedChangesError):
        load_audited_changes(value)  # type: ignore[arg-type]


# What each AuditRow field accepts; any other value fails the row naming the field.
def _text(value: object) -> bool:
    return type(value) is str and bool(value)


def _optional(kind: type) -> Callable[[object], bool]:
    return lambda value: value is None or type(value) is kind


ACCEPTS: dict[str, Callable[[object], bool]] = {
    "tenant": _text,
    "id": lambda value: type(value) is int,
    "auditable_type": _text,
    "auditable_id": _optional(int),
    "action": _text,
    "created_at": lambda value: (
        value is None or (isinstance(value, dt.datetime) and value.utcoffset() is not None)
    ),
    "associated_id": _optional(int),
    "associated_type": lambda value: value is None or isinstance(value, str),
    "user_id": lambda value: value is None or type(value) is int or _text(value),
    "user_type": lambda value: value is None or isinstance(value, str),
    "username": lambda value: value is None or isinstance(value, str),
    "version": _optional(int),
    "comment": lambda value: value is None or isinstance(value, str),
    "remote_address": lambda value: value is None or isinstance(value, str),
    "request_uuid": lambda value: value is None or isinstance(value, str),
}
TRANSFORMER = api.Transformer(load_default_config())
PORTS = LookupPorts(
    InMemoryUserDirectory({"acme": [CrmUser(1, "a@x.example", "A")]}),
    InMemorySsoDirectory({"a@x.example": "sso-a"}),
    InMemoryContactDirectory([Contact("contact-7", "co", 7, dt.datetime(2022, 1, 1, tzinfo=dt.UTC))]),
)


def test_every_audit_row_field_is_tried() -> None:
    """``ACCEPTS`` covers every ``AuditRow`` field but ``audited_changes`` (the loader's)."""
    assert set(ACCEPTS) | {"audited_changes"} == {f.name for f in attrs.fields(AuditRow)}


@PROFILE
@given(st.sampled_from(sorted(ACCEPTS)), wrong_values | st.tuples(wrong_values))
def test_a_wrong_typed_audit_row_field_fails_that_row_naming_it(name: str, value: object) -> None:
    """An ``AuditRow`` of any wrong-typed field is built, and the transformer gives it one outcome:
    ``invalid_audit_row`` whose detail starts with the field's name (``missing_created_at`` for
    None), never an exception and never an ``unexpected …`` detail."""
    row = AuditRow(**{**VALID[AuditRow], "audited_changes": "---\nname:\n- a\n- b\n", name: value})
    prepared = TRANSFORMER.prepare([row])
    lookups = fetch_lookups(TRANSFORMER.plan(prepared), company_sso_id="co", tenant="acme", ports=PORTS)
    (outcome,) = TRANSFORMER.transform(prepared, lookups, company_sso_id="co").outcomes
    assert isinstance(outcome, Migrated | Skipped | Failed)
    if name == "created_at" and value is None:
        assert isinstance(outcome, Failed)
        assert outcome.reason == "missing_created_at"
    elif not ACCEPTS[name](value):
        assert isinstance(outcome, Failed), outcome
        assert outcome.reason == "invalid_audit_row"
        assert outcome.detail.startswith(f"{name} "), outcome.detail


@pytest.mark.parametrize(
    "value", ["2021-01-01T00:00:00Z", b"2021-01-01", dt.datetime(2021, 1, 1), 1609459200, decimal.Decimal(1)]
)
def test_an_audit_rows_created_at_of_another_type_fails_the_row(value: object) -> None:
    """ISO text, bytes, a naive datetime, epoch seconds: the ``AuditRow`` is built (a str raised
    ``AttributeError``, a naive datetime ``ValueError`` before) and fails as ``invalid_audit_row``."""
    row = AuditRow(**{**VALID[AuditRow], "created_at": value})
    assert row.created_at is value
    (prepared,) = TRANSFORMER.prepare([row])
    assert prepared.problem is not None
    assert prepared.problem.reason == "invalid_audit_row"
    assert prepared.problem.detail.startswith("created_at must be a UTC datetime, got ")


def test_the_in_memory_source_reads_a_row_whose_created_at_is_no_aware_datetime() -> None:
    """``testing.InMemoryAuditSource`` keeps such a row in every range, as it keeps a NULL one (its
    comparison with the cutoff raised ``TypeError``): the transformer fails it."""
    rows = [
        AuditRow(**{**VALID[AuditRow], "id": 1, "created_at": dt.datetime(2021, 1, 1)}),
        AuditRow(**{**VALID[AuditRow], "id": 2, "created_at": "2021-01-01"}),
        AuditRow(**{**VALID[AuditRow], "id": 3}),
    ]
    source = InMemoryAuditSource(rows)
    bounds = source.scope_bounds("acme", ["Crm::Deal"], NOW)
    assert bounds is not None
    assert (bounds.count, bounds.oldest_created_at) == (3, NOW)
    page = source.page("acme", ["Crm::Deal"], after_id=0, cutoff=NOW, limit=10)
    assert [row.id for row in page] == [1, 2, 3]


@PROFILE
@given(
    st.sampled_from(
        ["config", "limits", "chain", "transformer", "settings", "tenants", "coverage_threshold"]
    ),
    wrong_values,
)
def test_the_transformer_and_the_service_refuse_a_wrong_typed_argument_naming_it(
    name: str, value: object
) -> None:
    """``Transformer`` and ``MigrationService`` take a value of another type (a config's path, a
    dict of settings) as a ``TypeError`` naming the argument, at the call: they raised
    ``AttributeError`` later (``'str' object has no attribute 'types'``), from the code that first
    used it."""
    optional = name in ("limits", "chain", "settings", "tenants")
    if (value is None and optional) or (name == "coverage_threshold" and isinstance(value, int | float)):
        return
    if name == "tenants" and isinstance(value, dict):
        return
    build: Callable[[], object]
    if name in ("config", "limits", "chain"):
        build = lambda: api.Transformer(**{"config": load_default_config(), name: value})  # noqa: E731
    else:
        arguments: dict[str, Any] = {"transformer": TRANSFORMER, name: value}
        build = lambda: api.MigrationService(None, **arguments)  # type: ignore[arg-type]  # noqa: E731
    with pytest.raises(TypeError, match=rf"\({name}=\.\.\.\) must be a "):
        build()


# -- a job's counts and times, the halt rule, the account of a transform, a caller's clock ----------


@pytest.mark.parametrize("name", ["tally", "enrichment", "halt_basis"])
@pytest.mark.parametrize("value", ["x", {"processed": 1}, None, 3])
def test_a_shards_counts_of_another_type_are_a_type_error_naming_them(name: str, value: object) -> None:
    """``JobShard(tally="x")`` was built, and its job raised ``AttributeError`` summing its shards
    ('str' object has no attribute 'processed'): now the shard refuses it, naming the field."""
    with pytest.raises(TypeError, match=rf"^JobShard\.{name} must be an? \w*Tally, got "):
        api.MigrationJob(
            **{**VALID[api.MigrationJob], "shards": (api.JobShard(0, 0, None, 0, **{name: value}),)}
        )
    with pytest.raises(TypeError, match=rf"^MigrationJob\.{name} must be"):
        api.MigrationJob(**{**VALID[api.MigrationJob], "shards": (), name: value})


TIMES = ["cutoff", "created_at", "updated_at", "date_range_start", "finished_at", "lease_expires_at"]


@pytest.mark.parametrize("name", TIMES)
def test_a_jobs_naive_time_is_a_value_error_naming_the_field(name: str) -> None:
    """A naive time was kept as given, and compared with the store's aware clock later (a lease
    check's ``TypeError``, a cutoff off by the caller's offset): its zone is unknown, so the job
    refuses it, naming the field; text is a ``TypeError``, never parsed; an aware time of another
    offset is kept."""
    with pytest.raises(ValueError, match=rf"^MigrationJob\.{name}: naive datetime"):
        api.MigrationJob(**{**VALID[api.MigrationJob], name: dt.datetime(2021, 1, 1)})
    with pytest.raises(TypeError, match=rf"^MigrationJob\.{name} must be a timezone-aware datetime"):
        api.MigrationJob(**{**VALID[api.MigrationJob], name: "2021-01-01T00:00:00Z"})
    plus7 = dt.datetime(2021, 1, 1, 7, tzinfo=dt.timezone(dt.timedelta(hours=7)))
    job = api.MigrationJob(**{**VALID[api.MigrationJob], name: plus7})
    assert getattr(job, name) == NOW


@pytest.mark.parametrize("name", ["finished_at", "lease_expires_at"])
def test_a_shards_naive_time_is_a_value_error_naming_the_field(name: str) -> None:
    with pytest.raises(ValueError, match=rf"^JobShard\.{name}: naive datetime"):
        api.JobShard(0, 0, None, 0, **{name: dt.datetime(2021, 1, 1)})


@pytest.mark.parametrize("name", ["threshold", "degraded_threshold"])
@pytest.mark.parametrize("value", ["x", "0.1", None, True, decimal.Decimal("0.1"), [0.1]])
def test_a_halt_threshold_of_another_type_is_refused_when_built(name: str, value: object) -> None:
    """``HaltRule(threshold="x")`` was built and raised in ``decide``, at a run's first check point
    (after 200 rows were written): now it is a ``TypeError`` naming the field, when built."""
    with pytest.raises(TypeError, match=rf"^HaltRule\.{name} must be an int or a float, got "):
        api.HaltRule(**{name: value})


def test_a_nan_halt_threshold_is_refused_and_numbers_are_kept() -> None:
    """NaN is greater than no rate: a rule that would never halt is a ``ValueError``."""
    with pytest.raises(ValueError, match=r"^HaltRule\.threshold must be a share"):
        api.HaltRule(threshold=float("nan"))
    with pytest.raises(TypeError, match=r"^HaltRule\.sample must be an int, got float"):
        api.HaltRule(sample=2.5)  # type: ignore[arg-type]
    assert api.HaltRule(threshold=0, degraded_threshold=1.0, sample=1).threshold == 0


@pytest.mark.parametrize(
    ("value", "error"), [(None, TypeError), (b"co", TypeError), (7, TypeError), ("", ValueError)]
)
def test_a_transform_for_no_account_is_refused(value: object, error: type) -> None:
    """``transform(company_sso_id=None)`` skipped every row as ``contact_not_found``: refused now,
    before any row, as is ``explain``'s."""
    row = AuditRow(**VALID[AuditRow])
    prepared = TRANSFORMER.prepare([row])
    lookups = fetch_lookups(TRANSFORMER.plan(prepared), company_sso_id="co", tenant="acme", ports=PORTS)
    with pytest.raises(error, match=r"^Transformer\.transform\(company_sso_id=\.\.\.\) must "):
        TRANSFORMER.transform(prepared, lookups, company_sso_id=value)  # type: ignore[arg-type]
    with pytest.raises(error, match=r"^Transformer\.explain\(company_sso_id=\.\.\.\) must "):
        TRANSFORMER.explain(row, lookups, company_sso_id=value)  # type: ignore[arg-type]


class WallClockOnly:
    """A caller's clock written before ``Clock`` had ``monotonic()``."""

    def now(self) -> dt.datetime:
        return NOW


def test_a_clock_without_monotonic_is_refused_before_the_run_reads_or_writes() -> None:
    """The run raised ``AttributeError: 'WallClockOnly' object has no attribute 'monotonic'`` from
    ``run_loop`` after its checks: now the run's ports refuse the clock when built, naming the
    method, and the job is left as the trigger made it."""
    from support.corpus_account import World

    world = World(rows=[])
    world.trigger()
    before = world.jobs.latest(world.company)
    world.clock = WallClockOnly()  # type: ignore[assignment]
    with pytest.raises(
        TypeError, match=r"^RunPorts\.clock has no monotonic\(\): a Clock gives now\(\) and monotonic\(\)"
    ):
        world.service().run(world.company, owner="r")
    assert world.jobs.latest(world.company) == before


@pytest.mark.parametrize("build", ["rollback", "verify"])
def test_the_other_lease_holders_refuse_such_a_clock_too(build: str) -> None:
    """Rollback's and repair's ports measure their half lease on ``monotonic()`` as well."""
    from crm_audit_transform.testing import InMemoryEnrichmentStore, InMemoryJobStore
    from crm_audit_transform.usecases.rollback import RollbackPorts
    from crm_audit_transform.usecases.verify import VerifyPorts

    clock: Any = WallClockOnly()
    ports: Callable[[], object] = (
        (lambda: RollbackPorts(InMemoryJobStore(), InMemoryEnrichmentStore(), clock))
        if build == "rollback"
        else (lambda: VerifyPorts(None, None, None, None, None, clock=clock))  # type: ignore[arg-type]
    )
    with pytest.raises(TypeError, match=rf"^{build.title()}Ports\.clock has no monotonic\(\)"):
        ports()
