"""Adapters of crm-audit-transform: PostgreSQL (CRM), MongoDB (CDP), USMAN over HTTP, files, and the runner.

Each adapter implements a port of ``crm_audit_transform.ports``; none is imported by the core, and
no connection is opened at import time.

**Run as the ``crm-audit-migrate`` script** (``[project.scripts]``: the script's first statement
imports ``crm_audit_adapters.console``, so this is the first of the package's code to run), a
Ctrl-C is held from here until ``console.main`` installs its own handler: ``console.main`` then ends
with ``error: INTERRUPTED``, exit 130, as for one during the rest of the load. Python's own handler
would raise ``KeyboardInterrupt`` instead, and a Ctrl-C in the load's first milliseconds (importing
``signal`` alone takes a few) print a traceback and die by the signal. Imported otherwise (a
test, a worker, a library user) it changes nothing. Before this point only the interpreter's own
start runs (``site`` included): a Ctrl-C there is Python's. Run as ``python -m crm_audit_adapters``
(``__main__``) or ``python -m crm_audit_adapters.console``, the same: ``-m`` imports the package first
(interpreter flags beside it included: ``python -Im crm_audit_adapters``, ``-X dev -m …``).
"""

from __future__ import annotations

import sys as _sys

SCRIPT = "crm-audit-migrate"
"""The console script's name (``[project.scripts]``; a test keeps the two equal)."""

EARLY_SIGINTS: list[int] = []
"""The SIGINTs held while the script loaded (``console.early_sigint``), before its own handler."""


def _hold(signum: int, frame: object) -> None:
    EARLY_SIGINTS.append(signum)


MODULE_FORMS = ("crm_audit_adapters", "crm_audit_adapters.__main__", "crm_audit_adapters.console")
"""The modules ``python -m`` runs as the script (``__main__``, named or not, and ``console``'s own
``__main__`` block)."""


def module_run(orig_argv: list[str]) -> str | None:
    """The module named by ``-m`` in ``orig_argv`` (``sys.orig_argv``: the interpreter's own command
    line), read as the interpreter reads its options: ``-m`` may end a group of flags (``-Im x``,
    ``-um x``) or hold the name (``-mx``); ``-W`` and ``-X`` take a value (``-W ignore``, ``-Xdev``),
    which is not an option; ``-c``, a script, ``-`` or ``--`` end the options with no module. None
    without a ``-m``. (CPython's ``Python/getopt.c``; ``--check-hash-based-pycs`` is the one long
    option with a value.)"""
    words = iter(orig_argv[1:])
    for word in words:
        if word == "--check-hash-based-pycs":
            next(words, None)
            continue
        if word in ("-", "--") or not word.startswith("-"):
            return None
        if word.startswith("--"):
            continue
        for at in range(1, len(word)):
            if word[at] in "cmWX":
                value = word[at + 1 :] or next(words, None)
                if word[at] == "m":
                    return value
                if word[at] == "c":
                    return None
                break
    return None


def _as_the_script() -> bool:
    """Run as the console script, or as ``python -m`` one of ``MODULE_FORMS``: ``-m`` imports this
    package first, while ``sys.argv[0]`` is still ``-m`` and the module is named in ``sys.orig_argv``
    (``module_run``; any other module of the package run so does not reach ``console.main``, which
    ends the hold)."""
    main = _sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if isinstance(path, str) and path.rpartition("/")[2] == SCRIPT:
        return True
    # Not ``orig_argv.index("-m")``: ``python -Im crm_audit_adapters`` has no word ``-m``, and its
    # Ctrl-C while loading would be Python's traceback, exit 1.
    return _sys.argv[:1] == ["-m"] and module_run(_sys.orig_argv) in MODULE_FORMS


if _as_the_script():
    import _signal  # type: ignore[import-not-found]  # the C module: ``signal`` imports ``enum``, milliseconds more

    if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
        _signal.signal(_signal.SIGINT, _hold)
