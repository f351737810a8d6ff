"""The conformance suite: import it into a test module of the adapter to run it.

from flowcraft.core.testing.suite import *  # noqa: F403
"""

from flowcraft.core.testing.suite.test_client import *  # noqa: F403
from flowcraft.core.testing.suite.test_constructs import *  # noqa: F403
from flowcraft.core.testing.suite.test_events import *  # noqa: F403
from flowcraft.core.testing.suite.test_failures import *  # noqa: F403
from flowcraft.core.testing.suite.test_faults import *  # noqa: F403
from flowcraft.core.testing.suite.test_ports_coordination import *  # noqa: F403
from flowcraft.core.testing.suite.test_ports_notices import *  # noqa: F403
from flowcraft.core.testing.suite.test_ports_notifier import *  # noqa: F403
from flowcraft.core.testing.suite.test_ports_queue import *  # noqa: F403
from flowcraft.core.testing.suite.test_ports_results import *  # noqa: F403
from flowcraft.core.testing.suite.test_ports_started import *  # noqa: F403
from flowcraft.core.testing.suite.test_ports_store import *  # noqa: F403
from flowcraft.core.testing.suite.test_routing import *  # noqa: F403
from flowcraft.core.testing.suite.test_wait_resume import *  # noqa: F403
from flowcraft.core.testing.suite.test_workers import *  # noqa: F403
