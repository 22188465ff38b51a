"""The ``audited_changes`` loader's limits: ``[loader]`` overlaid by ``CRM_AUDIT_LOADER_*``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crm_audit_transform.loading import LoaderLimits
from crm_audit_transform.numerals import is_int_text, parse_int

from .checks import as_written
from .keys import LOADER_ENV_PREFIX, did_you_mean
from .model import LOADER_LIMITS


def read_loader_limits(
    table: Any, environ: Mapping[str, str], problems: list[tuple[str, str]], in_file: str
) -> LoaderLimits:
    """``LoaderLimits`` from the ``[loader]`` table and ``CRM_AUDIT_LOADER_*`` (the environment wins).

    Each problem names its source as every other setting's does; a TOML value must be an integer
    (text is read as a number only from the environment)."""
    if table is not None and not isinstance(table, dict):
        problems.append((f"{in_file}: loader", "expected a table"))
        table = None
    table = table or {}
    problems.extend(
        (f"{in_file}: loader.{key}", "unknown setting" + did_you_mean(key, list(LOADER_LIMITS)))
        for key in sorted(set(table) - set(LOADER_LIMITS))
    )
    limits: dict[str, int] = {}
    for name in LOADER_LIMITS:
        env = f"{LOADER_ENV_PREFIX}{name.upper()}"
        value: Any = environ.get(env)
        source, from_text = f"environment variable {env}", True
        if value is None and name in table:
            source, value, from_text = f"{in_file}: loader.{name}", table[name], False
        elif value is None:
            continue
        parsed = (
            value
            if type(value) is int
            else parse_int(value)
            if from_text and isinstance(value, str) and is_int_text(value)  # TOML text is no number
            else None
        )
        shown = as_written(value)
        got = f", got {shown}" if shown else ""
        if parsed is None or parsed < 1:
            problems.append((source, "expected a positive integer" + got))
            continue
        if parsed > LoaderLimits.MAXIMA[name]:
            problems.append((source, f"must be at most {LoaderLimits.MAXIMA[name]}" + got))
            continue
        limits[name] = parsed
    return LoaderLimits(**limits)
