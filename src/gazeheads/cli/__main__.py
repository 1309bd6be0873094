"""`python -m gazeheads.cli ...` (as under `accelerate launch`): the gazeheads command line."""

import sys

from . import main

sys.exit(main())
