"""Redis implementations of core ports, shared by the adapters (``flowcraft-core[redis]``).

``RedisCoordinationStore`` implements ``flowcraft.core.ports.CoordinationStore``; its spec sheet
(key layout, atomicity, TTLs, limits) is the docstring of ``flowcraft.core.redis._store``.
``NotifyingRunStore`` wraps a run store that cannot notify and adds ``ports.RunNotifier``
through Redis pub/sub (spec sheet: ``flowcraft.core.redis._notify``).
``drop_namespace_keys`` deletes a namespace's keys (a backend factory's ``destroy``).
Importing this package needs the ``redis`` distribution (``pip install flowcraft-core[redis]``).
"""

from flowcraft.core.redis._admin import drop_namespace_keys
from flowcraft.core.redis._notify import NotifyingRunStore
from flowcraft.core.redis._store import RedisCoordinationStore, default_run_of_key

__all__ = [
    "NotifyingRunStore",
    "RedisCoordinationStore",
    "default_run_of_key",
    "drop_namespace_keys",
]
