"""The error for a setting an operation needs that neither the environment nor the file gives."""

from __future__ import annotations

from crm_audit_transform.errors import ConfigError


def setting_not_set(setting: str, env: str) -> ConfigError:
    """``ConfigError`` naming ``setting`` and ``env``, the two ways to give it."""
    return ConfigError(
        [(setting, f"not set: give {env} or `{setting}` in the settings file")],
        source="the runner's settings",
    )
