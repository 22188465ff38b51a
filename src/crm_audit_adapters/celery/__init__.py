"""Scale-out on Celery with a Redis broker: ``pip install 'crm-audit-transform[celery]'``.

``make_app(settings)`` builds the app with the tasks registered; ``crm-audit-migrate worker`` runs
it and ``crm-audit-migrate enqueue`` triggers accounts and sends their tasks (docs/scale-out.md).
"""

from .app import QUEUE, make_app
from .tasks import ENRICH_ACCOUNT, MIGRATE_ACCOUNT, MIGRATE_SHARD, VERIFY_ACCOUNT

__all__ = ["ENRICH_ACCOUNT", "MIGRATE_ACCOUNT", "MIGRATE_SHARD", "QUEUE", "VERIFY_ACCOUNT", "make_app"]
