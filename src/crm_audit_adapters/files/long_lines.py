"""A JSONL line too long to hold, read for the members a reader needs, never held whole.

A lookup file's line (a user, a contact, an SSO entry) may hold a member nobody reads that is longer
than a line may be (``lines.MAX_LINE_BYTES``): an export's extra column, a contact's other fields as
``mongoexport`` writes them without ``--fields``. Such a line is read on in blocks and its top-level
members are followed one by one: the members the reader names are kept, each up to ``MEMBER_BYTES``,
and the others are passed over unread. What is kept is given back as a short line of the same
members, as written, in order, which the reader then reads as any other line: the record is the one
the whole line makes, without the members it does not read.

A member whose name is not UTF-8 is given back too, as its name and ``null`` (a name past
``_KEY_BYTES`` as a stand-in of 19 bytes, not UTF-8 either, one for each name as written): such a
name may be any column, as in a line short enough to hold (``lines.not_utf8_members``), so the short
line is not UTF-8 either and its reader takes it as it takes such a line. A first line's byte order
mark is passed over, as ``lines.decode`` passes it over in a short one. A kept member is measured by
what it holds: its bytes less its blanks outside strings, at any depth (``"id": 2`` followed by a
MiB of spaces is ``2``), each run of them kept as one blank.

A kept member holding more than ``MEMBER_BYTES``, or a line that is not one JSON object, cannot be
read that way: the line is refused (``FileFormatError`` naming it), never skipped; or, asked to
(``long_members``: the audits reader, which counts the line as one record, and the lookup readers,
which pass another tenant's over), a line whose kept members are too long is read on to its end and
given back as a ``LongMembersLine`` naming them. A member
passed over is checked for its strings and its brackets' nesting only: a bare word inside it
(``[1, xyz]``) is not seen, where ``json.loads`` of the whole line would refuse it.
"""

from __future__ import annotations

import codecs
import enum
import json
import re
from collections.abc import Callable, Collection
from typing import Final

from crm_audit_transform.json_scan import outside_strings

from .errors import FileFormatError
from .lines import LONG_LINE_HEAD, PathLike

MEMBER_BYTES: Final = LONG_LINE_HEAD
"""The longest member kept from a long line (1 MiB): an id, an email, a name, a time."""

_KEY_BYTES: Final = 4096
"""A key longer than this is no key a reader names (the longest, ``company_sso_id``, is 86 bytes
written with ``\\u`` escapes): it is passed over with its value, never held, read as the line held
whole reads it (``_LongKey``): a JSON string (escapes, no control characters), else the line is not
one JSON object; not UTF-8, it may be any column's name, as in a held line."""
_BLANKS: Final = re.compile(rb"[ \t\r\n]{2,}")
# A whole string (kept as written) or a run of blanks outside strings (kept as one blank).
_STRING_OR_BLANKS: Final = re.compile(rb'("[^"\\]*+(?:\\.[^"\\]*+)*+")|[ \t\r\n]{2,}', re.S)


class MembersTooLong(FileFormatError):
    """``skim_long_line``'s refusal of a line for its kept members too long to keep, not for being no
    JSON object: such a line may still be read whole where its length allows
    (``verification.StoredLine``)."""


class LongMember(enum.Enum):
    """What ``lines.json_objects`` gives for a kept member of a long line that was too long to keep
    (``LongMembersLine``): a string, or another value (a number, an array, an object)."""

    STRING = enum.auto()
    OTHER = enum.auto()


class LongMembersLine(bytes):
    """The short line of a long one (``skim_long_line(long_members=True)``) less its kept members too
    long to keep: ``long`` maps each one's name to its ``LongMember``."""

    long: dict[str, LongMember]


# A JSON string's text as ``json.loads`` takes it (quotes and all: a key's are its first and last
# bytes), and the start of an escape a block may cut.
_JSON_STRING_TEXT: Final = re.compile(rb'(?:[^\\\x00-\x1f]++|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*+')
_CUT_ESCAPE: Final = re.compile(rb"\\(?:u[0-9a-fA-F]{0,3})?")


