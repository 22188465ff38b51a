"""URLs, DSNs and secrets with surrounding white space or a control character are refused at load,
naming the setting and never the value.

``CRM_AUDIT_DATABASE_URL="$(cat dsn)\\n"``-style values were taken as written: the driver read the
newline as part of the database name ("does not exist"), of the password, of the token.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crm_audit_adapters.settings import load_settings
from crm_audit_adapters.settings.checks import CONTROL, PADDED
from crm_audit_transform.errors import ConfigError

SECRET = "Hunter2pw-0123456789abcdefghijklmnop"
GOOD = {
    "CRM_AUDIT_DATABASE_URL": f"postgresql://crm:{SECRET}@db:5432/crm",
    "CRM_AUDIT_MONGO_URI": f"mongodb://cdp:{SECRET}@cdp:27017/",
    "CRM_AUDIT_MONGO_DATABASE": "cdp",
    "CRM_AUDIT_BROKER_URL": f"redis://:{SECRET}@redis:6379/0",
    "CRM_AUDIT_RESULT_BACKEND": f"redis://:{SECRET}@redis:6379/1",
    "CRM_AUDIT_HTTP_USER": "ops",
    "CRM_AUDIT_HTTP_PASSWORD": SECRET,
    "CRM_AUDIT_SESSION_SECRET": SECRET,
    "CRM_AUDIT_USMAN_BASE_URL": "https://usman.example",
    "CRM_AUDIT_USMAN_TOKEN": SECRET,
}


def refused(environ: dict[str, str], path: Path | None = None) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as raised:
        load_settings(path, {**GOOD, **environ})
    assert SECRET not in str(raised.value)
    assert SECRET[:12] not in str(raised.value)
    return list(raised.value.problems)


def test_the_good_values_load() -> None:
    """The same values without the stray characters are taken as they are."""
    settings = load_settings(None, GOOD)
    assert settings.database_url == GOOD["CRM_AUDIT_DATABASE_URL"]
    assert settings.usman is not None
    assert settings.usman.token == SECRET


@pytest.mark.parametrize("variable", sorted(GOOD))
@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda v: v + "\n", PADDED),
        (lambda v: v + "\r\n", PADDED),
        (lambda v: " " + v, PADDED),
        (lambda v: v + "\t", PADDED),
        (lambda v: v[:1] + "\x00" + v[1:], CONTROL),
        (lambda v: v[:1] + "\n" + v[1:], CONTROL),
    ],
    ids=[
        "trailing-newline",
        "trailing-crlf",
        "leading-space",
        "trailing-tab",
        "nul-inside",
        "newline-inside",
    ],
)
def test_a_padded_or_controlled_value_is_refused_naming_the_variable(
    variable: str, edit: object, problem: str
) -> None:
    """Each is CONFIG_INVALID naming the environment variable, with the problem of its kind alone (the
    USMAN token's control characters, a trailing newline included, are its header rule's)."""
    value = edit(GOOD[variable])  # type: ignore[operator]
    if variable == "CRM_AUDIT_USMAN_TOKEN" and (problem != PADDED or value.strip(" ") != value.strip()):
        problem = "token must be printable ASCII, without CR, LF or other controls"
    assert refused({variable: value}) == [(f"environment variable {variable}", problem)]


def test_a_key_value_dsn_may_span_lines_but_not_end_with_a_newline() -> None:
    """libpq reads any white space between key=value pairs: a DSN over two lines is one DSN."""
    dsn = f"host=db port=5432\ndbname=crm user=crm password={SECRET}"
    assert load_settings(None, {**GOOD, "CRM_AUDIT_DATABASE_URL": dsn}).database_url == dsn
    assert refused({"CRM_AUDIT_DATABASE_URL": dsn + "\n"}) == [
        ("environment variable CRM_AUDIT_DATABASE_URL", PADDED)
    ]
    assert refused({"CRM_AUDIT_DATABASE_URL": dsn.replace("port", "\x01port")}) == [
        ("environment variable CRM_AUDIT_DATABASE_URL", CONTROL)
    ]


def test_a_settings_file_value_is_refused_naming_its_key(tmp_path: Path) -> None:
    """A TOML multi-line string keeps its last newline: refused, naming the file and key."""
    path = tmp_path / "crm.toml"
    path.write_text(f'mongo_uri = """\nmongodb://cdp:{SECRET}@cdp:27017/\n"""\n', encoding="utf-8")
    environ = {k: v for k, v in GOOD.items() if k != "CRM_AUDIT_MONGO_URI"}
    with pytest.raises(ConfigError) as raised:
        load_settings(path, environ)
    assert raised.value.problems == ((f"settings file {path}: mongo_uri", PADDED),)
    assert SECRET not in str(raised.value)
