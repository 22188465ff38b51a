# cython: language_level=3, boundscheck=False, wraparound=False
"""The slot writes of ``_fast_init``'s ``__init__``, compiled (optional: ``setup.py`` builds it when it can).

``fast_init`` gives the per-row value classes an ``__init__`` that sets each slot through the slot's
own descriptor: a call of the descriptor's ``__set__`` per field, whose argument tuple, call and
unpacking cost about ten times the write itself. ``SlotWriter.put`` makes the same writes for all
the fields in one call: each value goes to its slot's place in the object, found once from the
class's member descriptors (``slot_offset``), exactly as ``member_descriptor.__set__`` writes it
(the new value held, the old one released after). Without this module ``fast_init`` keeps the
descriptors, with the same objects as a result.
"""

from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE

from types import MemberDescriptorType


cdef extern from "structmember.h":
    ctypedef struct PyMemberDef:
        const char* name
        int type
        Py_ssize_t offset
        int flags
    enum:
        T_OBJECT_EX
        READONLY


cdef extern from "Python.h":
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member


cdef enum:
    _MAX_FIELDS = 64

MAX_FIELDS = _MAX_FIELDS
"""The most fields a ``SlotWriter`` writes (the per-row classes have at most 16)."""


def slot_offset(descriptor: object) -> int:
    """Where a slot's value lies in its objects (bytes from the object's start), read from the
    slot's member descriptor; ``TypeError`` for anything but a writable object slot's descriptor."""
    cdef PyMemberDef* member
    if type(descriptor) is not MemberDescriptorType:
        raise TypeError(f"not a slot's member descriptor: {type(descriptor).__name__}")
    member = (<PyMemberDescrObject*><PyObject*>descriptor).d_member
    if member.type != T_OBJECT_EX or member.flags & READONLY:
        raise TypeError(f"slot {member.name.decode()!r} is not a writable object slot")
    return member.offset


cdef class SlotWriter:
    """Writes the given slots of an instance of ``cls`` in one call (``put``)."""

    cdef type cls
    cdef Py_ssize_t count
    cdef Py_ssize_t offsets[_MAX_FIELDS]

    def __init__(self, type cls, offsets):
        """``offsets`` from ``slot_offset`` of ``cls``'s own slot descriptors, in ``put``'s order."""
        cdef Py_ssize_t index, offset
        places = tuple(offsets)
        if len(places) > _MAX_FIELDS:
            raise ValueError(f"{len(places)} slots: at most {_MAX_FIELDS}")
        for index, offset in enumerate(places):
            if offset < <Py_ssize_t>sizeof(PyObject) or offset + <Py_ssize_t>sizeof(PyObject*) > cls.__basicsize__:
                raise ValueError(f"offset {offset} is not a slot of {cls.__qualname__}")
            self.offsets[index] = offset
        self.cls = cls
        self.count = len(places)

    def put(self, obj, *values):
        """Set ``obj``'s slots to ``values``, in the order of the offsets; ``TypeError`` when ``obj``
        is not an instance of the class or the number of values is not the number of slots."""
        cdef Py_ssize_t index
        cdef PyObject** place
        cdef PyObject* value
        cdef PyObject* old
        if not isinstance(obj, self.cls):
            raise TypeError(f"{type(obj).__qualname__} is not a {self.cls.__qualname__}")
        if PyTuple_GET_SIZE(values) != self.count:
            raise TypeError(f"{self.count} values expected, got {PyTuple_GET_SIZE(values)}")
        for index in range(self.count):
            place = <PyObject**>((<char*><PyObject*>obj) + self.offsets[index])
            value = <PyObject*>PyTuple_GET_ITEM(values, index)
            Py_INCREF(<object>value)
            old = place[0]
            place[0] = value
            Py_XDECREF(old)
