"""A page worker's result pipe holds a page's result (``page_pool.result_pipe``).

A worker writes each page's result whole onto its executor's result pipe before it takes its next
page; at Linux's default 64 KiB it waited there for the runner's reading thread, chunk by chunk,
while the runner transformed a page of its own (benchmarks/RESULTS.md, issue 15 goal 2).
"""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest

from crm_audit_adapters.page_pool import ProcessPagePipeline, TransformerRecipe
from crm_audit_adapters.page_pool.result_pipe import RESULT_PIPE_BYTES, result_pipe_bytes
from crm_audit_transform.config import load_default_config

CEILING = Path("/proc/sys/fs/pipe-max-size")


@pytest.mark.skipif(not hasattr(fcntl, "F_GETPIPE_SZ"), reason="pipe sizes are set on Linux only")
def test_each_workers_result_pipe_holds_a_page_and_more() -> None:
    """Every worker's result pipe is ``RESULT_PIPE_BYTES`` (1 MiB: two pages' results of 440 KiB),
    or the system's default where its ceiling is lower. Before, each was 64 KiB."""
    ceiling = int(CEILING.read_text()) if CEILING.exists() else 0
    with ProcessPagePipeline(3, TransformerRecipe(load_default_config())) as pool:
        pool.start(wait=True)
        executors = pool._processes.executors
        sizes = [result_pipe_bytes(executor) for executor in executors if executor is not None]
    assert len(sizes) == 2
    if ceiling >= RESULT_PIPE_BYTES:
        assert sizes == [RESULT_PIPE_BYTES, RESULT_PIPE_BYTES]
    else:  # the system's own size: asking for more than its ceiling changes nothing
        assert all(size is not None and size < RESULT_PIPE_BYTES for size in sizes)
