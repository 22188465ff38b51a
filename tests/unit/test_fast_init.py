"""fast_init: the per-row value classes built by slot descriptors are the objects attrs would build."""

from __future__ import annotations

import datetime as dt
import os
import pickle
import sys
from typing import Any

import attrs
import pytest
from attrs import define, field, frozen
from hypothesis import given
from hypothesis import strategies as st

from crm_audit_transform import _fast_init, domain
from crm_audit_transform._fast_init import COMPILED_SLOTS, attrs_init, descriptor_init, fast_init
from crm_audit_transform.rules.category import MappedCategory
from crm_audit_transform.rules.verdict import Rejection
from crm_audit_transform.transformer import PreparedRow

UTC = dt.UTC
ROW = domain.AuditRow("acme", 7, "Crm::Deal", 3, "update", "---\n", dt.datetime(2020, 1, 2, tzinfo=UTC))
ACTOR = domain.Actor("user", "Ana", "sso-1")
CHANGE = domain.FieldChange("name", "Name", "a", "b")
LOG = domain.ActivityLog("co", "c1", "deal", "updated", ACTOR, (CHANGE,), dt.datetime(2020, 1, 2, tzinfo=UTC))

# Each class fast_init is applied to, with the arguments of one instance (defaults left out).
EXAMPLES: list[tuple[type, tuple[Any, ...], dict[str, Any]]] = [
    (domain.AuditRow, (), attrs.asdict(ROW, recurse=False)),
    (domain.AuditRow, ("t", 1, "X", None, "create", None, None), {}),
    (domain.CrmUser, (5, "a@example.com"), {}),
    (
        domain.Contact,
        ("c1", "co", 9, dt.datetime(2021, 5, 1, 3, tzinfo=dt.timezone(dt.timedelta(hours=7)))),
        {},
    ),
    (domain.Actor, ("system", "Qontak System"), {}),
    (domain.FieldChange, ("name", "Name", None, {"a": [1, 2.5]}), {}),
    (domain.ActivityLog, (), attrs.asdict(LOG, recurse=False)),
    (domain.ActivityLog, ("co", "c1", "deal", "updated", ACTOR, (), dt.datetime(2020, 1, 2, tzinfo=UTC)), {}),
    (domain.Migrated, (7, LOG), {}),
    (domain.Skipped, (7, "contact_not_found"), {"detail": "none"}),
    (domain.Failed, (7, "write_error"), {}),
    (domain.WriteResult, ("crm:acme:audit:7", "inserted"), {}),
    (PreparedRow, (ROW,), {"person_ids": (1, 2), "user_id": 4}),
    (MappedCategory, ("deal", "linked", "Crm::Person", 3), {}),
    (Rejection, ("unmapped_action_type",), {"skip": False}),
]


def built_by_attrs(cls: type, *args: Any, **kwargs: Any) -> Any:
    instance = object.__new__(cls)
    attrs_init(cls)(instance, *args, **kwargs)
    return instance


def hash_or_error(value: object) -> object:
    try:
        return hash(value)
    except TypeError as exc:  # a dict or list among the fields: unhashable either way
        return str(exc)


