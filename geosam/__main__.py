"""``python -m geosam`` runs the CLI."""

import sys

from geosam.cli.main import main

sys.exit(main())
