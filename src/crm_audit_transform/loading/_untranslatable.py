"""``UntranslatableText``: a text value whose bytes are no text in its source's encoding."""

from __future__ import annotations

from attrs import frozen


@frozen
class UntranslatableText:
    """A text value holding a byte sequence that is no character in its source's ``encoding``.

    A database of a single-byte encoding stores any byte but NUL in a text: in ``WIN1252`` the bytes
    0x81, 0x8d, 0x8f, 0x90 and 0x9d are no character, and PostgreSQL itself converts such a value
    to no other encoding (its error 22P05, "character with byte sequence 0x81 in encoding
    "WIN1252" has no equivalent in encoding "UTF8""). A source hands the value over as this
    instead of failing its whole read: ``encoding`` (the source's name for it, PostgreSQL's
    ``WIN1252``), ``size`` (the value's bytes there), ``offset`` (0-based, of the first sequence that
    is no character) and that ``sequence`` — never the rest of the value.

    In ``audited_changes`` the loader refuses it as ``BadEncoding``; in another text column of an
    ``AuditRow`` the transformer fails the row as ``invalid_audit_row``.
    """

    encoding: str
    size: int
    offset: int
    sequence: bytes

    def __str__(self) -> str:
        shown = " ".join(f"0x{byte:02x}" for byte in self.sequence)
        return (
            f"character with byte sequence {shown} in encoding {self.encoding} has no equivalent in"
            f" UTF-8 (at offset {self.offset} of {self.size} bytes)"
        )