class _LongKey:
    """A key past ``_KEY_BYTES``, read on without being held: whether its bytes are UTF-8, whether they
    are a JSON string's (``valid``), and a digest of them, so that its stand-in names it as one name
    (the same name twice is one member)."""

    __slots__ = ("cut", "decoder", "digest", "utf8", "valid")

    def __init__(self) -> None:
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        # Imported here, not with the module: a dry run reads long lines' constants, and loading
        # hashlib (OpenSSL's _hashlib) is start-up time it never needs (tests/e2e/test_cli_imports).
        import hashlib

        self.digest = hashlib.blake2b(digest_size=8)
        self.utf8 = True
        self.valid = True
        self.cut = b""  # an escape the last piece ended in, checked with the next one

    def feed(self, piece: bytes, *, final: bool = False) -> None:
        self.digest.update(piece)
        if self.valid:
            text = self.cut + piece if self.cut else piece
            end = _JSON_STRING_TEXT.match(text).end()  # type: ignore[union-attr]  # matches b""
            self.cut = text[end:]
            if self.cut and (final or _CUT_ESCAPE.fullmatch(self.cut) is None):
                self.valid = False  # a control character, or an escape JSON has not (\x, \u12G4)
        if self.utf8:
            try:
                self.decoder.decode(piece, final)
            except UnicodeDecodeError:
                self.utf8 = False

    def stand_in(self) -> bytes:
        """A JSON string not UTF-8 (``lines.not_utf8`` reads it as bytes) naming this key alone."""
        return b'"\xff' + self.digest.hexdigest().encode() + b'"'


# The body of a JSON string up to its closing quote (unrolled: no backtracking), and what ends a run
# of a value outside strings.
_STRING_BODY: Final = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*', re.S)
_VALUE_STOP: Final = re.compile(rb'["{}\[\],]')
_SPACE: Final = frozenset(b" \t\r\n")
_SPACES: Final = re.compile(rb"[ \t\r\n]+")
_NOT_BRACKETS: Final = bytes(set(range(256)) - set(b"[]{}"))
_CLOSER: Final = bytes.maketrans(b"[{", b"]}")
_INSIDE_BYTES: Final = 64
"""The shortest text inside a value read at once (``_Scan._inside``): a shorter one, a bracket a step."""
_PASSES: Final = 16
_PIECE: Final = 1 << 16

# Where the scan is: before the object, before a key, in a key, before its colon, in a value, after
# the object (only whitespace may follow).
_BEFORE, _KEY_START, _KEY, _COLON, _VALUE, _AFTER = range(6)


