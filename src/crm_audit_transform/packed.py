"""A page's outcomes in compact form: what a worker process hands back, written without per-row objects.

With ``--workers`` the runner writes every log of the workers' pages. Rebuilding a ``Migrated`` and
its ``EncodedLog`` for each row, then a ``WriteResult``, a settled outcome and a tally entry for it,
was most of the runner's time (benchmarks/RESULTS.md, issue 15 goal 2, "Ninth round: a worker's page
crosses back packed"). A worker packs its page instead (``pack_outcomes``): per row its audit id
and kind, and for each log it encoded the action, the ``named`` flag and the line's length, with
every line in one buffer. What the logs
share — the company, the encoding, the source tag, the external id's prefix (``prefix + str(id)``)
— is kept once. ``PackedOutcomes`` is a ``Sequence[Outcome]``: read row by row it gives exactly the
outcomes the worker held (so every path that reads outcomes works unchanged), and a slice is a view,
so a step of the run loop is cut, written (``ports.PackedLogWriter``: a step's lines are one slice
of the buffer) and counted (``tally``) on those arrays.

Kinds (``kinds``, one byte a row):

- ``PACKED`` (``M``): a ``Migrated`` whose log is an ``EncodedLog`` with the shared fields, no
  ``problem`` and an external id ``prefix + str(audit_id)``;
- ``LOG`` (``L``): any other ``Migrated`` (a log the loop may still name, one its writer refuses, one
  whose fields differ, an outcome of a subclass of ``Migrated``), kept as it is in ``others``;
- ``OTHER`` (``X``): every outcome that is no ``Migrated`` (``Skipped``, ``Failed``), kept in ``others``.
"""

from __future__ import annotations

import itertools
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final, overload

from .domain import ActivityLog, EncodedLog, Migrated, Outcome
from .tally import Tally

__all__ = [
    "LOG",
    "OTHER",
    "PACKED",
    "PackedOutcomes",
    "PackedRows",
    "association_counts",
    "join",
    "pack_outcomes",
]

PACKED: Final = ord("M")
LOG: Final = ord("L")
OTHER: Final = ord("X")

_LOGS_OF: Final = bytes.maketrans(b"MLX", b"\x01\x01\x00")
"""``kinds`` to one byte a row: 1 for a row that has a log to write (``PACKED`` or ``LOG``)."""
_PACKED_OF: Final = bytes.maketrans(b"MLX", b"\x01\x00\x00")
"""``kinds`` to one byte a row: 1 for a ``PACKED`` row."""


class PackedRows:
    """The arrays of one page (or of several joined: ``join``); ``PackedOutcomes`` views them.

    ``ids`` the rows' audit ids; ``kinds`` one byte a row (module docstring); for a ``PACKED`` row
    ``actions`` its log's action, ``named`` 1 when its metadata holds ``linked_entity_name``,
    ``sizes`` its line's length in ``data`` (the lines in row order; 0, ``""`` and 0 for the other
    rows); ``others`` the outcome of every other row (None for a ``PACKED`` one). ``company``,
    ``encoding``, ``source_tag`` and ``prefix`` are the ``PACKED`` logs' shared fields.
    """

    __slots__ = (
        "_ends",
        "actions",
        "company",
        "data",
        "encoding",
        "ids",
        "kinds",
        "named",
        "others",
        "prefix",
        "sizes",
        "source_tag",
    )

    def __init__(
        self,
        ids: array[int],
        kinds: bytes,
        actions: list[str],
        named: bytes,
        sizes: array[int],
        data: bytes,
        others: list[Any],
        shared: tuple[str, str, str, str],
    ) -> None:
        self.ids = ids
        self.kinds = kinds
        self.actions = actions
        self.named = named
        self.sizes = sizes
        self.data = data
        self.others = others
        self.company, self.encoding, self.source_tag, self.prefix = shared
        self._ends: array[int] | None = None

    @property
    def shared(self) -> tuple[str, str, str, str]:
        """``(company, encoding, source_tag, prefix)``: what every ``PACKED`` log of these rows has
        in common, as ``PackedRows`` takes it (``join`` joins only rows that share it)."""
        return self.company, self.encoding, self.source_tag, self.prefix

    def end(self, index: int) -> int:
        """Where the lines of rows ``0 .. index - 1`` end in ``data``."""
        ends = self._ends
        if ends is None:
            ends = self._ends = array("q", itertools.accumulate(self.sizes, initial=0))
        return ends[index]

    def __reduce__(self) -> tuple[Any, ...]:
        fields = (self.ids, self.kinds, self.actions, self.named, self.sizes, self.data, self.others)
        return PackedRows, (*fields, self.shared)


