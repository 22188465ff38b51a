"""``python -m crm_audit_adapters``: the ``crm-audit-migrate`` console script where no script is on
``PATH`` (a bare virtualenv, a container's ``python``): the same commands, exit codes and Ctrl-C
handling (``console.main``); ``--help`` and the usage hints name it ``python -m crm_audit_adapters``.
"""

from __future__ import annotations

# Not when multiprocessing imports this module again as ``__mp_main__`` in a process it starts (the
# fork server, a page worker, a shard process): that process must not run the CLI in turn.
if __name__ == "__main__":
    from crm_audit_adapters.console import main

    main()
