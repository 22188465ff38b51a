"""``page_bytes``: the text a PostgreSQL page holds, a runner setting like ``page_size``."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm_audit_adapters.crm_postgres.audits import DEFAULT_PAGE_BYTES as SOURCE_DEFAULT
from crm_audit_adapters.settings import DEFAULT_PAGE_BYTES, load_settings
from crm_audit_transform.errors import ConfigError

MIB = 1024 * 1024


class TestPageBytesSetting:
    def test_the_default_is_the_postgres_sources_own(self) -> None:
        """Unset, a run's pages keep the source's 32 MiB budget, and ``config`` shows it."""
        settings = load_settings(None, {})
        assert settings.page_bytes == DEFAULT_PAGE_BYTES == SOURCE_DEFAULT == 32 * MIB
        assert settings.describe()["page_bytes"] == 32 * MIB

    def test_the_environment_and_the_file_set_it(self, tmp_path: Path) -> None:
        """``CRM_AUDIT_PAGE_BYTES`` or ``page_bytes`` in the file; the environment wins."""
        path = tmp_path / "crm.toml"
        path.write_text(f"page_bytes = {8 * MIB}\n", encoding="utf-8")
        assert load_settings(path, {}).page_bytes == 8 * MIB
        assert load_settings(path, {"CRM_AUDIT_PAGE_BYTES": str(4 * MIB)}).page_bytes == 4 * MIB
        assert load_settings(path, {}).describe()["page_bytes"] == 8 * MIB

    @pytest.mark.parametrize("given", ["32", str(MIB - 1), str(1024 * MIB + 1), "0", "-1"])
    def test_a_budget_outside_1_mib_to_1_gib_is_refused(self, given: str) -> None:
        """Bytes, not MiB: ``32`` is refused rather than making every page one row, as is past 1 GiB."""
        with pytest.raises(ConfigError) as raised:
            load_settings(None, {"CRM_AUDIT_PAGE_BYTES": given})
        assert list(raised.value.problems) == [
            ("environment variable CRM_AUDIT_PAGE_BYTES", f"must be in [1048576, 1073741824], got {given}")
        ]

    def test_a_toml_float_is_refused(self, tmp_path: Path) -> None:
        """An integer setting takes a TOML integer, as ``page_size`` does."""
        path = tmp_path / "crm.toml"
        path.write_text("page_bytes = 33554432.0\n", encoding="utf-8")
        with pytest.raises(ConfigError) as raised:
            load_settings(path, {})
        ((where, problem),) = raised.value.problems
        assert where == f"settings file {path}: page_bytes"
        assert problem.startswith("expected an integer")
