"""Per-row outcomes of a dry run: the ``--outcomes FILE`` lines.

Every processed row gets one JSON line ``{"audit_id", "tenant", "outcome", "reason", "detail"}``
(``outcome`` is ``migrated``, ``skipped`` or ``failed``; a migrated row's ``detail`` is its
``external_id``), so an operator can find every failed id. Rows the audits file itself disqualifies
(``crm_audit_adapters.files.CheckedRows``) get theirs too, and are counted in the report:

* a repeated audit id: its first line is the one read (processed when in the run's scope), every
  repeat is ``Failed(duplicate_audit_id)``, so no repeat is dropped unseen;
* a line whose audit id could be read but that cannot become a row (a missing ``action``, an id
  spelled ``1_0``, …) is ``Failed(invalid_audit_row)`` with the file's message. A line with no
  readable id cannot be tied to a row and still stops the dry run (exit 7).

A line whose texts hold a name that is not UTF-8 is written as ``strict_json`` says: valid
UTF-8, each odd byte shown as U+FFFD, the exact bytes in its ``not_utf8`` member.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from crm_audit_transform.domain import Migrated, Outcome, Skipped
from crm_audit_transform.packed import PACKED, PackedOutcomes

from ..strict_json import dumps, has_surrogate
from .exit_codes import CliError


def outcome_record(outcome: Outcome, tenant: str) -> dict[str, object]:
    """The ``--outcomes`` line of one outcome, as a dict."""
    if isinstance(outcome, Migrated):
        return {
            "audit_id": outcome.audit_id,
            "tenant": tenant,
            "outcome": "migrated",
            "reason": None,
            "detail": outcome.log.external_id,
        }
    kind = "skipped" if isinstance(outcome, Skipped) else "failed"
    return {
        "audit_id": outcome.audit_id,
        "tenant": tenant,
        "outcome": kind,
        "reason": outcome.reason,
        "detail": outcome.detail,
    }


def packed_lines(outcomes: PackedOutcomes, tenant: str) -> Iterator[str]:
    """The ``--outcomes`` lines of a worker's packed outcomes: a ``PACKED`` row's from the fields its
    line shares with the others (its external id is the prefix and its audit id, whose digits JSON
    does not escape), every other row's as ``outcome_record`` gives it; the same text either way."""
    rows = outcomes.rows
    kinds, ids, others = rows.kinds, rows.ids, rows.others
    head = '{"audit_id": '
    middle = (
        f', "tenant": {json.dumps(tenant, ensure_ascii=False)}, "outcome": "migrated", "reason": null, '
        f'"detail": {json.dumps(rows.prefix, ensure_ascii=False)[:-1]}'
    )
    for index in range(outcomes.start, outcomes.stop):
        if kinds[index] == PACKED:
            number = str(ids[index])
            yield f'{head}{number}{middle}{number}"}}\n'
        else:
            yield json.dumps(outcome_record(others[index], tenant), ensure_ascii=False) + "\n"


class OutcomeLines:
    """Writes outcome lines to ``path`` (or nowhere); a callable for ``run_job``.

    The file is opened, an existing one truncated, at the first outcome or at ``finish``: a dry run
    refused before any row (``UNKNOWN_TENANT``) leaves an existing file as it was. ``close`` closes
    it (a context manager's exit does too).
    """

    __slots__ = ("_path", "_stream", "_tenant")

    def __init__(self, path: Path | None, tenant: str) -> None:
        self._path = path
        self._stream: IO[str] | None = None
        self._tenant = tenant

    def __call__(self, outcomes: Sequence[Outcome]) -> None:
        if self._path is None or not outcomes:
            return
        stream = self._open()
        tenant = self._tenant
        if isinstance(outcomes, PackedOutcomes):
            text = "".join(packed_lines(outcomes, tenant))
        else:
            text = "".join(json.dumps(outcome_record(o, tenant), ensure_ascii=False) + "\n" for o in outcomes)
        if has_surrogate(text):  # a name that is not UTF-8: strict_json's contract, for those lines
            text = "".join(dumps(outcome_record(outcome, tenant)) + "\n" for outcome in outcomes)
        try:
            stream.write(text)
            stream.flush()
        except OSError as exc:
            raise self._failed(exc) from exc

    def finish(self) -> None:
        """The run is done: the file exists (empty when no row had an outcome) and is closed."""
        if self._path is not None:
            self._open()
        self.close()

    def close(self) -> None:
        if self._stream is not None and not self._stream.closed:
            try:
                self._stream.close()
            except OSError as exc:
                raise self._failed(exc) from exc

    def _failed(self, exc: OSError) -> CliError:
        """``FILE_ERROR`` naming the file: a full disk's ``OSError`` names none."""
        return CliError("FILE_ERROR", f"cannot write --outcomes {self._path}: {exc.strerror or exc}")

    def __enter__(self) -> OutcomeLines:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _open(self) -> IO[str]:
        if self._stream is None:
            assert self._path is not None
            from ..files.sink import open_locked_for_writing  # the sink's lock; imported with the sink

            self._stream = open_locked_for_writing(str(self._path))
        return self._stream
