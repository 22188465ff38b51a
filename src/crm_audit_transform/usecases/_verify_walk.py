"""The walk behind ``verify_account``: page loop, stray pass, job check, repair's bookkeeping.

See ``usecases.verify`` for what is compared and the repair counting rule.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
from bisect import bisect_right
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final, cast

import attrs

from ..domain import ActivityLog, AuditRow, Contact, Failed, Migrated, Outcome, Skipped
from ..enrichment.model import ASSOCIATION_ACTIONS, MatchKey, as_referent_id
from ..errors import CrmAuditError, JobNotFound, LeaseHeld
from ..jobs import COMPLETED, LEASABLE, JobShard, MigrationJob
from ..lookup import LookupContext, LookupPorts, fetch_lookups
from ..lookup_cache import LookupCache
from ..ports import Clock, JobStore, RowsSetAside
from ..tally import Tally
from ..transformer import Transformer, external_id
from ..verification import (
    FINDING_KINDS,
    OWNED_FIELDS,
    Finding,
    Findings,
    JobCheck,
    MigratedDoc,
    Mismatch,
    StoredMigratedLog,
    VerifyReport,
)
from ._id_set import AuditIdSet
from .migrate_batch import MAX_BATCH_SIZE, migrate_batch

if TYPE_CHECKING:
    from .verify import VerifyPorts, VerifySettings


def hold_every_lease(jobs: JobStore, job: MigrationJob, owner: str, ttl: dt.timedelta) -> MigrationJob:
    """Take (or renew) every shard's lease, then the job's: the job as stored, all of it ``owner``'s.

    Repair saves the whole job document; a shard runner writes its entry under its own lease, so
    only with every shard's lease held may the document be saved whole. A completed shard's
    lease is never taken (``JobStore.acquire_shard_lease``): no runner writes that entry again.
    ``LeaseHeld`` (with the leases taken here handed back) while another runner holds one: a
    running shard is never overwritten, the repair waits until the shards are done. ``JobNotFound``
    when the job was cancelled or rolled back meanwhile (its lease is not ``LEASABLE``).
    """
    job_id = job.job_id
    taken: list[JobShard] = []
    try:
        for shard in job.shards:  # a job's shards are fixed when it is triggered
            held = jobs.acquire_shard_lease(job_id, shard.shard, owner, ttl)
            if held.shards[shard.shard].lease_owner == owner:
                taken.append(held.shards[shard.shard])
        held = jobs.acquire_lease(job_id, owner, ttl)
    except LeaseHeld as exc:
        _hand_back(jobs, job_id, taken, owner)
        raise LeaseHeld(
            f"verify --repair writes job {job_id} whole, so it waits while a runner holds it: {exc}"
        ) from exc
    if held.status not in LEASABLE:
        # Cancelled or rolled back since it was read: its account is never written again.
        _hand_back(jobs, job_id, taken, owner)
        raise JobNotFound(f"job {job_id} is {held.status}: nothing to repair into")
    return held


def _hand_back(jobs: JobStore, job_id: str, taken: list[JobShard], owner: str) -> None:
    for shard in taken:
        with contextlib.suppress(CrmAuditError):
            jobs.save_shard_progress(job_id, shard, owner, None)


def release_every_lease(jobs: JobStore, stored: MigrationJob, owner: str) -> None:
    """Hand back ``owner``'s leases on ``stored``: the whole document only when every lease is ours."""
    if stored.lease_owner == owner and all(_ours(s, owner) for s in stored.shards):
        jobs.save(
            attrs.evolve(stored, lease_owner=None, lease_expires_at=None, shards=_unleased(stored.shards))
        )
        return
    for shard in stored.shards:
        if shard.lease_owner == owner:
            jobs.save_shard_progress(stored.job_id, shard, owner, None)


def _ours(shard: JobShard, owner: str) -> bool:
    """Whether repair may write ``shard``'s entry: its lease is ``owner``'s, or it is completed."""
    return shard.lease_owner == owner or shard.status == COMPLETED


