"""``python -m igbridge.operator`` is ``igbridge-operator``."""

import sys

from .cli import main

sys.exit(main())
