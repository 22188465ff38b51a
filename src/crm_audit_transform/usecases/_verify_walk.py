"""The walk behind ``verify_account``: the page loop, the stray pass and the job check.

See ``usecases.verify`` for what is compared and the repair counting rule; the seam checks are in
``_verify_seam``, the finding lists and the content check in ``_verify_findings``, repair's
writes and counts in ``_verify_repair``, its leases in ``_verify_leases``.
"""

from __future__ import annotations

import random
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Final, cast

from .. import reasons
from ..domain import SOURCE_TAG, ActivityLog, AuditRow, Contact, Failed, Migrated, Outcome, Skipped
from ..enrichment.model import MatchKey
from ..jobs import COMPLETED, ROLLED_BACK, ROLLING_BACK, MigrationJob
from ..lookup import LookupPorts, fetch_lookups
from ..lookup_cache import LookupCache
from ..ports import RowsSetAside
from ..ports.log_stores import NonStringExternalIds, TaggedExternalIds
from ..tally import Tally
from ..transformer import Transformer, audit_id_in, external_id
from ..verification import PENDING_STATES, JobCheck, MigratedDoc, Mismatch, StoredMigratedLog, VerifyReport
from ._entity_names import name_linked_entities
from ._id_set import AuditIdSet
from ._verify_cursor import CountedRowsAtCursor
from ._verify_findings import (
    Found,
    MissingRanges,
    add_drifted,
    foreign_tag,
    foreign_tag_of,
    found_by_kind,
    written_keys,
)
from ._verify_repair import Repair, ShardCounts
from ._verify_seam import add_overlap, add_seam, add_seam_contacts, seam_may_fire, seam_of_log

if TYPE_CHECKING:
    from .verify import VerifyPorts, VerifySettings

ROLLED_BACK_STATES = frozenset({ROLLING_BACK, ROLLED_BACK})
"""A job whose claim is that the account's migrated logs are gone (a rollback's, done or under way)."""


NOT_A_STRING: Final = "not a string (shown as its relaxed Extended JSON): no external_id the run writes"
"""A stray's detail when its ``external_id`` is no string (docs/activity-log.md: the run writes text)."""


