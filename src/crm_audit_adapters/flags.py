"""Feature flags from configuration: the accounts the migration is switched on for.

``CRM_AUDIT_ENABLED_COMPANIES="a,b"`` enables two accounts, ``"*"`` every account, and an empty
or missing value none — the migration is off unless someone switched it on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

ENV_VAR: Final = "CRM_AUDIT_ENABLED_COMPANIES"
ALL: Final = "*"


class ConfiguredFeatureFlags:
    """Implements ``ports.FeatureFlags`` from a fixed list of company SSO ids (or ``*``)."""

    __slots__ = ("_enabled",)

    def __init__(self, enabled: Iterable[str] = ()) -> None:
        self._enabled = frozenset(item.strip() for item in enabled if item.strip())

    @classmethod
    def parse(cls, text: str) -> ConfiguredFeatureFlags:
        """``"a,b"`` → a and b; ``"*"`` → every account; ``""`` → none."""
        return cls(text.split(","))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ConfiguredFeatureFlags:
        return cls.parse(environ.get(ENV_VAR, ""))

    @property
    def enabled(self) -> frozenset[str]:
        return self._enabled

    def is_enabled(self, company_sso_id: str) -> bool:
        return ALL in self._enabled or company_sso_id in self._enabled

    def __repr__(self) -> str:
        return f"ConfiguredFeatureFlags({sorted(self._enabled)!r})"
