"""`python -m envios ...`: the same as the `envios` console script."""

import sys

from envios.cli import main

sys.exit(main())
