"""Console logging of the entry points (`train.py`, `jobs.*`, `recsys_core.report`)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys


def configure_logging() -> None:
    """INFO with timestamps; TensorFlow's absl chatter (a line per checkpoint written) and Beam's
    internals (type-hint conversions, shard renames, worker start-up) only from WARNING.

    `force`: importing Beam may already have configured the root logger.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
    for noisy in ("absl", "apache_beam"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # TensorFlow gives its logger a handler of its own when the root logger had none at its import: each of
    # its warnings ("callback is slow") then printed twice, once there and once through the root's.
    tensorflow = logging.getLogger("tensorflow")
    for handler in list(tensorflow.handlers):
        tensorflow.removeHandler(handler)


def keras_verbosity(verbose: int) -> int:
    """Keras' `verbose` for a fit: progress bars (1) only on a terminal; written to a file (a scheduler's log)
    they are thousands of carriage-return updates on a few enormous lines, so one line per epoch (2) there."""
    return 2 if verbose == 1 and not sys.stdout.isatty() else verbose


@contextlib.contextmanager
def native_stderr_silenced():
    """Sends file descriptor 2 to /dev/null for the block: C++ libraries (ScaNN) that log through absl
    print INFO lines that Python's logging cannot filter. Python exceptions still carry the errors."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
