"""Every error of the tree pickles to an equal one: ``--workers`` page processes raise them across a
process boundary, where one that cannot be rebuilt breaks the whole pool (read as WORKER_LOST)."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator

import pytest

import crm_audit_adapters.files.audit_source
import crm_audit_adapters.files.errors
import crm_audit_adapters.files.long_lines
import crm_audit_adapters.usman
from crm_audit_transform import errors
from crm_audit_transform.errors import CrmAuditError

_files = crm_audit_adapters.files.errors
_usman = crm_audit_adapters.usman

# One instance of each error, built the way its raiser builds it. A class left out fails the
# completeness test below, so a new error class cannot skip the round trip.
SAMPLES: dict[type[CrmAuditError], Callable[[], CrmAuditError]] = {
    errors.MalformedYaml: lambda: errors.MalformedYaml("mapping values are not allowed", 3, 7),
    errors.UnsupportedTag: lambda: errors.UnsupportedTag("!ruby/object:Kernel"),
    errors.LimitExceeded: lambda: errors.LimitExceeded("nesting depth", 64, 65),
    errors.NotAMapping: lambda: errors.NotAMapping("a String"),
    errors.ConfigError: lambda: errors.ConfigError([("page_size", "expected 1..10000")], source="settings"),
    errors.ConnectionRejected: lambda: errors.ConnectionRejected(
        [("database_url", "password authentication failed for user 'crm'")]
    ),
    errors.DependencyMissing: lambda: errors.DependencyMissing([("mongo_uri", "needs mongomock")]),
    errors.MappingChanged: lambda: errors.MappingChanged(
        "job-1", "mapping-sha256:" + "a" * 64, "mapping-sha256:" + "b" * 64
    ),
    errors.BatchTooLarge: lambda: errors.BatchTooLarge(1001, 1000),
    errors.VerifyOptionInvalid: lambda: errors.VerifyOptionInvalid("seed", "seed must be a 64-bit integer"),
    errors.UnknownTenant: lambda: errors.UnknownTenant("t1"),
    errors.LeaseHeld: lambda: errors.LeaseHeld("job j1 is held by rollback:f00d", by_rollback=True),
    errors.RollbackHoldLost: lambda: errors.RollbackHoldLost("job j1's rollback lost its hold", taken=False),
    errors.IndexConflict: lambda: errors.IndexConflict("activity_logs", "uniq", "other options"),
    errors.JobUnreadable: lambda: errors.JobUnreadable(
        "junk-1", "zzz-other", "required field missing @ $.tenant"
    ),
    errors.IndexesMissing: lambda: errors.IndexesMissing(["activity_logs.uniq_company_external_id"]),
    errors.DirectoryRefused: lambda: errors.DirectoryRefused("HTTP 401", status_code=401),
    errors.DirectoryUnavailable: lambda: errors.DirectoryUnavailable(
        "an entry is no answer", answered={"a@x.example": "sso-a"}, unanswered=["b@x.example"]
    ),
    errors.SourceChanged: lambda: errors.SourceChanged(57, 3, 1),
    errors.SourceQueryFailed: lambda: errors.SourceQueryFailed("22P02", "data exception"),
    errors.UntranslatableCharacter: lambda: errors.UntranslatableCharacter("users", "WIN1252"),
    _files.FileFormatError: lambda: _files.FileFormatError("audits.jsonl", 4, "not JSON", audit_id=9),
    _files.FileChangedWhileRead: lambda: _files.FileChangedWhileRead(
        "audits.jsonl", 7, "it changed while it was read"
    ),
    crm_audit_adapters.files.long_lines.MembersTooLong: lambda: (
        crm_audit_adapters.files.long_lines.MembersTooLong("out.jsonl", 2, "a member longer than 1 MiB")
    ),
    crm_audit_adapters.files.audit_source.AuditOrderError: lambda: (
        crm_audit_adapters.files.audit_source.AuditOrderError("audits.jsonl", 5, "id 3 after 4", audit_id=3)
    ),
    _files.OutputLocked: lambda: _files.OutputLocked("out.jsonl"),
    _usman.UsmanUnavailable: lambda: _usman.UsmanUnavailable(
        "no SSO id",
        status_code=200,
        attempts=1,
        answered={"a@x.example": "sso-a"},
        unanswered=["b@x.example"],
    ),
    _usman.UsmanRefused: lambda: _usman.UsmanRefused("HTTP 403", status_code=403),
    errors.RestoreRefused: lambda: errors.RestoreRefused("crm:acme:audit:7", "code 17419: too large"),
}


def _tree(root: type[CrmAuditError]) -> Iterator[type[CrmAuditError]]:
    for sub in root.__subclasses__():
        if sub.__module__.startswith(("crm_audit_transform.", "crm_audit_adapters.")):
            yield sub
            yield from _tree(sub)


def _sample(cls: type[CrmAuditError]) -> CrmAuditError:
    build = SAMPLES.get(cls)
    return build() if build is not None else cls(f"{cls.__name__} happened")


@pytest.mark.parametrize("cls", sorted(set(_tree(CrmAuditError)), key=lambda c: c.__qualname__))
def test_every_error_pickles_to_an_equal_one(cls: type[CrmAuditError]) -> None:
    error = _sample(cls)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert str(copy) == str(error)
    assert copy.args == error.args
    assert vars(copy) == vars(error)


def test_errors_with_their_own_init_have_a_sample() -> None:
    """A class whose ``__init__`` is not its base's cannot be built from a message: it needs a sample."""
    own_init = {c for c in _tree(CrmAuditError) if "__init__" in vars(c)}
    assert own_init <= set(SAMPLES), sorted(c.__name__ for c in own_init - set(SAMPLES))


def test_a_worker_process_error_reaches_the_parent_typed() -> None:
    """The case that broke the pool: ``ConnectionRejected`` raised in a process-pool worker."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        future = pool.submit(_raise_rejected)
        with pytest.raises(errors.ConnectionRejected) as caught:
            future.result(timeout=60)
    assert caught.value.problems == (("database_url", "password authentication failed"),)


def _raise_rejected() -> None:
    raise errors.ConnectionRejected([("database_url", "password authentication failed")])
