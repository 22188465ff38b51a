"""Session-wide fixtures: PostgreSQL, the MongoDB backends, Redis and Celery workers live in tests/support."""

from support.celery_workers import *  # noqa: F403
from support.mongo import *  # noqa: F403
from support.postgres import *  # noqa: F403
from support.redis_server import *  # noqa: F403
from support.wire_mongo import *  # noqa: F403
