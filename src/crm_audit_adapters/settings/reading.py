"""``load_settings`` and ``load_tenants``: the settings file, then the environment on top."""

from __future__ import annotations

import os
import stat
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from crm_audit_transform.errors import ConfigError
from crm_audit_transform.numerals import parse_float, parse_int
from crm_audit_transform.usecases import RunSettings

from .checks import as_written
from .keys import (
    CONFIG_ENV,
    ENV_PREFIX,
    KIND_NAMES,
    SCALAR_KEYS,
    did_you_mean,
    misspelled_variables,
    not_utf8,
)
from .loader_limits import read_loader_limits
from .model import Settings
from .tenants import read_tenants
from .usman_table import read_usman_table


def _convert(value: Any, kind: type, *, from_text: bool) -> Any:
    """``value`` as ``kind``. Only an environment variable (``from_text``) is text to be read as a
    number: TOML has types, so its ``page_size = "7"`` is refused like ``page_size = 500.0``."""
    if isinstance(value, bool) or (kind is str and not isinstance(value, str)):
        raise TypeError
    if kind is not str and isinstance(value, str) and not from_text:
        raise TypeError
    if (
        kind is float
        and isinstance(value, str)
        and value.strip().lower() in ("nan", "inf", "-inf", "infinity")
    ):
        raise ValueError
    if kind is int and isinstance(value, float):
        raise TypeError
    if isinstance(value, str) and kind is not str:
        # The one integer (and number) reader of every source: ASCII digits only (numerals).
        return parse_int(value) if kind is int else parse_float(value)
    return kind(value)


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the file (``path``, else ``$CRM_AUDIT_SETTINGS``, else none), then the environment on top.

    Every problem is reported at once as a ``ConfigError`` whose paths name the source and key
    (``settings file crm.toml: page_size``, ``environment variable CRM_AUDIT_PAGE_SIZE``); the
    messages never quote a value that may hold a secret.
    """
    environ = os.environ if environ is None else environ
    undecodable = not_utf8(environ)
    if undecodable:
        raise ConfigError(undecodable, source="the runner's settings")
    path = path or environ.get(CONFIG_ENV) or None
    raw: dict[str, Any] = _read_file(Path(path)) if path else {}
    in_file = f"settings file {path}"
    problems: list[tuple[str, str]] = []
    values: dict[str, Any] = {}
    for key, (kind, check) in SCALAR_KEYS.items():
        name = ENV_PREFIX + key.upper()
        # The environment wins, but the file's value is checked too: a wrong one is a problem even
        # while a variable overrides it (it would take effect the day the variable is unset).
        given_in = [(f"environment variable {name}", environ.get(name), True)]
        given_in.append((f"{in_file}: {key}", raw.get(key), False))
        for source, value, from_text in given_in:
            if value is None:
                continue
            if key == "enabled_companies" and isinstance(value, list):
                if not all(isinstance(v, str) for v in value):
                    problems.append((source, "expected a string or a list of strings"))
                    continue
                value = ",".join(value)
            # A number is quoted as given with its problem; text may be a secret and never is.
            given = f", got {shown}" if kind is not str and (shown := as_written(value)) else ""
            try:
                converted = _convert(value, kind, from_text=from_text)
            except (TypeError, ValueError):
                problems.append((source, f"expected {KIND_NAMES[kind]}{given}"))
                continue
            problem = check(converted) if check else None
            if problem:
                problems.append((source, problem + given))
            else:
                values.setdefault(key, converted)
    for key in sorted(set(raw) - set(SCALAR_KEYS) - {"usman", "tenants", "loader"}):
        problems.append(
            (
                f"{in_file}: {key}",
                "unknown setting" + did_you_mean(key, [*SCALAR_KEYS, "usman", "tenants", "loader"]),
            )
        )
    usman = read_usman_table(raw.get("usman"), environ, problems, in_file)
    tenants = read_tenants(raw.get("tenants"), environ.get(f"{ENV_PREFIX}TENANTS"), problems, in_file)
    loader = read_loader_limits(raw.get("loader"), environ, problems, in_file)
    misspelled = misspelled_variables(environ)
    if problems:
        # A misspelled variable is often why another setting looks wrong (its default is in force):
        # its hint goes into the error, not into warnings that an error would never print.
        raise ConfigError([*problems, *misspelled], source="the runner's settings")
    run = RunSettings(
        page_size=values.pop("page_size", RunSettings().page_size),
        halt_threshold=values.pop("halt_threshold", RunSettings().halt_threshold),
        degraded_threshold=values.pop("degraded_threshold", RunSettings().degraded_threshold),
        halt_sample=values.pop("halt_sample", RunSettings().halt_sample),
        lease_seconds=values.pop("lease_seconds", RunSettings().lease_seconds),
    )
    warnings = tuple(f"{where} {note}" for where, note in misspelled)
    return Settings(usman=usman, run=run, tenants=tenants, loader=loader, warnings=warnings, **values)


def load_tenants(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Only the tenant bindings of ``load_settings`` (same file, same variable, same checks).

    For a command that reaches no server (``dry-run``): it follows the bindings without needing, or
    checking, the servers' settings. ``ConfigError`` for a problem with the bindings or the file.
    """
    environ = os.environ if environ is None else environ
    path = path or environ.get(CONFIG_ENV) or None
    raw: dict[str, Any] = _read_file(Path(path)) if path else {}
    problems: list[tuple[str, str]] = []
    tenants = read_tenants(
        raw.get("tenants"), environ.get(f"{ENV_PREFIX}TENANTS"), problems, f"settings file {path}"
    )
    if problems:
        raise ConfigError(problems, source="the runner's settings")
    return tenants


MAX_SETTINGS_BYTES: Final = 1 << 20
"""A settings file is read up to this many bytes (1 MiB): a larger one (``/dev/zero``, a log named
by mistake) is ``CONFIG_INVALID`` at once, instead of a read that fills the memory."""


def _read_file(path: Path) -> dict[str, Any]:
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
            # A FIFO with no writer blocks open() for ever, /dev/zero never ends: neither is a file.
            why = "not a regular file (a device, a FIFO or a socket): a settings file is TOML on disk"
            raise ConfigError([(f"settings file {path}", why)])
        with path.open("rb") as handle:
            data = handle.read(MAX_SETTINGS_BYTES + 1)
        if len(data) > MAX_SETTINGS_BYTES:
            why = f"larger than {MAX_SETTINGS_BYTES} bytes: not a settings file"
            raise ConfigError([(f"settings file {path}", why)])
        return tomllib.loads(data.decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError([(f"settings file {path}", "no such configuration file")]) from None
    except OSError as exc:
        raise ConfigError([(f"settings file {path}", f"cannot read: {exc.strerror}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([(f"settings file {path}", f"not valid TOML: {exc}")]) from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8
        raise ConfigError([(f"settings file {path}", f"not UTF-8 (byte {exc.start})")]) from None
    except RecursionError:  # tomllib parses one nested array or inline table per call
        raise ConfigError([(f"settings file {path}", "nests values too deep to read")]) from None
    except ValueError as exc:  # an integer past Python's integer-to-text limit (4,300 digits)
        limit = sys.get_int_max_str_digits()
        why = f"cannot read a value: an integer of more than {limit} digits"
        raise ConfigError([(f"settings file {path}", why)]) from exc
