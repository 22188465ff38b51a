"""USMAN's client settings: ``[usman]`` overlaid by ``CRM_AUDIT_USMAN_*``, each problem with its source."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from crm_audit_transform.numerals import parse_float

from ..url_checks import http_url_problem
from ..usman import UnusableUsmanSetting, UsmanConfig
from ..usman_config import base_url_problem
from .checks import as_written, text_problem
from .keys import USMAN_ENV_PREFIX, USMAN_KEYS, USMAN_TEXT_KEYS, did_you_mean

_USMAN_TEXT_ENV: Final = frozenset(USMAN_KEYS[key] for key in USMAN_TEXT_KEYS)


def _plain_number(text: str) -> bool:
    try:
        parse_float(text)
    except ValueError:
        return False
    return True


def _usman_got(env_key: str, value: object) -> str:
    """``, got …`` for a numeric USMAN setting as written; nothing for text (a token is a secret)."""
    if env_key in _USMAN_TEXT_ENV or env_key not in USMAN_KEYS.values():
        return ""
    shown = as_written(value)
    return f", got {shown}" if shown else ""


def read_usman_table(
    table: Any, environ: Mapping[str, str], problems: list[tuple[str, str]], in_file: str
) -> UsmanConfig | None:
    merged: dict[str, str] = {}
    sources: dict[str, str] = {}
    given: dict[str, object] = {}  # the value as written (TOML's own, or the variable's text)
    if table is not None and not isinstance(table, dict):
        problems.append((f"{in_file}: usman", "expected a table ([usman])"))
        table = None
    for key, value in (table or {}).items():
        env_key = USMAN_KEYS.get(str(key))
        if env_key is None:
            problems.append(
                (f"{in_file}: usman.{key}", "unknown setting" + did_you_mean(str(key), [*USMAN_KEYS]))
            )
            continue
        if key in USMAN_TEXT_KEYS and not isinstance(value, str):
            problems.append((f"{in_file}: usman.{key}", "expected a string"))
            continue
        if key not in USMAN_TEXT_KEYS and (isinstance(value, bool) or not isinstance(value, int | float)):
            # TOML has types: max_attempts = "3" is refused, as page_size = "7" is.
            problems.append((f"{in_file}: usman.{key}", "expected a number"))
            continue
        merged[USMAN_ENV_PREFIX + env_key] = str(value)
        sources[env_key] = f"{in_file}: usman.{key}"
        given[env_key] = value
    for name, value in environ.items():
        if name.startswith(USMAN_ENV_PREFIX):
            merged[name] = value
            sources[name[len(USMAN_ENV_PREFIX) :]] = f"environment variable {name}"
            given[name[len(USMAN_ENV_PREFIX) :]] = value
    if f"{USMAN_ENV_PREFIX}BASE_URL" not in merged:
        return None
    # One key at a time, so that each problem names its own source.
    for env_key, source in sorted(sources.items()):
        if env_key == "BASE_URL":
            continue
        try:
            UsmanConfig.from_env(
                {
                    USMAN_ENV_PREFIX + "BASE_URL": "http://x",
                    USMAN_ENV_PREFIX + env_key: merged[USMAN_ENV_PREFIX + env_key],
                }
            )
        except UnusableUsmanSetting as exc:  # its message never quotes the value
            problems.append((source, str(exc) + _usman_got(env_key, given.get(env_key))))
            continue
        except (TypeError, ValueError):  # float()'s and int()'s messages would quote it
            why = "out of range or of the wrong type (see docs/usman.md)"
            problems.append((source, why + _usman_got(env_key, given.get(env_key))))
            continue
        value = given.get(env_key)
        if env_key in _USMAN_TEXT_ENV and (problem := text_problem(merged[USMAN_ENV_PREFIX + env_key])):
            # What the header rule lets through: a space around the token from `$(cat file)`.
            problems.append((source, problem))
        if isinstance(value, str) and env_key not in _USMAN_TEXT_ENV and not _plain_number(value):
            # The environment's text by the one strict reader (int() and float() take 1_0, ١٠).
            why = "expected a plain number (ASCII digits, an optional - and .)"
            problems.append((source, why + _usman_got(env_key, value)))
    base = merged[f"{USMAN_ENV_PREFIX}BASE_URL"]
    if problem := text_problem(base):  # a newline from `$(cat file)`, before the URL is parsed
        problems.append((sources.get("BASE_URL", "usman.base_url"), problem))
    elif not base.startswith(("http://", "https://")):
        problems.append((sources.get("BASE_URL", "usman.base_url"), "must start with http:// or https://"))
    elif problem := http_url_problem(base) or base_url_problem(
        base,
        auth_header=merged.get(f"{USMAN_ENV_PREFIX}AUTH_HEADER", "Authorization"),
        token=merged.get(f"{USMAN_ENV_PREFIX}TOKEN", ""),
    ):
        problems.append((sources.get("BASE_URL", "usman.base_url"), problem))
    try:
        return UsmanConfig.from_env(merged)
    except (TypeError, ValueError):
        return None
