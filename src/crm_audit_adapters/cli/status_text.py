"""How a job's status reads on the terminal: one job's table of keys and values (``status``,
``trigger``, ``cancel``) and the line a ``run`` ends with (``commands``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping

import click

from crm_audit_transform.usecases import MigrationStatus
from crm_audit_transform.usecases.status import ShardDocument, StatusDocument

from .options import echo_json, emit, printable, shown_word


def show_job(command: str, status: MigrationStatus, as_json: bool) -> None:
    """``trigger`` and ``cancel``: the job document (docs/runner.md, schema ``job``) or the table."""
    if as_json:
        emit(command, status.as_dict(), as_json)
    else:
        show_status(status, as_json=False)


def show_status(status: MigrationStatus, as_json: bool) -> None:
    """``status``: the status document as JSON, or its table of keys and values."""
    if as_json:
        echo_json(status.as_dict())
        return
    doc = status.as_dict()
    rows: list[tuple[str, object]] = [
        ("company_sso_id", _id(status.company_sso_id)),
        ("status", status.status),
    ]
    if status.job_id is not None:
        t = status.tally
        rows += [
            ("job_id", _id(status.job_id)),
            ("tenant", _id(status.tenant)),
            ("progress", f"{status.progress_pct:.2f}%"),
            ("last_audit_id", status.last_audit_id),
            ("processed", t.processed),
            ("migrated", t.migrated),
            ("skipped", _per_reason(t.skipped_total, t.skipped)),
            ("failed", _per_reason(t.failed_total, t.failed)),
            ("failure_rate", f"{status.failure_rate:.2%}"),
            ("accuracy_pct", f"{status.accuracy_pct:.2f}"),
            ("actors_degraded", t.actors_degraded),
            ("status_fallthrough", t.fallthrough),
            ("enrichment", _enrichment(status)),
            ("updated_at", doc["updated_at"]),
            ("lease", _lease(doc)),
        ]
        if status.not_resent_at is not None:
            rows.append(("not_resent", _not_resent(doc["not_resent_at"])))
        if status.halted_reason:
            rows.append(("halted_reason", status.halted_reason))
        if status.logs_deleted is not None or status.logs_in_unfinished_chunk:
            rows.append(("logs_deleted", _deleted(status)))
        rows += [(f"shard {shard['shard']}", _shard(shard)) for shard in doc["shards"]]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        # Ids, tenant, reasons and lease owners are the database's text: one row stays one line.
        click.echo(f"{key:<{width}}  {printable(str(value))}")


def account_lines(statuses: Iterable[MigrationStatus], now: dt.datetime) -> Iterator[str]:
    """``status --all``'s table: its header, then one line per account (``runner``: ``now``, this
    machine's clock). The account's and the job's ids are ``printable``: a newline in one made two
    lines of one account, the second read as another's."""
    header = f"{'company_sso_id':<36}  {'status':<11}  {'progress':>8}  {'processed':>9}  {'failed':>6}"
    yield f"{header}  {'runner':<10}  job_id"
    for s in statuses:
        yield (
            f"{printable(_id(s.company_sso_id)):<36}  {s.status:<11}  {s.progress_pct:>7.2f}%  "
            f"{s.tally.processed:>9}  {s.tally.failed_total:>6}  {runner(s, now):<10}  "
            f"{printable(_id(s.job_id))}"
        )


def _id(text: object) -> str:
    """An id from the database (a company, job or tenant id, a lease owner) as the table shows it:
    whole up to 256 characters, else its first 200 and its length (``shown_word``), as ``verify``
    shows ids: one of 200,000 characters would be a row of that size. ``--json`` keeps it whole."""
    return shown_word(str(text))


def _deleted(status: MigrationStatus) -> str:
    """``logs_deleted``, and the chunk a rollback has not counted yet (killed mid-chunk, or deleting)."""
    unfinished = status.logs_in_unfinished_chunk
    deleted = str(status.logs_deleted or 0)
    return f"{deleted}, and up to {unfinished} more in an unfinished chunk" if unfinished else deleted


