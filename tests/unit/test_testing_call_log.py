"""The in-memory ports' call record stays bounded over a long run."""

from __future__ import annotations

from crm_audit_transform.testing.lookups import CallLog, InMemoryContactDirectory


class TestCallLog:
    def test_it_compares_like_the_list_of_calls_made(self) -> None:
        """Below its bound the record is exactly the calls, in order, equal to a plain list."""
        contacts = InMemoryContactDirectory()
        contacts.contacts_by_crm_ids("co", [1, 2])
        contacts.contacts_by_crm_ids("co", [3])
        assert contacts.calls == [("co", (1, 2)), ("co", (3,))]
        assert contacts.calls.total == 2

    def test_a_long_run_keeps_the_recent_calls_and_counts_them_all(self) -> None:
        """Past twice its bound the oldest calls are dropped; the newest stay and the total counts all."""
        log: CallLog[int] = CallLog(keep=10)
        for call in range(1000):
            log.record(call)
        assert 10 <= len(log) < 20
        assert log[-10:] == list(range(990, 1000))
        assert log.total == 1000