BEFORE_EVERY_ID: Final = -(2**63) - 1
"""The cursor verify starts from (or just before the job's first id, if lower): below the least
bigint, PostgreSQL's ``audits.id`` at its widest, so a row committed behind the job's first id is
walked whatever its id — 0, a negative one, -2**63 itself (verify.md)."""


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
        self.cache = LookupCache()
        self.found = found_by_kind(settings.keep)
        self.pending = Found(settings.keep)  # rows the run has not reached yet: not a finding
        self.missing_ranges = MissingRanges(settings.keep)
        # The last row walked with a stored log: before this page, and this page's (in walk order).
        self.last_logged: int | None = None
        self.page_logged: list[int] = []
        self.walked = AuditIdSet()
        self.audits = 0
        self.migrated = 0
        self.skipped: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.content_checked = 0
        self.actors_unchecked = 0  # logs whose actor USMAN's outage kept from being compared
        # The job's range: rows behind its cursor, those with a log, the last one it promised.
        self.range_rows = 0
        self.range_logged = 0
        self.range_last = 0
        # Its rows without a migrated log, by recomputed reason: what the job's skipped and failed
        # counts must be (a row whose log is unexpected among them: it skips or fails now).
        self.range_skipped: Counter[str] = Counter()
        self.range_failed: Counter[str] = Counter()
        # The same split by shard range, for a sharded job's repair (its shards' counts).
        self.by_shard = ShardCounts(job.shards) if job is not None and job.shards else None
        # Of a file's cursor ids, only the rows the job counted are behind (rows_at_cursor).
        self.at_cursor = CountedRowsAtCursor(job) if job is not None else None
        self.repair = Repair(ports, settings, owner)
        self.run_keys = written_keys(ports.entities is not None)
        self.foreign_strays = 0  # strays of another source_tag (stray_pass)
        self.job_moved = False  # the job document written by another while the walk read (verify_account)

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
        # From before every id, not from 0: rows committed behind the run's start are walked too,
        # ids ≤ 0 (read and migrated like any row) among them.
        cursor = min(first - 1, BEFORE_EVERY_ID)
        source = self.ports.source
        setting_aside = source if isinstance(source, RowsSetAside) else None
        while True:
            rows = source.page(
                self.tenant, scope, after_id=cursor, cutoff=cutoff, limit=self.settings.page_size
            )
            aside = setting_aside.take_set_aside() if setting_aside is not None else ()
            self._set_aside(aside)
            # The next page is asked after the highest id handed, as the run loop asks it
            # (ports.RowsSetAside): a source that paused in a run of rows it set aside goes on there.
            after_aside = aside[-1].audit_id if aside else cursor
            if not rows and aside:
                cursor = max(cursor, after_aside)
                continue
            if not rows:  # the end: a shorter page may be a source's byte budget (ports.AuditSource)
                break
            self._page(rows)
            cursor = max(rows[-1].id, after_aside)
        if self.at_cursor is not None:
            self._behind_set_aside(self.at_cursor.settled())

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
        result = self.transformer.transform(prepared, ctx, company_sso_id=self.company)
        outcomes = result.outcomes
        if self.ports.entities is not None:
            # The log the run writes: its association logs named from the CRM before the write
            # (one call per entity type named, as the run's), so the stored name is compared too.
            outcomes = name_linked_entities(outcomes, tenant=tenant, entities=self.ports.entities)
        sampled = None if self.settings.sample is None else self._sampled(ext_ids, outcomes, stored, extra)
        content_of = self.ports.reader.content_of
        contacts = {c.id: c for c in ctx.contacts.values()}
        compare: list[tuple[ActivityLog, MigratedDoc, Mapping[str, object]]] = []
        seam: list[tuple[int, MigratedDoc]] = []
        missing: list[Migrated] = []
        keys: dict[MatchKey, tuple[int, str]] = {}  # the overlap check's match keys
        live = keys if self.ports.reader.holds_live_feed else None
        logged: list[int] = []  # the rows with a stored log, in page order
        self.page_logged = logged
        same = 0  # rows migrated with one stored log that is their recomputed one
        for row, ext_id, outcome in zip(rows, ext_ids, outcomes, strict=True):
            copy = stored.get(ext_id)
            if copy is None:
                self._account(row.id, ext_id, self._as_written(outcome), 0, missing)
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
                    if not seam_of_log(row.id, log, contacts, live):
                        doc = copy.parsed(expected)
                        if doc is not None:
                            seam.append((row.id, doc))
                    continue
                found = self._copies(row.id, log, (copy,), expected, sampled, contacts, compare, seam)
            else:
                recomputed = cast(ActivityLog, outcome.log) if isinstance(outcome, Migrated) else None
                copies = (copy, *extra[ext_id]) if ext_id in extra else (copy,)
                found = self._copies(row.id, recomputed, copies, None, sampled, contacts, compare, seam)
            if found and isinstance(outcome, Migrated):
                # A row that migrates and has its log; a log of a row that skips now (unexpected) is
                # reported for a decision, never counted as a migrated row (nor by a repair).
                logged.append(row.id)
            self._account(row.id, ext_id, outcome, found, missing)
        self.migrated += same
        self.content_checked += same
        self.last_logged = self._logged_last()
        self.page_logged = []
        self._walked(rows, logged)
        add_seam_contacts(contacts, ctx, [doc for _, doc in seam], self.ports.contacts, self.company)
        for audit_id, doc in seam:
            add_seam(self.found["past_watermark"], audit_id, doc, contacts, keys)
        self.content_checked += len(compare)
        degraded: set[int] = (
            {row.id for row, bad in zip(rows, result.degraded, strict=True) if bad}
            if any(result.degraded)
            else set()
        )
        # A repair sets the drifted logs back to their recomputed ones, when its writer can.
        drifted: list[ActivityLog] = []
        restore = drifted if self.settings.repair and self.repair.restores else None
        self.actors_unchecked += add_drifted(self.found["drifted"], compare, degraded, restore, self.run_keys)
        add_overlap(self.found["overlap"], self.ports.reader, keys, self.settings.match_window)
        if self.settings.repair and (missing or drifted):
            if degraded and missing:
                # USMAN's outage degraded these rows' actors: written so, they would stay wrong for
                # good (a run halts on them instead). Left missing, and counted unchecked, for a
                # repair once USMAN answers.
                held = [m for m in missing if m.audit_id in degraded]
                self.actors_unchecked += len(held)
                missing = [m for m in missing if m.audit_id not in degraded]
            if missing or drifted:
                self.job = self.repair.write(missing, self.job, drifted)

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
                    if seam_may_fire(log, contacts) and (doc := copy.parsed(wanted)) is not None:
                        seam.append((audit_id, doc))
                    continue
            doc = copy.parsed(wanted)
            if doc is None:
                continue
            found += 1
            seam.append((audit_id, doc))
            if log is not None and wanted is not None:
                compare.append((log, doc, wanted))
            elif log is not None and (tagged := foreign_tag(doc)):
                # Not in the content sample, but read: its tag is checked all the same.
                self.found["drifted"].add(audit_id, doc.external_id, tagged)
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
        if self.at_cursor is not None:
            self._behind_set_aside(self.at_cursor.behind(outcomes))

    def _behind_set_aside(self, behind: Sequence[Outcome]) -> None:
        """Count rows set aside that the job counted into its range."""
        for outcome in behind:
            self._count_in_range(outcome)
        self.range_rows += len(behind)
        if self.by_shard is not None:
            self.by_shard.count_rows([outcome.audit_id for outcome in behind])

    def _in_range(self, outcome: Outcome) -> None:
        """Count a row that skips or fails now into the job's range, when behind its cursor."""
        if self.job is None or not self.job.is_behind(outcome.audit_id):
            return
        self._count_in_range(outcome)

    def _count_in_range(self, outcome: Outcome) -> None:
        shard = None if self.by_shard is None else self.by_shard.of(outcome.audit_id)
        if isinstance(outcome, Failed):
            self.range_failed[outcome.reason] += 1
            if self.by_shard is not None and shard is not None:
                self.by_shard.failed[shard][outcome.reason] += 1
        elif isinstance(outcome, Skipped):
            self.range_skipped[outcome.reason] += 1
            if self.by_shard is not None and shard is not None:
                self.by_shard.skipped[shard][outcome.reason] += 1

    def _walked(self, rows: Sequence[AuditRow], logged: Sequence[int]) -> None:
        """Count a page's rows: in all, into the walked ids, and into the job's range."""
        self.audits += len(rows)
        ids = [row.id for row in rows]
        self.walked.update(ids)
        job = self.job
        if job is None:
            return
        if self.at_cursor is not None:
            self.at_cursor.saw_rows(ids)
        promised = job.max_audit_id
        if job.shards:  # behind each shard's own cursor: not a prefix of the page
            behind = [audit_id for audit_id in ids if job.is_behind(audit_id)]
            logged_behind = [audit_id for audit_id in logged if job.is_behind(audit_id)]
        else:  # a page's ids ascend, so the ids up to the cursor are a prefix
            last = job.last_audit_id
            behind = ids[: bisect_right(ids, last)]
            logged_behind = [audit_id for audit_id in logged if audit_id <= last]
        self.range_rows += len(behind)
        self.range_logged += len(logged_behind)
        if self.by_shard is not None:
            self.by_shard.count_rows(behind)
            self.by_shard.count_rows(logged_behind, logged=True)
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

    def _as_written(self, outcome: Outcome) -> Outcome:
        """A row with no log, as its write would end: ``write_error`` when the store can never hold
        its log (the reader's encoder, the writer's own, refuses it: a value nested past MongoDB's
        limit or past the recursion limit), as the run counted it; else the outcome as it is. Such a
        row is a counted failure, not ``missing``: ``--repair`` would retry it on every pass."""
        if not isinstance(outcome, Migrated) or not isinstance(outcome.log, ActivityLog):
            return outcome
        try:
            self.ports.reader.content_of(outcome.log)
        except (ValueError, RecursionError) as error:
            return Failed(outcome.audit_id, reasons.WRITE_ERROR, str(error))
        return outcome

    def _account(
        self, audit_id: int, ext_id: str, outcome: Outcome, docs: int, missing: list[Migrated]
    ) -> None:
        """Count the row by its recomputed outcome and the number of logs stored for it."""
        if docs > 1:
            self.found["duplicate"].add(audit_id, ext_id, f"{docs} logs")
        if isinstance(outcome, Migrated):
            if not docs and self._not_yet_due(audit_id):
                self.pending.add(audit_id, ext_id, "no log yet: past the cursor of a job not completed")
                return
            if not docs:
                self.found["missing"].add(audit_id, ext_id, "no log")
                self.missing_ranges.add(audit_id, self._logged_last())
                if self._repairable(audit_id):
                    missing.append(outcome)
                return
            self.migrated += 1
            return
        self._in_range(outcome)
        if docs:
            self.last_logged = audit_id if self.last_logged is None else max(self.last_logged, audit_id)
            self.found["unexpected"].add(
                audit_id, ext_id, f"{type(outcome).__name__.lower()}: {outcome.reason}"
            )
            return
        counts = self.failed if isinstance(outcome, Failed) else self.skipped
        counts[outcome.reason] += 1

    def _logged_last(self) -> int | None:
        """The id of the last row walked with a stored log (``missing_ranges`` ends a range there)."""
        page, before = self.page_logged, self.last_logged
        if not page:
            return before
        return page[-1] if before is None else max(before, page[-1])

    def _not_yet_due(self, audit_id: int) -> bool:
        """Whether a row without its log is the run's still to reach: past the cursor of a job whose
        run has not ended for good (``PENDING_STATES``). Such a row is ``pending``, never ``missing``:
        read as missing, a paused job's unread rows looked like lost ones."""
        job = self.job
        return job is not None and job.status in PENDING_STATES and not job.is_behind(audit_id)

    def _repairable(self, audit_id: int) -> bool:
        job = self.job
        if not self.settings.repair or job is None:
            return False
        return job.is_behind(audit_id) or job.status == COMPLETED

    # -- repair ----------------------------------------------------------------------------------
    def finish_repair(self) -> None:
        """Count the repaired rows into the job (rule in ``usecases.verify``) and hand the lease back."""
        proved = Tally(
            processed=self.range_rows,
            migrated=self.range_logged,
            skipped=self.range_skipped,
            failed=self.range_failed,
        )
        self.job = self.repair.finish(self.job, proved, self.by_shard)
        self.range_logged += self.repair.repaired_in_range

    def release_quietly(self) -> None:
        self.repair.release_quietly(self.company, self.job)

    # -- after the walk --------------------------------------------------------------------------
    def stray_pass(self) -> None:
        """Report each stored log under an external id the page pass never read: a ``crm_migration``
        log of an id naming no walked audit, and a log of another ``source_tag`` under an id of ours
        naming none (an id collision: not ours to delete, so never counted as one of our logs left).
        Each copy is a stray; an id on several logs is also one ``duplicate`` (the page pass finds
        those of the walked ids), told by the ids seen so far (``_Seen``). An id that names no audit
        of the tenant is kept by its text's hash; when one hash is met twice, the stream is read once
        more for those hashes' texts (``_Seen.confirm``), so a duplicate is never a hash's guess.
        A ``crm_migration`` log whose ``external_id`` is not a string (``ports.log_stores.
        NonStringExternalIds``) is a stray shown as its relaxed Extended JSON, told from the others
        by a ``_Seen`` of its own: the number ``5`` is not a copy of the string ``"5"``."""
        prefix = f"crm:{self.tenant}:audit:"
        stray, seen = self.found["stray"], _Seen()
        for ext_id, tag in self._stray_stream(prefix):
            audit_id = audit_id_in(ext_id, prefix)
            if audit_id is not None and audit_id in self.walked:
                continue  # the page pass read every copy of it, whatever its tag
            if tag != SOURCE_TAG:
                if audit_id is None:
                    continue  # not an id the run writes: another tool's own
                self.foreign_strays += 1
                stray.add(audit_id, ext_id, f"{foreign_tag_of(tag)}, naming no in-scope audit: an id of ours")
            elif audit_id is None:
                stray.add(None, ext_id, f"not an external_id of tenant {self.tenant!r}")
            else:
                stray.add(audit_id, ext_id, "names no in-scope audit")
            seen.saw(ext_id, audit_id)
        if seen.candidates:
            # Only the texts of the twice-met hashes are counted, as the first read took them.
            seen.confirm(
                ext_id
                for ext_id, tag in self._stray_stream(prefix)
                if tag == SOURCE_TAG and audit_id_in(ext_id, prefix) is None
            )
        for ext_id, (audit_id, logs) in seen.doubled.items():
            self.found["duplicate"].add(audit_id, ext_id, f"{logs} logs")
        self._non_string_strays()

    def _non_string_strays(self) -> None:
        """The stray pass over the logs whose ``external_id`` is not a string, when the reader
        streams them apart: each a stray, one met more than once also a ``duplicate``."""
        reader = self.ports.reader
        if not isinstance(reader, NonStringExternalIds):
            return
        seen = _Seen()
        for text in reader.non_string_external_ids(self.company):
            self.found["stray"].add(None, text, NOT_A_STRING)
            seen.saw(text, None)
        if seen.candidates:
            seen.confirm(reader.non_string_external_ids(self.company))
        for text, (_, logs) in seen.doubled.items():
            self.found["duplicate"].add(None, text, f"{logs} logs, {NOT_A_STRING}")

    def _stray_stream(self, prefix: str) -> Iterable[tuple[str, str]]:
        """``(external_id, source_tag)`` of the stray pass: the reader's tagged stream
        (``ports.TaggedExternalIds``), else its ``crm_migration`` ids."""
        reader = self.ports.reader
        if isinstance(reader, TaggedExternalIds):
            return reader.tagged_external_ids(self.company, prefix)
        return ((ext_id, SOURCE_TAG) for ext_id in reader.migrated_external_ids(self.company))

    def _job_check(self) -> JobCheck | None:
        job = self.job
        if job is None:
            return None
        if job.status in ROLLED_BACK_STATES:
            # What a rollback claims is that none of the account's migrated logs remain; its counts
            # are the run's from before it. A log still there (a batch that landed after the delete,
            # a rollback that died) is a mismatch: the job is not what is stored.
            # A stray of another tag is not one of ours: the rollback rightly left it.
            left = self.migrated + self.found["unexpected"].count + self.found["stray"].count
            left -= self.foreign_strays
            found = (Mismatch("migrated_logs", 0, left),) if left else ()
            return JobCheck(job.job_id, job.status, job.last_audit_id, found, self.job_moved)
        mismatches = []
        tally = job.tally
        outcomes = tally.migrated + tally.skipped_total + tally.failed_total
        if outcomes != tally.processed:
            # The job's own counts do not add up: a row counted twice, or not at all.
            mismatches.append(Mismatch("outcomes", outcomes, tally.processed))
        if tally.processed != self.range_rows:
            mismatches.append(Mismatch("processed", tally.processed, self.range_rows))
        if tally.migrated != self.range_logged:
            mismatches.append(Mismatch("migrated", tally.migrated, self.range_logged))
        skipped, failed = sum(self.range_skipped.values()), sum(self.range_failed.values())
        if tally.skipped_total != skipped:
            mismatches.append(Mismatch("skipped", tally.skipped_total, skipped))
        if tally.failed_total != failed:
            mismatches.append(Mismatch("failed", tally.failed_total, failed))
        if job.status == COMPLETED and job.last_audit_id < self.range_last:
            mismatches.append(Mismatch("last_audit_id", job.last_audit_id, self.range_last))
        return JobCheck(job.job_id, job.status, job.last_audit_id, tuple(mismatches), self.job_moved)

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
            pending=self.pending.frozen(),
            missing_ranges=self.missing_ranges.frozen(),
            missing_range_count=self.missing_ranges.count,
            repaired=self.repair.repaired,
            repaired_in_job=self.repair.counted,
            restored=self.repair.restored,
            restore_refused=self.repair.restore_refused,
            halt_threshold=self.settings.halt_threshold,
            actors_unchecked=self.actors_unchecked,
        )


