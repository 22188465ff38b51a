"""A ``ProcessPagePipeline``'s run lowers the interpreter's thread switch interval while it goes on
(``pipeline.SWITCH_INTERVAL_S``), and puts the one before back when it ends, however it ends."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator

import pytest

from crm_audit_adapters.page_pool import ProcessPagePipeline, TransformerRecipe
from crm_audit_adapters.page_pool.pipeline import SWITCH_INTERVAL_S
from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import AuditRow
from crm_audit_transform.lookup import LookupContext
from crm_audit_transform.transformer import Transformer
from crm_audit_transform.usecases.pages import TransformedPage
from support.corpus_account import audit_rows

BEFORE_S = 0.004
"""The switch interval each test starts from: neither Python's default nor the pool's."""


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
    """Before, a run left the interval at whatever it was: the executors' threads, which hand a
    worker its next task and read its result, waited up to 5 ms for the busy runner's GIL."""
    seen: list[float] = []
    with ProcessPagePipeline(2, TransformerRecipe(load_default_config())) as pool:
        for _ in transformed(pool, 6):
            seen.append(sys.getswitchinterval())
        after = sys.getswitchinterval()
    assert len(seen) == 6
    assert all(math.isclose(value, SWITCH_INTERVAL_S, rel_tol=1e-3) for value in seen), seen
    assert math.isclose(after, BEFORE_S, rel_tol=1e-3)


def test_a_run_left_early_puts_it_back_too() -> None:
    with ProcessPagePipeline(2, TransformerRecipe(load_default_config())) as pool:
        run = transformed(pool, 6)
        next(run)
        assert math.isclose(sys.getswitchinterval(), SWITCH_INTERVAL_S, rel_tol=1e-3)
        run.close()  # as the run loop closes it when it stops early (Ctrl-C, halt, an error)
        assert math.isclose(sys.getswitchinterval(), BEFORE_S, rel_tol=1e-3)


def test_none_leaves_the_interval_as_it_is() -> None:
    with ProcessPagePipeline(2, TransformerRecipe(load_default_config()), switch_interval_s=None) as pool:
        seen = [sys.getswitchinterval() for _ in transformed(pool, 3)]
    assert len(seen) == 3
    assert all(math.isclose(value, BEFORE_S, rel_tol=1e-3) for value in seen), seen