def _unleased(shards: tuple[JobShard, ...]) -> tuple[JobShard, ...]:
    return tuple(attrs.evolve(s, lease_owner=None, lease_expires_at=None) for s in shards)


class _Found:
    """An exact count and the first ``keep`` findings of one kind."""

    __slots__ = ("count", "items", "keep")

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.count = 0
        self.items: list[Finding] = []

    def add(self, audit_id: int | None, ext_id: str = "", detail: str = "") -> None:
        self.count += 1
        if len(self.items) < self.keep:
            self.items.append(Finding(audit_id, ext_id, detail))

    def frozen(self) -> Findings:
        return Findings(self.count, tuple(self.items))


_ABSENT: Final = object()


def _seam_may_fire(log: ActivityLog, contacts: Mapping[str, Contact]) -> bool:
    """Whether a seam check could report the stored copy of ``log`` (its fields are the log's).

    Only its timestamp may differ (whole milliseconds in a store), and never upward: a log before
    its contact's ``created_at`` is stored before it too. Association logs feed the overlap check;
    a customer the page's contacts lack is left to the full check (its contact is looked up).
    """
    if log.action in ASSOCIATION_ACTIONS:
        return True
    contact = contacts.get(log.customer_id)
    return contact is None or log.timestamp >= contact.created_at


def _seam_of_log(
    audit_id: int,
    log: ActivityLog,
    contacts: Mapping[str, Contact],
    keys: dict[MatchKey, tuple[int, str]] | None,
) -> bool:
    """The seam checks of a stored copy of ``log`` that is its document; False if it must be read.

    Its fields are the log's, its timestamp in whole milliseconds (``StoredMigratedLog``). Before
    its contact's ``created_at`` (known from the page) only an association log's match key is
    needed, made here when ``keys`` is given (the store may hold live-feed logs). Otherwise (a
    customer the page did not name, a timestamp at or past the watermark) the copy is read.
    """
    contact = contacts.get(log.customer_id)
    if contact is None or log.timestamp >= contact.created_at:
        return False
    if keys is not None and log.action in ASSOCIATION_ACTIONS:
        entity = as_referent_id(log.metadata.get("linked_entity_id"))
        if entity is not None:
            at = log.timestamp
            stored_at = at.replace(microsecond=at.microsecond - at.microsecond % 1000)
            key = MatchKey(log.company_sso_id, log.customer_id, log.category, log.action, entity, stored_at)
            keys[key] = (audit_id, log.external_id)
    return True


