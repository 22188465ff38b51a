"""The per-row value classes built by ``fast_init``'s ``__init__`` against attrs' own, interleaved.

    .venv/bin/python benchmarks/bench_fast_init.py [--repeat 7] [--number 200000]

For each class ``_fast_init.fast_init`` was applied to, one instance as the pipeline builds it
(positional arguments), built ``--number`` times by attrs' generated ``__init__``, by the
descriptor-setting one (``fast_init``'s pure path) and by the class's own (the compiled
``_cslots`` writer where it was built, else the descriptors again): the class is called the same
way each time, its ``__init__`` swapped between rounds, whose order alternates. Best CPU time
(``process_time``) per build of each, and the ratios, as a Markdown table.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from typing import Any

from _machine import arguments, cpu_seconds, uptime
from crm_audit_transform import domain
from crm_audit_transform._fast_init import COMPILED_SLOTS, attrs_init, descriptor_init
from crm_audit_transform.rules.category import MappedCategory
from crm_audit_transform.transformer import PreparedRow

NOW = dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
ROW = domain.AuditRow(
    "acme", 7, "Crm::Deal", 3, "update", "---\n", NOW, None, None, 5, "User", None, 2, None, None, None
)
ACTOR = domain.Actor("user", "Ana", "sso-1")
CASES: list[tuple[type, tuple[Any, ...]]] = [
    (domain.AuditRow, ("acme", 7, "Crm::Deal", 3, "update", "---\n", NOW, None, None, 5, "User", None, 2)),
    (domain.FieldChange, ("name", "Name", "a", "b")),
    (domain.ActivityLog, ("co", "c1", "deal", "updated", ACTOR, (), NOW, "crm:acme:audit:7")),
    (domain.Migrated, (7, None)),
    (domain.Skipped, (7, "contact_not_found", "no contact")),
    (domain.WriteResult, ("crm:acme:audit:7", "inserted")),
    (domain.Actor, ("user", "Ana", "sso-1")),
    (PreparedRow, (ROW, {}, None, (1,), 5)),
    (MappedCategory, ("deal", "updated")),
]


def _per_build(build: Callable[[], object], number: int) -> float:
    def builds() -> None:
        for _ in range(number):
            build()

    return cpu_seconds(builds) / number


def main() -> int:
    parser = arguments(__doc__, repeat=7)
    parser.add_argument("--number", type=int, default=200_000)
    args = parser.parse_args()
    own = "compiled µs" if COMPILED_SLOTS else "fast_init µs (pure: no _cslots)"
    print(f"load before: {uptime()}\n")
    print(
        f"| class | attrs' __init__ µs | descriptors µs | {own} | × attrs | × descriptors |"
        "\n|---|---:|---:|---:|---:|---:|"
    )
    order = ("attrs", "descriptors", "own")
    for cls, values in CASES:
        inits = {"attrs": attrs_init(cls), "descriptors": descriptor_init(cls), "own": cls.__init__}

        def build(cls: type = cls, values: tuple[Any, ...] = values) -> object:
            return cls(*values)

        best = dict.fromkeys(order, float("inf"))
        try:
            for round_ in range(args.repeat):
                for name in order if round_ % 2 == 0 else order[::-1]:
                    type.__setattr__(cls, "__init__", inits[name])  # the same call, each __init__
                    best[name] = min(best[name], _per_build(build, args.number))
        finally:
            type.__setattr__(cls, "__init__", inits["own"])
        print(
            f"| `{cls.__name__}` | {best['attrs'] * 1e6:.2f} | {best['descriptors'] * 1e6:.2f} |"
            f" {best['own'] * 1e6:.2f} | {best['attrs'] / best['own']:.2f} |"
            f" {best['descriptors'] / best['own']:.2f} |"
        )
    print(f"\nload after: {uptime()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