_SEEN_BATCH: Final = 1 << 14
"""Ids held in a plain set before they go into an ``AuditIdSet`` in one ``update``."""


class _Ints:
    """Integers met so far, in an ``AuditIdSet`` (a bit or 8 bytes each). The last ``_SEEN_BATCH``
    wait in a plain set and go in together: looked up after each add, the set would sort its new
    ids in every time (the stream's text order is not the ids' order), a merge of all it holds a
    stray."""

    __slots__ = ("ids", "recent")

    def __init__(self) -> None:
        self.ids = AuditIdSet()
        self.recent: set[int] = set()

    def met_again(self, value: int) -> bool:
        """Add ``value``; whether it was met before."""
        again = value in self.recent or value in self.ids
        self.recent.add(value)
        if len(self.recent) >= _SEEN_BATCH:
            self.ids.update(self.recent)
            self.recent.clear()
        return again


_HASH_BITS: Final = 64
_BUCKET_IDS: Final = 512
"""A bucket of ``_Hashes`` is split in two past this many hashes (an insert moves at most 4 KiB)."""


class _Hashes:
    """A set of 64-bit hashes (``hash``'s, spread evenly), about 9 bytes each held: buckets by the hash's
    top bits, each a sorted ``array("Q")``, all split in two by their next bit when they hold
    ``_BUCKET_IDS`` on average. An insert is a ``bisect`` and a move of at most a bucket; a split
    cuts each bucket where its next bit turns (slices, no int objects). An ``AuditIdSet`` holds as
    little, but sorts each batch into all it holds: a million spread hashes took 18 × the CPU of a
    set of their texts there, about 2 × here (benchmarks/RESULTS.md)."""

    __slots__ = ("buckets", "count", "shift")

    def __init__(self) -> None:
        self.shift = _HASH_BITS - 8
        self.buckets = [array("Q") for _ in range(1 << 8)]
        self.count = 0

    def met_again(self, value: int) -> bool:
        """Add ``value`` (an ``int``: its low 64 bits are kept); whether it was met before."""
        value &= 0xFFFF_FFFF_FFFF_FFFF
        bucket = self.buckets[value >> self.shift]
        at = bisect_left(bucket, value)
        if at < len(bucket) and bucket[at] == value:
            return True
        bucket.insert(at, value)
        self.count += 1
        if self.count > len(self.buckets) * _BUCKET_IDS and self.shift > 0:
            self._split()
        return False

    def _split(self) -> None:
        """Each bucket cut in two at its next bit: the directory doubles, each bucket halves."""
        shift = self.shift - 1
        old, self.buckets = self.buckets, []
        for index, bucket in enumerate(old):
            half = bisect_left(bucket, ((index << 1) | 1) << shift)
            self.buckets += (bucket[:half], bucket[half:])
            old[index] = _EMPTY  # its hashes now held by the halves alone
        self.shift = shift