class Walk:
    """One verify: the page loop, the stray pass, the job check and repair's bookkeeping."""

    def __init__(
        self,
        company_sso_id: str,
        tenant: str,
        ports: VerifyPorts,
        transformer: Transformer,
        settings: VerifySettings,
        job: MigrationJob | None,
        rng: random.Random | None,
        owner: str,
    ) -> None:
        self.company = company_sso_id
        self.tenant = tenant
        self.ports = ports
        self.transformer = transformer
        self.settings = settings
        self.job = job
        self.rng = rng
        self.owner = owner
        self.cache = LookupCache()
        self.found = {kind: _Found(settings.keep) for kind in FINDING_KINDS}
        self.walked = AuditIdSet()
        self.audits = 0
        self.migrated = 0
        self.skipped: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.content_checked = 0
        # The job's range: rows behind its cursor, those with a log, the last one it promised.
        self.range_rows = 0
        self.range_logged = 0
        self.range_last = 0
        self.repaired = 0
        self.repaired_in_range = 0
        self.counted = 0
        self.batch_size = min(settings.batch_size, MAX_BATCH_SIZE)

    # -- the page loop ---------------------------------------------------------------------------
    def run(self) -> None:
        scope = self.transformer.scope
        if self.job is not None:
            cutoff, first = self.job.cutoff, self.job.first_audit_id
        else:
            bounds = self.ports.source.scope_bounds(self.tenant, scope, None)
            if bounds is None:
                return
            cutoff, first = bounds.oldest_created_at, bounds.min_id
        # From 0 (or just before a first id ≤ 0): rows committed behind the run's start are walked too.
        cursor = min(first - 1, 0)
        source = self.ports.source
        setting_aside = source if isinstance(source, RowsSetAside) else None
        while True:
            rows = source.page(
                self.tenant, scope, after_id=cursor, cutoff=cutoff, limit=self.settings.page_size
            )
            if setting_aside is not None:
                self._set_aside(setting_aside.take_set_aside())
            if not rows:  # the end: a shorter page may be a source's byte budget (ports.AuditSource)
                break
            self._page(rows)
            cursor = rows[-1].id

    def _page(self, rows: Sequence[AuditRow]) -> None:
        tenant = self.tenant
        ext_ids = [external_id(tenant, row.id) for row in rows]
        # The first copy of each external id, and the further copies of a duplicated one (rare).
        stored: dict[str, StoredMigratedLog] = {}
        extra: dict[str, list[StoredMigratedLog]] = {}
        for read in self.ports.reader.migrated_logs(self.company, ext_ids):
            if stored.setdefault(read.external_id, read) is not read:
                extra.setdefault(read.external_id, []).append(read)
        prepared = self.transformer.prepare(rows)
        ports = LookupPorts(self.ports.users, self.ports.sso, self.ports.contacts)
        ctx = fetch_lookups(
            self.transformer.plan(prepared),
            company_sso_id=self.company,
            tenant=tenant,
            ports=ports,
            cache=self.cache,
        )
        outcomes = self.transformer.transform(prepared, ctx, company_sso_id=self.company).outcomes
        sampled = None if self.settings.sample is None else self._sampled(ext_ids, outcomes, stored, extra)
        content_of = self.ports.reader.content_of
        contacts = {c.id: c for c in ctx.contacts.values()}
        compare: list[tuple[ActivityLog, MigratedDoc, Mapping[str, object]]] = []
        seam: list[tuple[int, MigratedDoc]] = []
        missing: list[Migrated] = []
        keys: dict[MatchKey, tuple[int, str]] = {}  # the overlap check's match keys
        live = keys if self.ports.reader.holds_live_feed else None
        logged: list[int] = []  # the rows with a stored log, in page order
        same = 0  # rows migrated with one stored log that is their recomputed one
        for row, ext_id, outcome in zip(rows, ext_ids, outcomes, strict=True):
            copy = stored.get(ext_id)
            if copy is None:
                self._account(row.id, ext_id, outcome, 0, missing)
                continue
            if sampled is None and isinstance(outcome, Migrated) and ext_id not in extra:
                # The common case, kept lean: one stored log, its content compared whole.
                log = cast(ActivityLog, outcome.log)  # the transformer's own: never encoded ahead
                expected = content_of(log)
                if copy.same_as(expected):
                    # The stored document is the recomputed one: the same content, the log's
                    # fields; it is read only when a seam check could fire on it.
                    same += 1
                    logged.append(row.id)
                    if not _seam_of_log(row.id, log, contacts, live):
                        doc = copy.parsed(expected)
                        if doc is not None:
                            seam.append((row.id, doc))
                    continue
                found = self._copies(row.id, log, (copy,), expected, sampled, contacts, compare, seam)
            else:
                recomputed = cast(ActivityLog, outcome.log) if isinstance(outcome, Migrated) else None
                copies = (copy, *extra[ext_id]) if ext_id in extra else (copy,)
                found = self._copies(row.id, recomputed, copies, None, sampled, contacts, compare, seam)
            if found:
                logged.append(row.id)
            self._account(row.id, ext_id, outcome, found, missing)
        self.migrated += same
        self.content_checked += same
        self._walked(rows, logged)
        self._seam_contacts(contacts, ctx, [doc for _, doc in seam])
        for audit_id, doc in seam:
            self._seam(audit_id, doc, contacts, keys)
        self._content(compare, ctx.sso_available)
        self._overlap(keys)
        if self.settings.repair and missing:
            self._repair(missing)

    def _copies(
        self,
        audit_id: int,
        log: ActivityLog | None,
        copies: Sequence[StoredMigratedLog],
        expected: Mapping[str, object] | None,
        sampled: set[int] | None,
        contacts: Mapping[str, Contact],
        compare: list[tuple[ActivityLog, MigratedDoc, Mapping[str, object]]],
        seam: list[tuple[int, MigratedDoc]],
    ) -> int:
        """Read a row's stored copies: how many are logs; their content queued for comparison.

        ``log`` is the row's recomputed log (None when it is not migrated), ``expected`` its
        content when already made.
        """
        found = 0
        for copy in copies:
            wanted = None
            if log is not None and (sampled is None or id(copy) in sampled):
                if expected is None:
                    expected = self.ports.reader.content_of(log)
                wanted = expected
                if copy.same_as(wanted):
                    found += 1
                    self.content_checked += 1
                    if _seam_may_fire(log, contacts) and (doc := copy.parsed(wanted)) is not None:
                        seam.append((audit_id, doc))
                    continue
            doc = copy.parsed(wanted)
            if doc is None:
                continue
            found += 1
            seam.append((audit_id, doc))
            if log is not None and wanted is not None:
                compare.append((log, doc, wanted))
        return found

    def _set_aside(self, outcomes: Sequence[Outcome]) -> None:
        """Count the rows the source set aside (``ports.RowsSetAside``) as the run counts them:
        audits without a log, by reason, and into the job's range."""
        for outcome in outcomes:
            if isinstance(outcome, Failed):
                self.failed[outcome.reason] += 1
            elif isinstance(outcome, Skipped):
                self.skipped[outcome.reason] += 1
        self.audits += len(outcomes)
        if self.job is not None:
            last = self.job.last_audit_id
            self.range_rows += sum(1 for outcome in outcomes if outcome.audit_id <= last)

    def _walked(self, rows: Sequence[AuditRow], logged: Sequence[int]) -> None:
        """Count a page's rows: in all, into the walked ids, and into the job's range."""
        self.audits += len(rows)
        ids = [row.id for row in rows]
        self.walked.update(ids)
        job = self.job
        if job is None:
            return
        last, promised = job.last_audit_id, job.max_audit_id
        # A page's ids ascend, so the ids up to a bound are a prefix.
        self.range_rows += bisect_right(ids, last)
        self.range_logged += sum(1 for audit_id in logged if audit_id <= last)
        within = bisect_right(ids, promised)
        if within:
            self.range_last = ids[within - 1]

    def _sampled(
        self,
        ext_ids: Sequence[str],
        outcomes: Sequence[Outcome],
        stored: Mapping[str, StoredMigratedLog],
        extra: Mapping[str, Sequence[StoredMigratedLog]],
    ) -> set[int]:
        """The stored copies (by ``id``) whose content ``--sample`` compares: at most N a page."""
        copies = [
            copy
            for ext_id, outcome in zip(ext_ids, outcomes, strict=True)
            if isinstance(outcome, Migrated) and ext_id in stored
            for copy in (stored[ext_id], *extra.get(ext_id, ()))
        ]
        sample = self.settings.sample
        if sample is not None and len(copies) > sample and self.rng is not None:
            copies = self.rng.sample(copies, sample)
        return {id(copy) for copy in copies}

    def _seam_contacts(
        self, contacts: dict[str, Contact], ctx: LookupContext, docs: Sequence[MigratedDoc]
    ) -> None:
        """Add to ``contacts`` (by id) those of stored logs naming a customer no row of the page named."""
        people = sorted(
            {
                doc.crm_person_id
                for doc in docs
                if doc.customer_id not in contacts
                and doc.crm_person_id is not None
                and doc.crm_person_id not in ctx.contacts
            }
        )
        if people:
            found = self.ports.contacts.contacts_by_crm_ids(self.company, people)
            contacts.update((c.id, c) for c in found.values())

    def _account(
        self, audit_id: int, ext_id: str, outcome: Outcome, docs: int, missing: list[Migrated]
    ) -> None:
        """Count the row by its recomputed outcome and the number of logs stored for it."""
        if docs > 1:
            self.found["duplicate"].add(audit_id, ext_id, f"{docs} logs")
        if isinstance(outcome, Migrated):
            if not docs:
                self.found["missing"].add(audit_id, ext_id, "no log")
                if self._repairable(audit_id):
                    missing.append(outcome)
                return
            self.migrated += 1
            return
        if docs:
            self.found["unexpected"].add(
                audit_id, ext_id, f"{type(outcome).__name__.lower()}: {outcome.reason}"
            )
            return
        counts = self.failed if isinstance(outcome, Failed) else self.skipped
        counts[outcome.reason] += 1

    def _repairable(self, audit_id: int) -> bool:
        job = self.job
        if not self.settings.repair or job is None:
            return False
        return audit_id <= job.last_audit_id or job.status == COMPLETED

    def _seam(
        self,
        audit_id: int,
        doc: MigratedDoc,
        contacts: Mapping[str, Contact],
        keys: dict[MatchKey, tuple[int, str]],
    ) -> None:
        contact = contacts.get(doc.customer_id)
        if contact is not None and doc.timestamp >= contact.created_at:
            self.found["past_watermark"].add(
                audit_id,
                doc.external_id,
                f"log at {doc.timestamp.isoformat()}, "
                f"contact {contact.id} synced {contact.created_at.isoformat()}",
            )
        if doc.action in ASSOCIATION_ACTIONS and doc.linked_entity_id is not None:
            key = MatchKey(
                doc.company_sso_id,
                doc.customer_id,
                doc.category,
                doc.action,
                doc.linked_entity_id,
                doc.timestamp,
            )
            keys[key] = (audit_id, doc.external_id)

    def _content(
        self, compare: Sequence[tuple[ActivityLog, MigratedDoc, Mapping[str, object]]], sso_available: bool
    ) -> None:
        for log, doc, expected in compare:
            self.content_checked += 1
            stored = doc.content
            if expected == stored:  # a reader's content may compare whole (equal lines) before field by field
                continue
            # With USMAN down the recomputed actor is degraded, not the stored one's truth.
            skip_actor = not sso_available and log.actor.kind == "deleted_user"
            fields = [
                name
                for name in OWNED_FIELDS
                if not (skip_actor and name == "actor")
                and expected.get(name, _ABSENT) != stored.get(name, _ABSENT)
            ]
            if fields:
                audit_id = log.metadata.get("crm_audit_id")
                self.found["drifted"].add(
                    audit_id if isinstance(audit_id, int) else None, doc.external_id, ", ".join(fields)
                )

    def _overlap(self, keys: Mapping[MatchKey, tuple[int, str]]) -> None:
        if not keys or not self.ports.reader.holds_live_feed:
            return
        window = self.settings.match_window
        for key, candidates in self.ports.reader.live_feed_candidates(list(keys), window).items():
            if candidates:
                audit_id, ext_id = keys[key]
                docs = ", ".join(f"{c.doc_id} at {c.timestamp.isoformat()}" for c in candidates)
                self.found["overlap"].add(audit_id, ext_id, f"live-feed log(s) {docs}")

    # -- repair ----------------------------------------------------------------------------------
    def _repair(self, missing: Sequence[Migrated]) -> None:
        writer, job = self.ports.logs, self.job
        if writer is None or job is None:  # _take_lease made sure of both
            raise ValueError("repair needs the logs port and a job")
        size = self.batch_size
        for start in range(0, len(missing), size):
            chunk = missing[start : start + size]
            result = migrate_batch([m.log for m in chunk], writer, max_size=size)
            for item, written in zip(chunk, result.results, strict=True):
                # A duplicate means the log is there (written meanwhile): the row is no longer missing.
                if written.status == "inserted" or written.status == "skipped":
                    self.repaired += 1
                    if item.audit_id <= job.last_audit_id:
                        self.repaired_in_range += 1
        self._renew_lease()

    def _lease_ports(self) -> tuple[JobStore, Clock, MigrationJob]:
        jobs, clock, job = self.ports.jobs, self.ports.clock, self.job
        if jobs is None or clock is None or job is None:  # _take_lease made sure of all three
            raise ValueError("repair needs the jobs and clock ports and a job")
        return jobs, clock, job

    def _renew_lease(self) -> None:
        # Taking the leases again renews them while they are ours (LeaseHeld once another took one
        # over); save_progress would not: it writes in-progress jobs only, and repair serves ended ones.
        jobs, _, job = self._lease_ports()
        self.job = hold_every_lease(jobs, job, self.owner, self.settings.lease_ttl)

    def finish_repair(self) -> None:
        """Count the repaired rows into the job (rule in the module docstring) and hand the lease back."""
        jobs, clock, job = self._lease_ports()
        # Still ours, or LeaseHeld: with every shard's lease held too, no runner writes this document
        # meanwhile, so saving it whole cannot undo a shard's batch.
        held = hold_every_lease(jobs, job, self.owner, self.settings.lease_ttl)
        # The job counts the rows behind its cursor that have a log: derived from what is stored now,
        # not incremented, so a repair that died before this write is counted by the next one.
        added = max(0, self.range_logged + self.repaired_in_range - held.tally.migrated)
        unseen = min(added, max(0, self.range_rows - held.tally.processed))
        self.counted = added
        found = Tally(processed=unseen, migrated=added)
        done = attrs.evolve(
            held,
            tally=held.tally + found,
            updated_at=clock.now(),
            lease_owner=None,
            lease_expires_at=None,
        )
        if held.shards:
            # A sharded job's counts are its shards' sums: the last shard (open-ended, where late rows
            # land) carries what the repair found. Still derived from the stored totals, not added up.
            shards = _unleased(held.shards)
            last = shards[-1]
            done = attrs.evolve(done, shards=(*shards[:-1], attrs.evolve(last, tally=last.tally + found)))
        jobs.save(done)
        self.job = done
        self.range_logged += self.repaired_in_range

    def release_quietly(self) -> None:
        jobs, job = self.ports.jobs, self.job
        if jobs is None or job is None:
            return
        # Best effort, from the job as stored: the leases expire anyway.
        with contextlib.suppress(CrmAuditError):
            stored = jobs.latest(self.company)
            if stored is not None and stored.job_id == job.job_id:
                release_every_lease(jobs, stored, self.owner)

    # -- after the walk --------------------------------------------------------------------------
    def stray_pass(self) -> None:
        prefix = f"crm:{self.tenant}:audit:"
        for ext_id in self.ports.reader.migrated_external_ids(self.company):
            audit_id = _audit_id_of(ext_id, prefix)
            if audit_id is None:
                self.found["stray"].add(None, ext_id, f"not an external_id of tenant {self.tenant!r}")
            elif audit_id not in self.walked:
                self.found["stray"].add(audit_id, ext_id, "names no in-scope audit")

    def _job_check(self) -> JobCheck | None:
        job = self.job
        if job is None:
            return None
        mismatches = []
        if job.tally.processed != self.range_rows:
            mismatches.append(Mismatch("processed", job.tally.processed, self.range_rows))
        if job.tally.migrated != self.range_logged:
            mismatches.append(Mismatch("migrated", job.tally.migrated, self.range_logged))
        if job.status == COMPLETED and job.last_audit_id < self.range_last:
            mismatches.append(Mismatch("last_audit_id", job.last_audit_id, self.range_last))
        return JobCheck(job.job_id, job.status, job.last_audit_id, tuple(mismatches))

    def report(self) -> VerifyReport:
        return VerifyReport(
            company_sso_id=self.company,
            tenant=self.tenant,
            audits=self.audits,
            migrated=self.migrated,
            skipped=self.skipped,
            failed=self.failed,
            content_checked=self.content_checked,
            sample=self.settings.sample,
            findings={kind: found.frozen() for kind, found in self.found.items()},
            job=self._job_check(),
            repaired=self.repaired,
            repaired_in_job=self.counted,
        )


def _audit_id_of(ext_id: str, prefix: str) -> int | None:
    if not ext_id.startswith(prefix):
        return None
    digits = ext_id[len(prefix) :]
    body = digits[1:] if digits.startswith("-") else digits
    return int(digits) if body.isascii() and body.isdigit() else None
