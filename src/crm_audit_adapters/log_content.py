"""A migrated log's content as a reader stores it: each field in the reader's own encoding.

``crm_audit_transform.verification.drifted_fields`` compares two such mappings field by field, a
``metadata`` key an entry of its own (``METADATA_PREFIX``). The JSONL reader's fields are JSON text
(``files.verification.LineContent``), the MongoDB reader's BSON bytes
(``mongo.verification.BsonContent``); both build the mapping only when a comparison needs it, and
two contents whose whole encodings are byte-equal are equal without it.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping

from crm_audit_transform.domain import ActivityLog
from crm_audit_transform.verification import METADATA_PREFIX

__all__ = ["EncodedContent", "encoded_fields"]


def encoded_fields(
    doc: Mapping[str, object], encode: Callable[[object], object], *, skip: str | None = None
) -> dict[str, object]:
    """Every field of ``doc`` but ``skip``, as ``encode`` gives it, a ``metadata`` mapping's keys
    each an entry of their own (``metadata.<key>``): the shape ``drifted_fields`` compares, so a field
    the sink comes to write is compared too."""
    content: dict[str, object] = {}
    for name, value in doc.items():
        if name == skip:
            continue
        if name == "metadata" and isinstance(value, Mapping):
            for key, item in value.items():
                content[METADATA_PREFIX + key] = encode(item)
            continue
        content[name] = encode(value)
    return content


class EncodedContent(Mapping[str, object]):
    """A log's fields in one encoding, as a mapping computed on first use (``_fields_now``).

    ``==`` with another content of the same class is True at once when both know their whole
    encoding (``whole``) and it is byte for byte the same (every field then is); otherwise it
    compares the mappings. ``log`` is the recomputed log the content was made from
    (``MigratedLogReader.content_of``), or None for a stored one.
    """

    __slots__ = ("_fields", "log")

    def __init__(self, log: ActivityLog | None) -> None:
        self._fields: dict[str, object] | None = None
        self.log = log

    @property
    @abstractmethod
    def whole(self) -> bytes | None:
        """The whole encoded document, or None where it is not known."""

    @abstractmethod
    def _fields_now(self) -> dict[str, object]:
        """The mapping, computed: called once, on first use."""

    def _content(self) -> dict[str, object]:
        if self._fields is None:
            self._fields = self._fields_now()
        return self._fields

    def __getitem__(self, name: str) -> object:
        return self._content()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._content())

    def __len__(self) -> int:
        return len(self._content())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, type(self)):
            whole = self.whole
            if whole is not None and whole == other.whole:
                return True
        return Mapping.__eq__(self, other)

    __hash__ = None  # type: ignore[assignment]  # a mapping: unhashable, as dict
