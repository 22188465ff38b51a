"""``built_once``: a lazy attribute built once per object however many threads ask for it first."""

from __future__ import annotations

import threading
import time

import pytest

from crm_audit_adapters.bootstrap import Runtime
from crm_audit_adapters.built_once import built_once
from crm_audit_adapters.observability.ports import ObservedPorts

THREADS = 8


class Lazy:
    """Counts its builds; each build waits a little, so concurrent first reads overlap."""

    def __init__(self) -> None:
        self.builds = 0
        self.fail_next = False

    @built_once
    def session(self) -> object:
        """A port that must exist once (a database session)."""
        self.builds += 1
        time.sleep(0.05)  # a connection being opened: every thread asks meanwhile
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("down")
        return object()

    @built_once
    def source(self) -> tuple[object]:
        return (self.session,)  # one lazy attribute built from another, under its own lock


def first_reads(read: object) -> list[object]:
    """``read()`` from ``THREADS`` threads released together: what each got."""
    start = threading.Barrier(THREADS)
    got: list[object] = []

    def run() -> None:
        start.wait()
        got.append(read())  # type: ignore[operator]

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return got


class TestBuiltOnce:
    def test_concurrent_first_reads_build_once_and_share_the_value(self) -> None:
        """Eight threads reading at once get one object, built once (``functools.cached_property``
        builds it once per thread from Python 3.12, which removed its lock)."""
        lazy = Lazy()
        got = first_reads(lambda: lazy.session)
        assert lazy.builds == 1
        assert all(value is got[0] for value in got)

    def test_a_build_that_reads_another_lazy_attribute_does_not_deadlock(self) -> None:
        """``source`` reads ``session`` while being built, from many threads at once."""
        lazy = Lazy()
        got = first_reads(lambda: lazy.source)
        assert lazy.builds == 1
        assert all(value is got[0] for value in got)

    def test_a_failed_build_keeps_nothing_and_the_next_read_builds_again(self) -> None:
        """As ``cached_property``: the error goes to the reader, nothing is cached."""
        lazy = Lazy()
        lazy.fail_next = True
        with pytest.raises(ConnectionError):
            _ = lazy.session
        assert "session" not in lazy.__dict__
        assert lazy.session is lazy.session
        assert lazy.builds == 2

    def test_the_class_attribute_is_the_descriptor_with_the_builders_doc(self) -> None:
        assert isinstance(Lazy.__dict__["session"], built_once)
        assert Lazy.session.__doc__ == "A port that must exist once (a database session)."


@pytest.mark.parametrize(("cls", "name"), [(Runtime, "_pg"), (Runtime, "service"), (ObservedPorts, "users")])
def test_the_runtimes_lazy_ports_are_built_once(cls: type, name: str) -> None:
    """The composition root's lazily built ports (and the observed ones over them) use ``built_once``."""
    assert isinstance(cls.__dict__[name], built_once)
