"""`python -m widedeep.cli ARGS`: the `widedeep` command."""

import sys

from widedeep.cli.entry_point import main

sys.exit(main())
