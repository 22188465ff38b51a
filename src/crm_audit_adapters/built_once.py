"""``built_once``: an attribute built on first use, once per object, whichever threads ask first.

``functools.cached_property`` held a lock until Python 3.12, which removed it (one lock for every
instance of a class, it serialized unrelated objects): from 3.12 two threads that ask for an
attribute first at the same moment each build it, and one of the two built objects is dropped. For
the runtime's ports that is a second database session, client or pool, opened and never closed
(the HTTP app serves requests on a thread pool, and its first requests come together). Here the
build runs under a lock of the object and the attribute (reentrant: one port's build may ask for
another, ``source`` for ``_pg``), so it runs once on every Python the project supports; once
built, the value sits in the object's ``__dict__`` and is read from there, with no lock and no call,
as ``cached_property``'s is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar, overload

__all__ = ["built_once"]

T = TypeVar("T")

_LOCKS: Final = "__built_once_locks__"
"""The ``__dict__`` key of an object's locks, one per attribute (not an identifier: never an attribute)."""
_MAKING_LOCKS: Final = threading.Lock()


class built_once(Generic[T]):
    """A non-data descriptor: ``build(obj)`` on the first read of the attribute, under a lock, kept
    in ``obj.__dict__``. An exception from ``build`` is raised to the reader and nothing is kept, so
    the next read builds again (as ``cached_property``)."""

    def __init__(self, build: Callable[[Any], T]) -> None:
        self._build = build
        self._name = build.__name__
        self.__doc__ = build.__doc__

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self._name = name

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> built_once[T]: ...

    @overload
    def __get__(self, instance: object, owner: type[Any] | None = None) -> T: ...

    def __get__(self, instance: object, owner: type[Any] | None = None) -> T | built_once[T]:
        if instance is None:
            return self
        values = instance.__dict__
        name = self._name
        if name in values:  # built meanwhile by another thread (the usual read never gets here)
            return values[name]  # type: ignore[no-any-return]
        with _lock(values, name):
            if name in values:
                return values[name]  # type: ignore[no-any-return]
            value = self._build(instance)
            values[name] = value
            return value


def _lock(values: dict[str, Any], name: str) -> threading.RLock:
    """The object's lock for attribute ``name``, made on first need (under a lock of this module's:
    two threads must never make one each)."""
    locks: dict[str, threading.RLock] | None = values.get(_LOCKS)
    lock = locks.get(name) if locks is not None else None
    if lock is None:
        with _MAKING_LOCKS:
            made: dict[str, threading.RLock] = values.setdefault(_LOCKS, {})
            lock = made.setdefault(name, threading.RLock())
    return lock
