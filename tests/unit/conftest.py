"""Fixtures of the unit tests of the CLI's confirmations."""

from __future__ import annotations

import pytest

from crm_audit_adapters.cli import confirmation


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """stdin is a terminal (CliRunner's is not): the prompt is asked."""
    monkeypatch.setattr(confirmation, "stdin_is_a_terminal", lambda: True)
