"""``python -m flowcraft.core`` runs the CLI."""

import sys

from flowcraft.core.cli import main

sys.exit(main())
