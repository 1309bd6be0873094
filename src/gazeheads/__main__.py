"""`python -m gazeheads ...`: the gazeheads command line."""

import sys

from .cli import main

sys.exit(main())
