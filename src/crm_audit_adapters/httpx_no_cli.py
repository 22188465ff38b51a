"""httpx imported without its command line: the fork server's first preload module.

``import httpx`` also imports ``httpx._main``, httpx's command-line client, and with it click, rich
and pygments whenever they are installed: 81 of the fork server's 858 modules, 0.05–0.09 s of its
preload's 0.62–0.71 s of CPU (benchmarks/RESULTS.md, issue 15 goal 2, the fork server's preload). Every
page pool worker and shard process is forked only once that preload is done, so a ``run --workers
N`` worker waited for them before its first page, and none of those processes ever runs httpx's
command line. httpx's ``__init__`` gives ``httpx.main`` a stub that says the command line's
dependencies are missing when importing ``httpx._main`` fails; ``None`` in ``sys.modules`` makes
that import fail, and is removed right after, so a later ``import httpx._main`` works as usual.

Imported only by the fork server, first in its preload (``fork_server.preload_first``): the
processes it forks have ``httpx`` without ``httpx.main``. Never imported by the library or the
command-line process, whose users may run ``httpx.main``.
"""

from __future__ import annotations

import sys

if "httpx" not in sys.modules:
    sys.modules["httpx._main"] = None  # type: ignore[assignment]  # makes the import fail (above)
    try:
        import httpx  # noqa: F401
    except ImportError:  # not installed: nothing to leave out
        pass
    finally:
        if "httpx._main" in sys.modules and sys.modules["httpx._main"] is None:
            del sys.modules["httpx._main"]
