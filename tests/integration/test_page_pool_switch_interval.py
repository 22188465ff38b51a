"""A ``ProcessPagePipeline`` given ``switch_interval_s`` runs at that thread switch interval while a
run goes on, and puts the one before back when the run ends, however it ends; by default it leaves
the interpreter's."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator

import pytest

from crm_audit_adapters.page_pool import ProcessPagePipeline, TransformerRecipe
from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import AuditRow
from crm_audit_transform.lookup import LookupContext
from crm_audit_transform.transformer import Transformer
from crm_audit_transform.usecases.pages import TransformedPage
from support.corpus_account import audit_rows

BEFORE_S = 0.004
"""The switch interval each test starts from: neither Python's default nor the one asked for."""
ASKED_S = 0.0005


@pytest.fixture(autouse=True)
def interval() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(BEFORE_S)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def pages(count: int) -> list[list[AuditRow]]:
    rows = sorted(audit_rows("acme"), key=lambda row: row.id)[: 10 * count]
    return [rows[start : start + 10] for start in range(0, len(rows), 10)]


def transformed(pool: ProcessPagePipeline, count: int) -> Iterator[TransformedPage]:
    return pool.transform_pages(
        pages(count), Transformer(load_default_config()), lambda request: LookupContext(), company_sso_id="c"
    )


def test_a_run_goes_on_at_the_pools_interval_and_puts_the_one_before_back() -> None:
    """The executors' threads, which hand a worker its next task and read its result, wait for the
    busy runner's GIL up to the switch interval (Python's 5 ms)."""
    seen: list[float] = []
    with ProcessPagePipeline(2, TransformerRecipe(load_default_config()), switch_interval_s=ASKED_S) as pool:
        for _ in transformed(pool, 6):
            seen.append(sys.getswitchinterval())
        after = sys.getswitchinterval()
    assert len(seen) == 6
    assert all(math.isclose(value, ASKED_S, rel_tol=1e-3) for value in seen), seen
    assert math.isclose(after, BEFORE_S, rel_tol=1e-3)


def test_a_run_left_early_puts_it_back_too() -> None:
    with ProcessPagePipeline(2, TransformerRecipe(load_default_config()), switch_interval_s=ASKED_S) as pool:
        run = transformed(pool, 6)
        next(run)
        assert math.isclose(sys.getswitchinterval(), ASKED_S, rel_tol=1e-3)
        run.close()  # as the run loop closes it when it stops early (Ctrl-C, halt, an error)
        assert math.isclose(sys.getswitchinterval(), BEFORE_S, rel_tol=1e-3)


def test_by_default_the_interval_is_left_as_it_is() -> None:
    with ProcessPagePipeline(2, TransformerRecipe(load_default_config())) as pool:
        seen = [sys.getswitchinterval() for _ in transformed(pool, 3)]
    assert len(seen) == 3
    assert all(math.isclose(value, BEFORE_S, rel_tol=1e-3) for value in seen), seen
