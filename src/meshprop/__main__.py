"""``python -m meshprop`` (also what ``torchrun -m meshprop`` runs)."""

import sys

from .cli import main

sys.exit(main())
