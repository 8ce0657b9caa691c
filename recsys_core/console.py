"""Console logging of the entry points (`train.py`, `jobs.*`, `recsys_core.report`)."""

from __future__ import annotations

import logging


def configure_logging() -> None:
    """INFO with timestamps; TensorFlow's absl chatter (a line per checkpoint written) and Beam's
    internals (type-hint conversions, shard renames, worker start-up) only from WARNING.

    `force`: importing Beam may already have configured the root logger.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
    for noisy in ("absl", "apache_beam"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
