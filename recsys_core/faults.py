"""Fault injection for the crash tests: `RECSYS_FAULT=<point>` kills the process (SIGKILL) at that point.

Points: `train:<stage>` (half-way through a fit's second epoch, e.g. `train:ranking` or
`train:retrieval-refit`); `job:read`, `job:score`, `job:write` (the first batch of each, in
whichever process runs it: a worker process under `--direct_running_mode multi_processing`),
`job:mid_write` (half of the first file written); `publish:before_pointer`,
`publish:before_rename` (the date's pointer written under its temporary name),
`publish:before_latest`; `cleanup:partway` (one leftover of killed runs removed, the others
not). Unset (always, outside tests), `fault_point` does nothing.
"""

from __future__ import annotations

import os
import signal

VARIABLE = "RECSYS_FAULT"


def fault_point(name: str) -> None:
    """Dies here, as a killed machine would (no cleanup, no exception), when `RECSYS_FAULT` names this point."""
    if os.environ.get(VARIABLE) == name:
        os.kill(os.getpid(), signal.SIGKILL)
