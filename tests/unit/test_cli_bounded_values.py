"""A usage error quotes each value of the command line it echoes whole up to 256 characters, and a
longer one cut to its first 200 and its length, in its line and its ``--json`` document.

click quotes a refused value whole: ``explain --audit-id`` of 5,000 digits was a 5,000-character
``USAGE`` line, and an unknown option, an extra argument or any option's value the same. The cut's
form is the files adapters' (``files.errors.cut``); the bound, ``options.SHOWN_CHARS``, leaves a
file's path whole.
"""

from __future__ import annotations

import json

import mongomock
import pytest
from click.testing import CliRunner

from crm_audit_adapters.cli import Overrides, cli, exit_codes
from crm_audit_adapters.cli.options import CUT_TO, SHOWN_CHARS, bounded, shown_word

LONG = 5000
EXPLAIN = ["explain", "--company-sso-id", "c", "--json"]
TRIGGER = ["trigger", "--company-sso-id", "c", "--json"]


def usage(args: list[str]) -> tuple[str, str]:
    """The ``USAGE`` line (stderr) and its document's message for ``args``."""
    result = CliRunner().invoke(cli, args, env={"CRM_AUDIT_SETTINGS": ""})
    assert result.exit_code == exit_codes.USAGE, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith("error: USAGE: ")
    document = json.loads(result.stdout)
    assert document["error"]["code"] == "USAGE"
    return lines[0], document["error"]["message"]


@pytest.mark.parametrize(
    ("args", "echoed"),
    [
        ([*EXPLAIN, "--audit-id", "1" * LONG], "1" * LONG),  # past int()'s digits: "not a valid integer"
        ([*EXPLAIN, "--audit-id", "x" * LONG], "x" * LONG),
        ([*EXPLAIN, f"--audit-id={'y' * LONG}"], "y" * LONG),
        ([*TRIGGER, "--shards", "9" * 400], "9" * 400),  # an integer out of range, written back
        ([*TRIGGER, "--shards", "+000" + "8" * 400], "8" * 400),  # ... as click writes it: no sign, no zeros
        ([*TRIGGER, "--date-range-start", "2" * LONG], "2" * LONG),
        ([*TRIGGER, "--" + "w" * LONG], "--" + "w" * LONG),  # an unknown option
        ([*TRIGGER, "e" * LONG], "e" * LONG),  # an extra argument
        (["verify", "--company-sso-id", "c", "--json", "--sample", "s" * LONG], "s" * LONG),
    ],
    ids=["digits", "text", "joined", "range", "range-written-back", "date", "option", "extra", "sample"],
)
def test_a_long_value_is_cut_in_the_line_and_the_document(args: list[str], echoed: str) -> None:
    """Fails on the old code: the whole value in both."""
    line, message = usage(args)
    assert echoed not in line
    assert echoed not in message
    cut = f"{echoed[:CUT_TO]}… ({len(echoed)} characters)"
    assert cut in line
    assert cut in message
    assert len(message) < 400


def test_a_short_value_is_quoted_whole() -> None:
    value = "7" * (SHOWN_CHARS - 1) + "x"
    _, message = usage([*EXPLAIN, "--audit-id", value])
    assert message == f"Invalid value for '--audit-id': '{value}' is not a valid integer range."


def test_the_bound_is_256_characters_cut_to_200() -> None:
    assert (SHOWN_CHARS, CUT_TO) == (256, 200)
    assert shown_word("a" * SHOWN_CHARS) == "a" * SHOWN_CHARS
    assert shown_word("a" * (SHOWN_CHARS + 1)) == "a" * CUT_TO + f"… ({SHOWN_CHARS + 1} characters)"
    assert bounded("no 'echo' here", ["b" * 300]) == "no 'echo' here"
    quoted = "it's\n" + "q" * 300  # repr escapes the line break and quotes with "
    assert bounded(f"got {quoted!r}.", [quoted]) == f"got {shown_word(quoted)!r}."


@pytest.mark.parametrize("audit_id", [str(2**63), f"--audit-id={-(2**63) - 1}", "1" * 400])
def test_an_audit_id_outside_bigint_is_a_usage_error(audit_id: str) -> None:
    """audited's ``audits.id`` is a bigint: another id names no row. Fails on the old code: it went
    to the database and ended ``AUDIT_NOT_FOUND`` (exit 4) quoting every digit, up to 4,300."""
    args = [*EXPLAIN, audit_id] if audit_id.startswith("--") else [*EXPLAIN, "--audit-id", audit_id]
    _, message = usage(args)
    assert message.startswith("Invalid value for '--audit-id': ")
    assert message.endswith("is not in the range -9223372036854775808<=x<=9223372036854775807.")
    assert len(message) < 400


@pytest.mark.parametrize("audit_id", [str(2**63 - 1), f"--audit-id={-(2**63)}"])
def test_an_audit_id_inside_bigint_is_taken(audit_id: str) -> None:
    """Taken to the service (here its settings are missing: ``CONFIG_INVALID``, no usage error)."""
    args = [*EXPLAIN, audit_id] if audit_id.startswith("--") else [*EXPLAIN, "--audit-id", audit_id]
    result = CliRunner().invoke(cli, args, env={"CRM_AUDIT_SETTINGS": "", "CRM_AUDIT_MONGO_URI": ""})
    assert json.loads(result.stdout)["error"]["code"] == "CONFIG_INVALID"


def test_a_commands_own_error_cuts_a_long_value_of_the_command_line_too() -> None:
    """``TENANT_MISMATCH`` quotes the ``--tenant`` given: of 5,000 characters, whole in the line and
    the document. Fails on the old code. The service refuses it before any server is asked."""
    tenant = "t" * LONG
    args = ["explain", "--company-sso-id", "c", "--audit-id", "1", "--tenant", tenant, "--json"]
    env = {
        "CRM_AUDIT_SETTINGS": "",
        "CRM_AUDIT_MONGO_URI": "mongodb://unused.invalid",
        "CRM_AUDIT_DATABASE_URL": "postgresql://u@127.0.0.1:1/db",
        "CRM_AUDIT_TENANTS": "c=acme",
    }
    result = CliRunner().invoke(cli, args, env=env, obj=Overrides(mongo_client=mongomock.MongoClient()))
    error = json.loads(result.stdout)["error"]
    assert (result.exit_code, error["code"]) == (exit_codes.REFUSED, "TENANT_MISMATCH")
    cut = shown_word(tenant)
    assert tenant not in result.stderr
    assert tenant not in error["message"]
    assert cut in result.stderr
    assert cut in error["message"]