class _Scan:
    """The state of one line's scan, fed block by block."""

    def __init__(self, keep: Collection[str]) -> None:
        self.keep = frozenset(keep)
        self.state = _BEFORE
        self.closers = bytearray()  # the closing brackets the current value still owes, innermost last
        self.piece = _PIECE  # the bytes inside a value read at once (``_inside``)
        self.in_string = False
        self.escaped = False  # a string's last byte read was a lone backslash
        self.key = bytearray()
        self.key_too_long = False
        self.long_key = _LongKey()
        self.value = bytearray()
        self.blanks = 0  # the blanks outside strings kept in ``value``: not counted in its size
        self.keeping = False
        self.not_utf8 = False  # the current member's name is not UTF-8: given back as its name and null
        self.name = ""  # the current member's key
        self.seen = 0  # members read
        self.members: list[tuple[str, bytes]] = []  # (its name, or "" for a name not UTF-8; its text)
        self.too_long: dict[str, LongMember] = {}
        self.malformed = False

    def feed(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end and not self.malformed:
            if self.in_string:
                pos = self._string(data, pos)
                continue
            state = self.state
            if state == _VALUE:
                pos = self._value(data, pos)
                continue
            char = data[pos]
            if char in _SPACE:  # a run at once: a step a blank took ~0.4 s a MiB of them
                pos = _SPACES.match(data, pos).end()  # type: ignore[union-attr]  # it starts one
            elif state == _BEFORE and char == 0x7B:  # {
                self.state, pos = _KEY_START, pos + 1
            elif state == _KEY_START and char == 0x22:  # a key's opening quote
                self.key.clear()
                self.key += b'"'
                self.key_too_long = False
                self.state, self.in_string, pos = _KEY, True, pos + 1
            elif state == _KEY_START and char == 0x7D and not self.seen:
                self.state, pos = _AFTER, pos + 1  # {} (a comma before } is no object)
            elif state == _COLON and char == 0x3A:  # :
                self.value.clear()
                self.blanks = 0
                self.keeping = self._wanted()
                self.state, pos = _VALUE, pos + 1
            else:
                self.malformed = True

    def _wanted(self) -> bool:
        self.not_utf8 = False
        if self.key_too_long:
            self.long_key.feed(b"", final=True)
            if not self.long_key.valid:  # as json.loads refuses it in the line held whole
                self.malformed = True
                return False
            if not self.long_key.utf8:  # as a short line's name not UTF-8: any column's, maybe
                self.not_utf8 = True
                self.key[:] = self.long_key.stand_in()
            return False
        key = bytes(self.key)
        try:  # a key's text, escapes and all
            name = json.loads(key)
        except UnicodeDecodeError:
            # Read as a short line's name is (``lines.escaped``): a JSON string all the same?
            try:
                json.loads(key.decode("utf-8", "surrogateescape"))
            except ValueError:
                self.malformed = True
            else:
                self.not_utf8 = True
            return False
        except ValueError:
            self.malformed = True
            return False
        self.name = name
        return isinstance(name, str) and name in self.keep

    def _string(self, data: bytes, pos: int) -> int:
        """Read a string's body on from ``pos``; the position after its closing quote, or the end."""
        start = pos
        if self.escaped:  # the escaped byte is the first of this block
            self.escaped, pos = False, pos + 1
        body = _STRING_BODY.match(data, pos)
        assert body is not None  # the pattern matches the empty string
        pos = body.end()
        if pos < len(data) and data[pos] == 0x5C:  # a backslash ends the block: it escapes the next one
            self.escaped, pos = True, pos + 1
        closed = pos < len(data) and data[pos] == 0x22
        if closed:
            pos += 1
            self.in_string = False
        self._take(data[start:pos])
        if closed and self.state == _KEY:
            self.state = _COLON
        return pos

    def _take(self, piece: bytes) -> None:
        """Keep ``piece`` of the current key or kept value, while it stays within its bound."""
        if self.state == _KEY:
            if self.key_too_long:
                self.long_key.feed(piece)
                return
            self.key += piece
            if len(self.key) > _KEY_BYTES:
                self.key_too_long = True
                self.long_key = _LongKey()
                self.long_key.feed(bytes(self.key))
        elif self.keeping:
            self.value += piece
            if len(self.value) - self.blanks > MEMBER_BYTES:
                string = self.value.lstrip()[:1] == b'"'
                self.too_long[self.name] = LongMember.STRING if string else LongMember.OTHER
                # As json.loads reads a repeated key, the last counts: an earlier one kept is not.
                self.members = [(name, text) for name, text in self.members if name != self.name]
                self.keeping = False
                self.value.clear()
                self.blanks = 0

    def _outside(self, piece: bytes, *, strings: bool = False) -> bytes:
        """``piece`` of a value outside its strings (or holding whole ones, ``strings``: ``_inside``),
        when kept each run of blanks outside its strings one blank, none before the value or after a
        blank it ends in, and those it keeps counted in ``blanks``: a member's size is what it holds,
        its bytes less its blanks outside strings, at any depth (``"id":`` a MiB of blanks ``2`` is
        ``2``, of size 1; ``{"id": 2`` a MiB of blanks ``}`` is ``{"id": 2 }``, of size 8)."""
        if not self.keeping:
            return piece
        if _BLANKS.search(piece) is not None:
            if strings:
                piece = _STRING_OR_BLANKS.sub(lambda found: found.group(1) or b" ", piece)
            else:
                piece = _BLANKS.sub(b" ", piece)
        if not self.value or self.value[-1] in _SPACE:
            piece = piece.lstrip(b" \t\r\n")  # a run of blanks the last piece ended, or leading
        bare = b"".join(outside_strings(piece, 0, len(piece))[0]) if strings else piece
        self.blanks += len(bare) - len(bare.translate(None, b" \t\r\n"))
        return piece

    def _value(self, data: bytes, pos: int) -> int:
        """Read a value on from ``pos``: to its end at this object's ``,`` or ``}``, or the block's."""
        if self.closers and (inside := self._inside(data, pos)) > pos:
            return inside
        stop = _VALUE_STOP.search(data, pos)
        if stop is None:
            self._take(self._outside(data[pos:]))
            return len(data)
        at = stop.start()
        char = data[at]
        self._take(self._outside(data[pos:at]))
        if char == 0x22:
            self._take(b'"')
            self.in_string = True
            return at + 1
        if char in (0x7B, 0x5B):  # { [ open a nested value
            self.closers.append(0x7D if char == 0x7B else 0x5D)
            self._take(data[at : at + 1])
        elif self.closers:  # , } ] inside a nested value
            if char != 0x2C and self.closers.pop() != char:  # [1, 2} or {"a": ]
                self.malformed = True
            self._take(data[at : at + 1])
        elif char == 0x5D:  # ] closing nothing
            self.malformed = True
        else:  # , or } ending this member
            self._member_end()
            self.state = _KEY_START if char == 0x2C else _AFTER
        return at + 1

    def _inside(self, data: bytes, pos: int) -> int:
        """Past the text from ``pos`` that stays inside the brackets the value has open and pairs its
        own alike, its strings passed over whole, read in C; else ``pos``, for the step a bracket way
        (it ends the value there, is malformed, nests deeper than ``_PASSES`` drop, or a string the
        block cuts starts at ``pos``). Up to ``piece`` bytes at once, ending before a string it would
        cut (``json_scan.outside_strings``): halved where it fails, down to ``_INSIDE_BYTES``, doubled
        again where it reads. A step a bracket read a 24 MB member of ``[],`` in over a minute, and
        one a string of ``"",`` or ``["a"],`` ~20 steps a byte."""
        end = min(len(data), pos + self.piece)
        while end - pos >= _INSIDE_BYTES:
            parts, cut = outside_strings(data, pos, end)
            if cut == pos:
                return pos  # a string from here past the block's end: read as a string
            if self._within(b"".join(parts)):
                self._take(self._outside(data[pos:cut], strings=True))
                self.piece = min(2 * self.piece, _PIECE)
                return cut
            self.piece = max(self.piece // 2, _INSIDE_BYTES)
            end = pos + (end - pos) // 2
        return pos

    def _within(self, text: bytes) -> bool:
        """Whether ``text`` (its strings cut out) stays inside the value's open brackets, pairing its
        own alike; then its brackets left open are the value's too."""
        bare = text.translate(None, _NOT_BRACKETS)
        for _ in range(_PASSES):
            if b"[]" not in bare and b"{}" not in bare:
                break
            bare = bare.replace(b"[]", b"").replace(b"{}", b"")
        opening = bare.lstrip(b"]}")
        closing = len(bare) - len(opening)
        if closing >= len(self.closers) or opening.translate(None, b"[{"):
            return False  # it may end the value, pairs brackets of two kinds, or is not all dropped
        if closing and bare[:closing] != bytes(reversed(self.closers[-closing:])):
            return False  # it closes one of the value's brackets with the other kind: malformed
        del self.closers[len(self.closers) - closing :]
        self.closers += opening.translate(_CLOSER)
        return True

    def _member_end(self) -> None:
        self.seen += 1
        if self.not_utf8:
            self.members.append(("", bytes(self.key) + b":null"))
            self.not_utf8 = False
        if self.keeping:
            value = bytes(self.value).strip()
            if not value:
                self.malformed = True
            self.members.append((self.name, bytes(self.key) + b":" + value))
            self.too_long.pop(self.name, None)  # the last of a repeated key counts
        self.keeping = False


def skim_long_line(
    path: PathLike,
    number: int,
    first: bytes,
    readline: Callable[[int], bytes],
    keep: Collection[str],
    max_bytes: int,
    *,
    long_members: bool = False,
) -> bytes:
    """The short line of ``keep``'s members of a line longer than ``max_bytes``, whose ``first``
    bytes were read and whose rest ``readline`` gives (read on to the line's end, in blocks).

    ``FileFormatError`` naming the line when it is not one JSON object, or when a member named in
    ``keep`` is longer than ``MEMBER_BYTES`` (``MembersTooLong``): its record cannot be read without
    holding the line. With ``long_members``, such a line is read on to its end all the same and given
    back as a ``LongMembersLine`` naming those members, for its reader to count it as one record:
    passed over (another tenant's), its row's failure, or a stop naming it.
    """
    scan = _Scan(keep)
    scan.feed(first[len(codecs.BOM_UTF8) :] if number == 1 and first.startswith(codecs.BOM_UTF8) else first)
    rest = first
    # Read on only while the line may still be read: a line known to be malformed, or to hold a kept
    # member too long, is refused now, so an endless one (/dev/zero) does not hold the read for ever.
    while rest and not rest.endswith(b"\n") and not scan.malformed and (long_members or not scan.too_long):
        rest = readline(LONG_LINE_HEAD)
        scan.feed(rest)
    why = f"line longer than {max_bytes} bytes"
    if scan.too_long and not long_members:
        names = ", ".join(sorted(scan.too_long))
        raise MembersTooLong(
            path, number, f"{why}, and its {names} longer than {MEMBER_BYTES} bytes: it cannot be read"
        )
    if scan.malformed or scan.in_string or scan.state != _AFTER:
        raise FileFormatError(path, number, f"{why}, and not one JSON object: it cannot be read")
    short = b"{" + b",".join(text for _, text in scan.members) + b"}\n"
    if not scan.too_long:
        return short
    marked = LongMembersLine(short)
    marked.long = scan.too_long
    return marked
