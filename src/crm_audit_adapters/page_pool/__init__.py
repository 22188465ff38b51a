"""The page pool: ``run --workers N`` and ``dry-run --workers N`` on one machine, no broker.

Worker processes load, look up (when the run's lookup ports can be copied to them: one trip a
page) and transform a run's pages — and encode their logs in the writer's format — while the run
loop, in the parent, stays the one writer in id order and transforms a page itself whenever it
would otherwise wait (``pipeline.ProcessPagePipeline``; what befalls each page of a run is
``run_pages``', the pages it has in flight are ``in_flight``'s, what it sends the workers is
``sending``'s, its worker processes are ``worker_processes``'; the worker side is ``worker``, what
crosses back is ``wire``).
"""

from __future__ import annotations

from .pipeline import MAX_WORKERS, ProcessPagePipeline, TransformerRecipe

__all__ = ["MAX_WORKERS", "ProcessPagePipeline", "TransformerRecipe"]