class PackedOutcomes(Sequence[Outcome]):
    """Rows ``start .. stop - 1`` of ``rows``, read as their outcomes (module docstring)."""

    __slots__ = ("rows", "start", "stop")

    def __init__(self, rows: PackedRows, start: int = 0, stop: int | None = None) -> None:
        self.rows = rows
        self.start = start
        self.stop = len(rows.ids) if stop is None else stop

    def __len__(self) -> int:
        return self.stop - self.start

    @overload
    def __getitem__(self, index: int) -> Outcome: ...

    @overload
    def __getitem__(self, index: slice) -> PackedOutcomes: ...

    def __getitem__(self, index: int | slice) -> Outcome | PackedOutcomes:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                raise ValueError("a PackedOutcomes slice takes no step")
            return PackedOutcomes(self.rows, self.start + start, self.start + max(start, stop))
        size = len(self)
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError("PackedOutcomes index out of range")
        return self._outcome(self.start + index)

    def __iter__(self) -> Iterator[Outcome]:
        outcome = self._outcome
        for index in range(self.start, self.stop):
            yield outcome(index)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # a sequence of outcomes, compared by value

    def __repr__(self) -> str:
        return f"PackedOutcomes({list(self)!r})"

    def _outcome(self, index: int) -> Outcome:
        rows = self.rows
        if rows.kinds[index] != PACKED:
            outcome: Outcome = rows.others[index]
            return outcome
        audit_id = rows.ids[index]
        log = EncodedLog(
            rows.company,
            f"{rows.prefix}{audit_id}",
            rows.actions[index],
            rows.encoding,
            rows.data[rows.end(index) : rows.end(index + 1)],
            "",
            rows.source_tag,
            bool(rows.named[index]),
        )
        return Migrated(audit_id, log)

    @property
    def plain(self) -> bool:
        """Whether every log of these rows is ``PACKED`` (no ``LOG`` row): written from the arrays."""
        return self.rows.kinds.find(b"L", self.start, self.stop) < 0

    @property
    def has_packed(self) -> bool:
        """Whether any of these rows is ``PACKED``."""
        return self.rows.kinds.find(b"M", self.start, self.stop) >= 0

    def log_marks(self) -> bytes:
        """One byte a row: 1 for a row with a log to write (``_run_steps.cut_steps``)."""
        return self.rows.kinds[self.start : self.stop].translate(_LOGS_OF)

    @property
    def logs(self) -> int:
        """How many of these rows have a log to write."""
        kinds = self.rows.kinds
        return kinds.count(b"M", self.start, self.stop) + kinds.count(b"L", self.start, self.stop)

    def packed_ids(self) -> array[int]:
        """The audit ids of the ``PACKED`` rows, in order (their logs' external ids: ``prefix + id``)."""
        rows = self.rows
        marks = rows.kinds[self.start : self.stop].translate(_PACKED_OF)
        return array("q", itertools.compress(rows.ids[self.start : self.stop], marks))

    def packed_actions(self) -> Iterator[tuple[str, int]]:
        """``(action, named)`` of each ``PACKED`` row, in order."""
        rows = self.rows
        marks = rows.kinds[self.start : self.stop].translate(_PACKED_OF)
        pairs = zip(rows.actions[self.start : self.stop], rows.named[self.start : self.stop], strict=True)
        return itertools.compress(pairs, marks)

    def lines(self) -> bytes:
        """The lines of the ``PACKED`` rows, in order, as one buffer."""
        rows = self.rows
        return rows.data[rows.end(self.start) : rows.end(self.stop)]

    def line(self, index: int) -> bytes:
        """Row ``index``'s line (of this view)."""
        rows = self.rows
        return rows.data[rows.end(self.start + index) : rows.end(self.start + index + 1)]

    def others(self) -> Iterator[Outcome]:
        """The outcomes of the rows that are not ``PACKED``, in order."""
        return filter(None, self.rows.others[self.start : self.stop])

    def tally(self, fallthrough: int = 0, actors_degraded: int = 0) -> Tally:
        """``Tally.of(self, fallthrough, actors_degraded)``, counted on the arrays."""
        rest = Tally.of(self.others())
        packed = self.rows.kinds.count(b"M", self.start, self.stop)
        return Tally(
            len(self), rest.migrated + packed, rest.skipped, rest.failed, fallthrough, actors_degraded
        )


