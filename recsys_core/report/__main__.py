"""`python -m recsys_core.report`: see `recsys_core.report.figures`."""

import sys

from recsys_core.report.figures import main

sys.exit(main())