def runner(status: MigrationStatus, now: dt.datetime) -> str:
    """``status --all``'s ``runner`` column: whether anything runs the account's job in progress.

    ``live`` while a lease (the job's, or an unfinished shard's) expires after ``now``; ``expired``
    when every lease held has passed its expiry (the runner died or froze: a redelivery or the next
    ``run`` takes it over); ``not-resent`` when no lease is held and a worker's task of the job (or
    of an unfinished shard) recorded that the broker did not take its re-send
    (``not_resent_at``): its message went back to the broker unacknowledged, due again when the
    broker answers (or after its visibility timeout), gone if the broker lost its data; ``none``
    when no lease is held and nothing was recorded — no runner has the job, and none will until a
    task or ``run`` arrives (a broker that lost its messages, a task another worker failed:
    docs/scale-out.md). ``-`` for a job not in progress. ``now`` is this machine's clock, the
    lease's expiry the database's: a hint for the operator, not a fence.
    """
    if status.status != "in_progress":
        return "-"
    unfinished = [s for s in status.shards if s.status == "in_progress"]
    if status.shards:
        leases = [(s.lease_owner, s.lease_expires_at) for s in unfinished]
    else:
        leases = [(status.lease_owner, status.lease_expires_at)]
    held = [expires for owner, expires in leases if owner is not None]
    if not held:
        marked = status.not_resent_at is not None or any(s.not_resent_at is not None for s in unfinished)
        return "not-resent" if marked else "none"
    live = any(e is not None and (e if e.tzinfo else e.replace(tzinfo=dt.UTC)) > now for e in held)
    return "live" if live else "expired"


def _lease(doc: StatusDocument) -> str:
    # A runner's is renewed every batch, a rollback's every chunk: an expiry in the past means
    # the one holding it is gone (or frozen).
    if doc["lease_owner"] is None:
        return "per shard (below)" if doc["shards"] else "none (no runner holds the job)"
    return f"{_id(doc['lease_owner'])} until {doc['lease_expires_at']}"


def _not_resent(at: str | None) -> str:
    return (
        f"at {at} a worker's task of this job was not sent again (the broker did not take it): its "
        "message went back to the broker, due again when the broker answers; if the broker lost it, "
        "`enqueue` sends it again (docs/scale-out.md)"
    )


def _shard(shard: ShardDocument) -> str:
    top = "end" if shard["until_id"] is None else shard["until_id"]
    owner, expires = shard["lease_owner"], shard["lease_expires_at"]
    held = "none" if owner is None else f"{_id(owner)} until {expires}"
    line = (
        f"{shard['status']}  ids ({shard['after_id']}, {top}]  cursor {shard['last_audit_id']}"
        f"  processed {shard['records_processed']}  lease {held}"
    )
    if shard["not_resent_at"] is not None:
        line += f"  task not re-sent at {shard['not_resent_at']} (waits for the broker)"
    return line


def _enrichment(status: MigrationStatus) -> str:
    # Beside the outcome counts, never inside them: enrichment is not a record's outcome.
    e = status.enrichment
    return (
        f"{e.logs} association log(s): patched {e.patched} ({e.keys_set} keys), complete {e.complete}, "
        f"skipped {_per_reason(e.skipped_total, e.skipped)}"
    )


def _per_reason(total: int, by_reason: Mapping[str, int]) -> str:
    detail = ", ".join(f"{reason} {count}" for reason, count in by_reason.items())
    return f"{total}" + (f"  ({detail})" if detail else "")


def status_summary(status: MigrationStatus) -> str:
    """The one line a ``run`` ends with: its state, tally, failure rate and cursor."""
    t = status.tally
    return (
        f"{status.status}: processed {t.processed}, migrated {t.migrated}, skipped {t.skipped_total}, "
        f"failed {t.failed_total} (failure rate {status.failure_rate:.2%}), actors degraded "
        f"{t.actors_degraded}, cursor {status.last_audit_id}"
    )
