"""``python -m l2ul.cli`` runs the command-line interface."""
import sys

from . import main

sys.exit(main())
