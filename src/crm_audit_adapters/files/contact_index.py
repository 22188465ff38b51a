"""CDP contacts served straight from their JSONL file, with only a compact index in memory.

A dry run over a large tenant needs every contact reachable but only a page's worth at a time, so
the file is scanned once at open: each line is read exactly as ``read_contacts`` reads it (same
errors, same native contacts left out), and per company only sorted person ids and the byte
offsets of their lines are kept (24 bytes a contact instead of a ``Contact`` object). A page then
seeks to and parses just the lines it needs, in file order.

A run's pages ask for the same people again and again (a person's history spans consecutive
pages: about a third of the contacts a 100k-row run asks for were asked by an earlier page), so
the last ``PARSED_CONTACTS`` contacts parsed are kept, most recently used first out last: each is
parsed once per run while it is in use, and the memory stays bounded whatever the file's size.
"""

from __future__ import annotations

import heapq
import json
from array import array
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from itertools import pairwise
from operator import itemgetter
from typing import Any, BinaryIO, Final

import attrs

from crm_audit_transform.domain import Contact

from ..mongo.contact_ids import contact_id_order
from .directories import CONTACT_MEMBERS, contact_id_of_line, parse_contact_line
from .errors import FileFormatError
from .file_marks import FileMark
from .lines import MAX_LINE_BYTES, PathLike, hold_limit, whole_or_long
from .long_lines import MEMBER_BYTES, LongMember, MembersTooLong, skim_long_line

__all__ = ["JsonlContactDirectory"]

# array("q") holds signed 64-bit person ids; a wider one (legal JSON, never seen) goes to a dict.
_Q_MIN, _Q_MAX = -(2**63), 2**63 - 1

SORT_RUN: Final = 4096
"""Contacts of a file not in person id order sorted at a time, before the sorted runs are merged."""
PARSED_CONTACTS: Final = 4096
"""How many parsed contacts a directory keeps (least recently used out first): about 1.5 MB. The
100k-row benchmark's 200 pages asked 7,949 times for a contact an earlier page had asked for, and
an LRU of 1,024 already served every one of them."""


@attrs.define(slots=True)
class _CompanyIndex:
    """One company's contacts with a CRM id: person ids ascending, each with its line's place."""

    ids: array[int] = attrs.field(factory=lambda: array("q"))
    offsets: array[int] = attrs.field(factory=lambda: array("q"))
    numbers: array[int] = attrs.field(factory=lambda: array("q"))
    wide: dict[int, tuple[int, int]] = attrs.field(factory=dict)
    wide_repeats: list[tuple[int, int, int]] = attrs.field(factory=list)
    """``(person id, offset, number)`` of the later contacts of a repeated wide person id, for ``seal``."""

    def add(self, person_id: int, offset: int, number: int) -> None:
        if _Q_MIN <= person_id <= _Q_MAX:
            self.ids.append(person_id)
            self.offsets.append(offset)
            self.numbers.append(number)
        elif person_id in self.wide:  # past int64: not a BSON integer id, kept apart
            self.wide_repeats.append((person_id, offset, number))
        else:
            self.wide[person_id] = (offset, number)

    def seal(self, contact_id_at: Callable[[int, int], _IdOrder]) -> None:
        """Sort by person id; of a repeated id keep the contact MongoDB's directory keeps, the first by
        ``_id`` (``contact_id_at(offset, number)`` reads a line's ``_id``: only repeated ids are read)."""
        if not _strictly_ascending(self.ids):  # a file in person id order (usual) is kept as it is
            self._sort_unique(contact_id_at)
        for person_id, offset, number in self.wide_repeats:  # the same rule for the wide ids
            if contact_id_at(offset, number) < contact_id_at(*self.wide[person_id]):
                self.wide[person_id] = (offset, number)
        self.wide_repeats.clear()

    def _sort_unique(self, contact_id_at: Callable[[int, int], _IdOrder]) -> None:
        # Sorted a run at a time (stable), then the runs merged (heapq.merge takes the earlier run
        # first on ties): file order on ties, as one sort would give. A sort's Python ints cost about
        # 80 bytes a contact; a run's are dropped before the next run is sorted, so a shuffled file
        # costs about one more copy of the index (24 bytes a contact) at its peak, not 113 bytes.
        runs = [self._sorted_run(start) for start in range(0, len(self.ids), SORT_RUN)]
        self.ids, self.offsets, self.numbers = array("q"), array("q"), array("q")
        ids, offsets, numbers = self.ids, self.offsets, self.numbers
        for person_id, offset, number in heapq.merge(
            *(zip(*run, strict=True) for run in runs), key=itemgetter(0)
        ):
            if ids and ids[-1] == person_id:
                kept = contact_id_at(offsets[-1], numbers[-1])
                if contact_id_at(offset, number) < kept:
                    offsets[-1], numbers[-1] = offset, number
                continue
            ids.append(person_id)
            offsets.append(offset)
            numbers.append(number)

    def _sorted_run(self, start: int) -> tuple[array[int], array[int], array[int]]:
        """The places ``start`` to ``start + SORT_RUN``, sorted by person id (stable)."""
        order = sorted(range(start, min(start + SORT_RUN, len(self.ids))), key=self.ids.__getitem__)
        return (
            array("q", map(self.ids.__getitem__, order)),
            array("q", map(self.offsets.__getitem__, order)),
            array("q", map(self.numbers.__getitem__, order)),
        )

    def find(self, person_id: int) -> tuple[int, int] | None:
        """``(offset, line number)`` of the contact carrying ``person_id``, or None."""
        if not _Q_MIN <= person_id <= _Q_MAX:
            return self.wide.get(person_id)
        at = bisect_left(self.ids, person_id)
        if at < len(self.ids) and self.ids[at] == person_id:
            return self.offsets[at], self.numbers[at]
        return None


