"""Testing support for Flowcraft: node behaviours of the worked examples, test doubles.

Public for adapter authors and users' own tests. The conformance suite lives here as well.
"""

from flowcraft.core.testing.behaviours import Behaviours, PyExpression

__all__ = ["Behaviours", "PyExpression"]
