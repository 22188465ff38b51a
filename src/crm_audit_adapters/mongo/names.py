"""Collection names of the CDP database; the defaults are the CDP's own, each can be overridden."""

from __future__ import annotations

from attrs import frozen

__all__ = ["CollectionNames"]


@frozen
class CollectionNames:
    """Where each store and each index migration looks; the migration files name the defaults."""

    activity_logs: str = "activity_logs"
    contacts: str = "contacts"
    jobs: str = "crm_activity_log_migration_jobs"

    def resolve(self, default_name: str) -> str:
        """The configured name of a collection the migration files call ``default_name``."""
        defaults = CollectionNames()
        mapping = {
            defaults.activity_logs: self.activity_logs,
            defaults.contacts: self.contacts,
            defaults.jobs: self.jobs,
        }
        return mapping.get(default_name, default_name)
