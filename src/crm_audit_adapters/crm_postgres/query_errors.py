"""Which PostgreSQL errors a retry cannot change, by SQLSTATE class (PostgreSQL's "Error Codes"
appendix), and the ``SourceQueryFailed`` each becomes.

A dropped connection, a statement timeout, a deadlock, a server out of memory or shutting down
(classes 08, 57, 40, 53, 58…) may pass: the session retries them and then raises
``SourceUnavailable``, which Celery retries too. The classes below fail the same query the same way
on every attempt — a value the query cannot convert, a column or function that is not there — so
they were retried for nothing, a Celery task for up to an hour, as an outage. A class not listed
keeps that behaviour: retrying what might pass is the safe side. A 0A000 is tried again on a new
connection first (``ReadOnlySession``: a prepared statement's stale plan after the table's DDL), and
is ``SourceQueryFailed`` only after the last attempt. A class 42 met by a query built from the
tenant's checks is built and run once more after the checks run again (``ReadOnlySession.run_checked``:
a deploy's DDL since they ran). An audit query that meets 54000 is built once more measuring jsonb
without rendering it (``PostgresAuditSource``: a value whose text passes 1 GiB), and is
``SourceQueryFailed`` only if that one meets it too.
"""

from __future__ import annotations

from typing import Final

import psycopg

from crm_audit_transform.errors import SourceQueryFailed

PERMANENT_CLASSES: Final = {
    "0A": "feature not supported",
    "21": "cardinality violation",
    "22": "data exception",
    "2F": "SQL routine exception",
    "38": "external routine exception",
    "39": "external routine invocation exception",
    "42": "syntax error or access rule violation",
    "54": "program limit exceeded",
}
"""SQLSTATE class (the code's first two characters) → its name in PostgreSQL's appendix."""


def query_failed(exc: BaseException) -> SourceQueryFailed | None:
    """``SourceQueryFailed`` for a server error of a ``PERMANENT_CLASSES`` class, else None (an error
    psycopg raised itself has no SQLSTATE: None). ``42501`` (a missing grant) is the caller's
    ``ConnectionRejected``, checked before this."""
    sqlstate = exc.sqlstate if isinstance(exc, psycopg.Error) else None
    if sqlstate is None or sqlstate[:2] not in PERMANENT_CLASSES:
        return None
    return SourceQueryFailed(sqlstate, PERMANENT_CLASSES[sqlstate[:2]])