def _read_line(path: PathLike, stream: BinaryIO, number: int) -> bytes:
    """The line at the stream's position, as ``read_contacts`` reads it: whole, or a line past
    ``MAX_LINE_BYTES`` as the short line of the members a contact is read from (``long_lines``)."""
    limit = hold_limit(stream, MAX_LINE_BYTES)
    raw, long = whole_or_long(stream, stream.readline(limit + 1), limit, MAX_LINE_BYTES)
    if long:
        return skim_long_line(
            path, number, raw, stream.readline, CONTACT_MEMBERS, MAX_LINE_BYTES, long_members=True
        )
    return raw


def _too_long(path: PathLike, number: int, raw: bytes) -> tuple[str | None, MembersTooLong] | None:
    """For a long line whose members a contact is read from were too long to keep (a
    ``long_lines.LongMembersLine``): its company, and the error that refuses it; None for any other.

    The company is None when its ``company_sso_id`` is itself too long to keep (past 1 MiB: no
    company asked for is one). ``MembersTooLong`` is raised now when the line names no company it
    can be told by (none, not a string): it may be any company's."""
    long: dict[str, LongMember] | None = getattr(raw, "long", None)
    if not long:
        return None
    names = ", ".join(sorted(long))
    refused = MembersTooLong(
        path,
        number,
        f"line longer than {MAX_LINE_BYTES} bytes, and its {names} longer than {MEMBER_BYTES} bytes: "
        "it cannot be read",
    )
    if long.get("company_sso_id") is LongMember.STRING:
        return None, refused
    try:
        company = json.loads(raw).get("company_sso_id")
    except ValueError:  # not UTF-8, or a value json cannot build: read as any line is, below
        return None
    if not isinstance(company, str):
        raise refused
    return company, refused


def _strictly_ascending(ids: array[int]) -> bool:
    """Whether every id is greater than the one before it (no repeat): nothing for ``seal`` to do.

    Checked in slices of the array, so a sorted file costs no list of its ids: sorting one built
    two lists of Python ints (about 70 bytes a contact) on top of the index (24 bytes a contact).
    """
    step = 65_536
    for start in range(0, len(ids), step):
        part = ids[start : start + step + 1]  # one id of overlap: the order across slices
        if any(a >= b for a, b in pairwise(part)):
            return False
    return True


_IdOrder = tuple[int, Any]
"""A contact ``_id``'s sort key (``mongo.contact_ids.contact_id_order``)."""