_EMPTY: Final = array("Q")


class _Seen:
    """The ids the stray pass met, to tell a duplicate whatever the stream's order. ``doubled``:
    each id met more than once, its audit id and copies.

    An id naming an audit of the tenant is kept as its audit id (``_Ints``: exact). Any other
    (another tenant's, misspelled, not a string) is kept as its text's 64-bit ``hash``
    (``_Hashes``), about 11 bytes of peak RSS where its text took about 110 (a million of another
    tenant's strays: 11 MiB, not 110; benchmarks/stray_memory.py). A hash met again is a ``candidate``:
    the same text, or two texts of one hash. ``confirm`` counts the candidates' texts on a second
    read, so ``doubled`` holds only ids really met twice. Duplicates are impossible with migration
    035's unique index, and two texts of one hash rare (about n² / 2⁶⁵), so that read is too."""

    __slots__ = ("audit_ids", "candidates", "doubled", "hashes")

    def __init__(self) -> None:
        self.audit_ids = _Ints()
        self.hashes = _Hashes()
        self.candidates: set[int] = set()
        self.doubled: dict[str, tuple[int | None, int]] = {}

    def saw(self, ext_id: str, audit_id: int | None) -> None:
        if audit_id is None:
            key = hash(ext_id)
            if self.hashes.met_again(key):
                self.candidates.add(key)
            return
        if self.audit_ids.met_again(audit_id):
            _, logs = self.doubled.get(ext_id, (audit_id, 1))
            self.doubled[ext_id] = (audit_id, logs + 1)

    def confirm(self, texts: Iterable[str]) -> None:
        """Count, among ``texts`` (every id ``saw`` was given without an audit id, read again), those
        whose hash is a candidate: each met more than once is ``doubled``, with its copies."""
        counts = Counter(text for text in texts if hash(text) in self.candidates)
        for text, logs in counts.items():
            if logs > 1:
                self.doubled[text] = (None, logs)
