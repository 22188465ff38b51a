"""The syrupy example of docs/golden-testing.md works as written: it is run here, verbatim.

The example becomes a test file of a throwaway pytest project (pytester), as in a team's own repo:
a first run writes its snapshots, a second run matches them, and a changed mapping fails it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

DOC = Path(__file__).resolve().parents[2] / "docs" / "golden-testing.md"
REDACTED_PHONE = 'redacted=(*DEFAULT.columns.redacted, "phone")'


def doc_example() -> str:
    """The first Python code block of the document."""
    match = re.search(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert match is not None, "docs/golden-testing.md has no python example"
    return match.group(1)


def snapshot_texts(pytester: pytest.Pytester) -> dict[str, str]:
    folder = pytester.path / "__snapshots__" / "test_our_mapping"
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.json"))}


class TestGoldenKitExample:
    def test_the_documented_example_snapshots_and_then_guards_a_custom_mapping(
        self, pytester: pytest.Pytester
    ) -> None:
        """The doc's code writes one snapshot per tenant, matches them next run, and fails on a change."""
        code = doc_example()
        assert "load_default_config()" in code
        assert REDACTED_PHONE in code
        pytester.makepyfile(test_our_mapping=code)

        pytester.runpytest_inprocess("-p", "no:cacheprovider", "--snapshot-update").assert_outcomes(passed=5)
        snapshots = snapshot_texts(pytester)
        assert len(snapshots) == 5
        acme = next(text for name, text in snapshots.items() if "[acme]" in name)
        assert '"[REDACTED]"' in acme  # the custom configuration is what was snapshotted

        pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=5)

        pytester.makepyfile(test_our_mapping=code.replace(REDACTED_PHONE, "redacted=()"))
        changed = pytester.runpytest_inprocess("-p", "no:cacheprovider")
        assert changed.parseoutcomes().get("failed", 0) >= 1
        assert snapshot_texts(pytester) == snapshots  # a failing run rewrites nothing
