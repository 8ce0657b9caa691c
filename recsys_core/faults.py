"""Fault injection for the crash tests: `RECSYS_FAULT=<point>` kills the process (SIGKILL) at that point.

Points: `train:<stage>` (half-way through a fit's second epoch, e.g. `train:ranking` or
`train:retrieval-refit`), `job:read`, `job:score`, `job:write` (the first batch of each),
`publish:before_pointer`, `publish:before_latest`. Unset (always, outside tests),
`fault_point` does nothing.
"""

from __future__ import annotations

import os
import signal

VARIABLE = "RECSYS_FAULT"


def fault_point(name: str) -> None:
    """Dies here, as a killed machine would (no cleanup, no exception), when `RECSYS_FAULT` names this point."""
    if os.environ.get(VARIABLE) == name:
        os.kill(os.getpid(), signal.SIGKILL)
