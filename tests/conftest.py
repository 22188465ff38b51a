"""Session-wide fixtures: the throwaway PostgreSQL cluster and the MongoDB backends live in tests/support."""

from support.mongo import *  # noqa: F403
from support.postgres import *  # noqa: F403