class JsonlContactDirectory:
    """A ``ContactDirectory`` over a contacts JSONL file (plain JSON or ``mongoexport`` output).

    Lines are those ``read_contacts`` accepts; a line it refuses makes opening fail with the same
    ``FileFormatError``. As with the MongoDB directory, when a company has several contacts with
    one person id the first by ``_id`` wins, wherever its line is.
    The file must not change while the directory is in use, but for contacts appended (not in the
    index: not found, as before they were appended): each read of its lines first looks at the file
    (``file_marks.FileMark``, as a file source looks at its audits file) and raises
    ``FileChangedWhileRead`` (a ``FileFormatError``, ``BAD_INPUT``) when it holds fewer bytes than
    when indexed, other bytes in its first 4 KiB or the 4 KiB before that size, or the same bytes
    written or replaced since: a contact read from it then might not be the one indexed, its time or
    ``_id`` another. One ``open``, one ``fstat`` and two reads of 4 KiB a page that reads contacts.

    ``parsed``: how many parsed contacts to keep between pages (``PARSED_CONTACTS``; 0 keeps none).
    """

    def __init__(self, path: PathLike, *, parsed: int = PARSED_CONTACTS) -> None:
        if parsed < 0:
            raise ValueError(f"parsed must be at least 0, got {parsed}")
        self._path = path
        self._companies: dict[str, _CompanyIndex] = {}
        self._keep = parsed
        self._parsed: OrderedDict[int, Contact] = OrderedDict()
        """Contacts by their line's offset, least recently used first."""
        self._refused: dict[str, MembersTooLong] = {}
        """A company's first long line whose members were too long to read: raised when it is asked
        for, so another company's such line never stops this company's run."""
        self._mark = FileMark(path)
        self._mark.check()  # the file as indexed: the first look, before its first byte is read
        with open(path, "rb") as stream:
            number = offset = 0
            while raw := _read_line(path, stream, number + 1):
                number += 1
                if (too_long := _too_long(path, number, raw)) is not None:
                    company, refused = too_long
                    if company is not None:
                        self._refused.setdefault(company, refused)
                    offset = stream.tell()
                    continue
                contact = parse_contact_line(path, number, raw)
                if contact is not None:
                    index = self._companies.get(contact.company_sso_id)
                    if index is None:  # not setdefault: that would build an index for every line
                        index = self._companies[contact.company_sso_id] = _CompanyIndex()
                    index.add(contact.crm_person_id, offset, number)
                offset = stream.tell()  # a long line's short line is not its length
        self._mark.check()  # read to its end as it was: appended to, at most
        for index in self._companies.values():
            index.seal(self._contact_id_at)

    def worker_copy(self) -> JsonlContactDirectory:
        """This directory for a page pool's worker process (``ports.WorkerCopy``): it pickles with
        its index (about 24 bytes a contact), not its parsed contacts, and reads the same file,
        which must not change."""
        return self

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_parsed": OrderedDict()}  # a copy parses its own: none on the pipe

    def _contact_id_at(self, offset: int, number: int) -> _IdOrder:
        """The ``_id`` order of the contact on that line (only a repeated person id's are read)."""
        with open(self._path, "rb") as stream:
            stream.seek(offset)
            raw = _read_line(self._path, stream, number)
        contact = parse_contact_line(self._path, number, raw)
        order = None if contact is None else contact_id_order(contact_id_of_line(self._path, number, raw))
        if order is None:
            raise FileFormatError(self._path, number, "the file changed while it was indexed")
        return order

    def contacts_by_crm_ids(
        self, company_sso_id: str, crm_person_ids: Collection[int]
    ) -> Mapping[int, Contact]:
        if (refused := self._refused.get(company_sso_id)) is not None:
            # One of its contacts cannot be read: it is not skipped. A new error each time, so that
            # none carries the traceback of the last.
            raise MembersTooLong(refused.path, refused.line, refused.message)
        index = self._companies.get(company_sso_id)
        if index is None:
            return {}
        places = sorted(
            (place, person_id)
            for person_id in set(crm_person_ids)
            if (place := index.find(person_id)) is not None
        )
        parsed = self._parsed
        if unread := [(place, person_id) for place, person_id in places if place[0] not in parsed]:
            self._read(company_sso_id, unread)
        found: dict[int, Contact] = {}
        used = parsed.move_to_end
        for (offset, _), person_id in places:  # ascending offsets, as the file reads them
            found[person_id] = parsed[offset]
            used(offset)  # the most recently used: the last out
        while len(parsed) > self._keep:
            parsed.popitem(last=False)  # the least recently used
        return found

    def _read(self, company_sso_id: str, places: list[tuple[tuple[int, int], int]]) -> None:
        """Parse the contacts at ``places`` (``((offset, line number), person id)``, ascending) into
        ``_parsed``."""
        self._mark.check()  # the lines at those offsets are still the ones indexed
        with open(self._path, "rb") as stream:
            for (offset, number), person_id in places:  # ascending offsets: one forward pass
                stream.seek(offset)
                contact = parse_contact_line(self._path, number, _read_line(self._path, stream, number))
                if contact is None or (contact.company_sso_id, contact.crm_person_id) != (
                    company_sso_id,
                    person_id,
                ):
                    raise FileFormatError(self._path, number, "the file changed after it was indexed")
                self._parsed[offset] = contact
