"""The query tower's history input: each user's most recent items, as padded id matrices.

Training, offline evaluation and the batch job all build it here, from the same
per-user item lists (oldest first), so the query tower sees the same kind of
input everywhere.
"""

from __future__ import annotations

import numpy as np

from recsys_core.schema import PADDING


def history_matrix(seen: list[np.ndarray], item_ids: np.ndarray, length: int) -> np.ndarray:
    """Ids of each user's last `length` items, padded with b"".

    Args:
        seen: per user, item indices into `item_ids`, oldest first.
        item_ids: `[items]` object array of item ids (bytes).
        length: most items kept per user (the most recent ones).

    Returns:
        `[users, max(1, min(length, longest list))]` object array of bytes.
    """
    width = max(1, min(length, max((len(s) for s in seen), default=0)))
    matrix = np.full((len(seen), width), PADDING, dtype=object)
    for row, items in enumerate(seen):
        recent = np.asarray(items[len(items) - min(len(items), width) :], dtype=np.int64)
        matrix[row, : len(recent)] = item_ids[recent]
    return matrix