def pack_outcomes(
    outcomes: Iterable[Outcome],
    encode: Callable[[ActivityLog], ActivityLog | EncodedLog] | None = None,
    *,
    other: Callable[[Outcome], Any] | None = None,
) -> PackedOutcomes:
    """``outcomes`` packed, each migrated ``ActivityLog`` first given to ``encode`` (a worker's
    ``usecases.pages.encode_ahead``). ``other`` (default: as it is) is what ``others`` keeps of a row
    that is not ``PACKED`` (the page pool's wire sends a ``Skipped`` or ``Failed`` as a tuple)."""
    ids: array[int] = array("q")
    kinds = bytearray()
    actions: list[str] = []
    named = bytearray()
    sizes: array[int] = array("q")
    lines: list[bytes] = []
    others: list[Any] = []
    shared: tuple[str, str, str, str] | None = None
    for outcome in outcomes:
        audit_id = outcome.audit_id
        ids.append(audit_id)
        kind = OTHER
        if type(outcome) is Migrated:
            kind = LOG
            log = outcome.log
            if encode is not None and type(log) is ActivityLog:
                log = encode(log)
            if type(log) is EncodedLog and not log.problem:
                if shared is None:
                    shared = _shared(log, audit_id)
                if shared is not None and (
                    log.company_sso_id == shared[0]
                    and log.encoding == shared[1]
                    and log.source_tag == shared[2]
                    and log.external_id == f"{shared[3]}{audit_id}"
                ):
                    kinds.append(PACKED)
                    actions.append(log.action)
                    named.append(log.named)
                    sizes.append(len(log.data))
                    lines.append(log.data)
                    others.append(None)
                    continue
            if log is not outcome.log:  # kept as the log it was encoded to (a LOG row)
                outcome = Migrated(audit_id, log)
        elif isinstance(outcome, Migrated):
            # A subclass of Migrated is a LOG, kept as it is: written and counted row by row, as
            # every path counts a Migrated (isinstance). As an OTHER row it would be counted
            # migrated (Tally.of) but never written, nor counted against the batch size.
            kind = LOG
        kinds.append(kind)
        actions.append("")
        named.append(0)
        sizes.append(0)
        others.append(outcome if other is None else other(outcome))
    rows = PackedRows(
        ids, bytes(kinds), actions, bytes(named), sizes, b"".join(lines), others, shared or ("", "", "", "")
    )
    return PackedOutcomes(rows)


def _shared(log: EncodedLog, audit_id: int) -> tuple[str, str, str, str] | None:
    tail = str(audit_id)
    if not log.external_id.endswith(tail):
        return None
    return log.company_sso_id, log.encoding, log.source_tag, log.external_id[: -len(tail)]


def join(parts: Sequence[Sequence[Outcome]]) -> Sequence[Outcome]:
    """The outcomes of ``parts`` one after another: one ``PackedOutcomes`` when every part is a view
    of rows with the same shared fields (their arrays joined), else a tuple."""
    if not parts:
        return ()
    if len(parts) == 1 and isinstance(parts[0], PackedOutcomes):
        return parts[0]
    views = [part for part in parts if isinstance(part, PackedOutcomes)]
    if len(views) != len(parts) or len({view.rows.shared for view in views if view.has_packed}) > 1:
        return tuple(itertools.chain.from_iterable(parts))
    ids: array[int] = array("q")
    sizes: array[int] = array("q")
    kinds, named, data = bytearray(), bytearray(), bytearray()
    actions: list[str] = []
    others: list[Any] = []
    shared: tuple[str, str, str, str] = ("", "", "", "")
    for view in views:
        rows, start, stop = view.rows, view.start, view.stop
        if view.has_packed:
            shared = rows.shared
        ids.extend(rows.ids[start:stop])
        kinds += rows.kinds[start:stop]
        actions += rows.actions[start:stop]
        named += rows.named[start:stop]
        sizes.extend(rows.sizes[start:stop])
        data += view.lines()
        others += rows.others[start:stop]
    return PackedOutcomes(
        PackedRows(ids, bytes(kinds), actions, bytes(named), sizes, bytes(data), others, shared)
    )


def association_counts(outcomes: PackedOutcomes, association: Iterable[str]) -> tuple[int, int]:
    """``(logs, named)``: how many ``PACKED`` rows of ``outcomes`` are association logs (their
    action one of ``association``), and how many of those are named."""
    counts = Counter(outcomes.packed_actions())
    wanted = set(association)
    logs = sum(count for (action, _), count in counts.items() if action in wanted)
    named = sum(count for (action, flag), count in counts.items() if action in wanted and flag)
    return logs, named
