"""``python -m igbridge.relay`` is ``igbridge-relay``."""

import sys

from .cli import main

sys.exit(main())
