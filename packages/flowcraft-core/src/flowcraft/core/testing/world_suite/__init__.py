"""The World conformance suite: import it into a test module of the implementation.

from flowcraft.core.testing.world_suite import *  # noqa: F403

The ``world`` fixture and the options come from ``flowcraft.core.testing.world_plugin``.
"""

from flowcraft.core.testing.world_suite.test_world_events import *  # noqa: F403
from flowcraft.core.testing.world_suite.test_world_hooks_waits import *  # noqa: F403
from flowcraft.core.testing.world_suite.test_world_queue import *  # noqa: F403
from flowcraft.core.testing.world_suite.test_world_runs import *  # noqa: F403
from flowcraft.core.testing.world_suite.test_world_steps import *  # noqa: F403
from flowcraft.core.testing.world_suite.test_world_streams import *  # noqa: F403
from flowcraft.core.testing.world_suite.test_world_workflows import *  # noqa: F403