class TestSameObjects:
    @pytest.mark.parametrize(("cls", "args", "kwargs"), EXAMPLES, ids=lambda e: getattr(e, "__name__", ""))
    def test_each_class_builds_what_attrs_builds(
        self, cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """Every field (defaults and converters included) equals attrs' own __init__'s result."""
        assert cls.__init__.__code__.co_filename.startswith("<fast_init")
        fast, reference = cls(*args, **kwargs), built_by_attrs(cls, *args, **kwargs)
        assert type(fast) is cls
        assert [getattr(fast, a.name) for a in attrs.fields(cls)] == [
            getattr(reference, a.name) for a in attrs.fields(cls)
        ]
        assert fast == reference
        assert hash_or_error(fast) == hash_or_error(reference)
        assert repr(fast) == repr(reference)
        assert pickle.loads(pickle.dumps(fast)) == fast
        by_descriptors = object.__new__(cls)
        descriptor_init(cls)(by_descriptors, *args, **kwargs)  # the pure path, whichever the class uses
        assert by_descriptors == reference
        assert "_set_0" in descriptor_init(cls).__code__.co_names

    @pytest.mark.parametrize(
        ("cls", "args", "kwargs"), EXAMPLES[:4], ids=lambda e: getattr(e, "__name__", "")
    )
    def test_they_stay_frozen_and_evolve(
        self, cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """A write to a field is still refused; attrs.evolve still builds through the new __init__."""
        instance = cls(*args, **kwargs)
        first = attrs.fields(cls)[0].name
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            setattr(instance, first, "x")
        assert getattr(attrs.evolve(instance, **{first: "x"}), first) == "x"

    def test_a_factory_default_is_a_new_object_each_time(self) -> None:
        """ActivityLog's metadata default is a fresh dict per log, as with attrs."""
        a = domain.ActivityLog("co", "c", "k", "a", ACTOR, (), dt.datetime(2020, 1, 1, tzinfo=UTC))
        b = domain.ActivityLog("co", "c", "k", "a", ACTOR, (), dt.datetime(2020, 1, 1, tzinfo=UTC))
        assert a.metadata == {}
        assert a.metadata is not b.metadata

    def test_converters_still_refuse_what_they_refused(self) -> None:
        """A naive created_at is refused with attrs' converter's own error."""
        args = ("c", "co", 1, dt.datetime(2020, 1, 1))
        with pytest.raises(ValueError, match="naive") as fast:
            domain.Contact(*args)
        with pytest.raises(ValueError, match="naive") as reference:
            built_by_attrs(domain.Contact, *args)
        assert str(fast.value) == str(reference.value)

    def test_a_missing_or_unknown_argument_is_a_type_error(self) -> None:
        """Calls attrs would refuse are refused too."""
        with pytest.raises(TypeError):
            domain.FieldChange("name", "Name", None)  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            domain.FieldChange("name", "Name", None, None, extra=1)  # type: ignore[call-arg]

    @given(
        st.text(),
        st.text(),
        st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(), st.lists),
        st.none() | st.integers(),
    )
    def test_any_field_change_is_attrs_own(self, name: str, label: str, old: Any, new: Any) -> None:
        """Whatever the values, fast and attrs-built FieldChanges hold the very same objects."""
        fast = domain.FieldChange(name, label, from_=old, to=new)
        reference = built_by_attrs(domain.FieldChange, name, label, from_=old, to=new)
        assert (fast.field, fast.label, fast.from_, fast.to) == (name, label, old, new)
        assert all(getattr(fast, n) is getattr(reference, n) for n in ("field", "label", "from_", "to"))


class TestRefused:
    def test_classes_it_cannot_build_exactly_are_refused(self) -> None:
        """Validators, kw_only fields, hooks, mutable or unslotted classes keep attrs' __init__."""

        @frozen
        class Validated:
            x: int = field(validator=attrs.validators.instance_of(int))

        @frozen
        class KeywordOnly:
            x: int = field(kw_only=True)

        @frozen
        class Hooked:
            x: int

            def __attrs_post_init__(self) -> None:
                pass

        @define
        class Mutable:
            x: int

        @frozen(slots=False)
        class Unslotted:
            x: int

        @frozen(cache_hash=True)
        class CachedHash:
            x: int

        for cls in (Validated, KeywordOnly, Hooked, Mutable, Unslotted, CachedHash):
            with pytest.raises(TypeError, match="fast_init"):
                fast_init(cls)


needs_compiled = pytest.mark.skipif(not COMPILED_SLOTS, reason="the compiled _cslots was not built here")


class TestBothPaths:
    def test_the_extension_is_built_where_the_build_requires_it(self) -> None:
        """CI sets CRM_AUDIT_REQUIRE_COMPILED=1 so a silently skipped build cannot pass as pure."""
        if os.environ.get("CRM_AUDIT_REQUIRE_COMPILED") == "1":
            assert COMPILED_SLOTS
        names = domain.FieldChange.__init__.__code__.co_names
        assert names == (("_put",) if COMPILED_SLOTS else ("_set_0", "_set_1", "_set_2", "_set_3"))

    @pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=needs_compiled)])
    def test_either_path_builds_what_attrs_builds(
        self, monkeypatch: pytest.MonkeyPatch, compiled: bool
    ) -> None:
        """Without the extension the slots are written one descriptor call each; with it, in one
        call: the same values either way, defaults and converters included."""
        if not compiled:
            monkeypatch.setattr(_fast_init, "_cslots", None)

        @frozen
        class Three:
            a: str
            b: object = None
            c: tuple[int, ...] = field(default=(), converter=tuple)

        cls = fast_init(Three)
        assert ("_put" in cls.__init__.__code__.co_names) is compiled
        for args in (("x",), ("x", [1], [2, 3]), ("", None, ())):
            fast, reference = cls(*args), built_by_attrs(cls, *args)
            assert (fast.a, fast.b, fast.c) == (reference.a, reference.b, reference.c)
            assert fast == reference
        with pytest.raises(TypeError):
            cls()


@needs_compiled
class TestSlotWriter:
    def test_a_value_is_held_and_the_one_it_replaces_released(self) -> None:
        """The reference counts come out as a descriptor's write leaves them: no leak, no early free."""
        from crm_audit_transform import _cslots

        old, new = object(), object()
        change = domain.FieldChange("f", "F", old, None)
        before_old, before_new = sys.getrefcount(old), sys.getrefcount(new)
        writer = _cslots.SlotWriter(
            domain.FieldChange, [_cslots.slot_offset(domain.FieldChange.__dict__["from_"])]
        )
        writer.put(change, new)
        assert change.from_ is new
        assert sys.getrefcount(old) == before_old - 1
        assert sys.getrefcount(new) == before_new + 1

    def test_it_refuses_what_it_cannot_write_safely(self) -> None:
        """Only a member descriptor's slot, only an instance of the class, only as many values as slots."""
        from crm_audit_transform import _cslots

        with pytest.raises(TypeError, match="member descriptor"):
            _cslots.slot_offset(domain.FieldChange.__dict__["__init__"])
        offset = _cslots.slot_offset(domain.FieldChange.__dict__["field"])
        with pytest.raises(ValueError, match="not a slot"):
            _cslots.SlotWriter(domain.Actor, [10_000])
        writer = _cslots.SlotWriter(domain.FieldChange, [offset])
        with pytest.raises(TypeError, match="is not a FieldChange"):
            writer.put(domain.Actor("system", "S"), "x")
        with pytest.raises(TypeError, match="1 values expected, got 2"):
            writer.put(domain.FieldChange("f", "F", None, None), "x", "y")
        with pytest.raises(ValueError, match="at most"):
            _cslots.SlotWriter(domain.FieldChange, [offset] * (_cslots.MAX_FIELDS + 1))
