"""Blocks scored a few at a time on a thread pool, their results handed back in the order they came in.

TensorFlow, numpy and Arrow release the GIL, and one block at a time keeps a worker's
cores only partly busy (parts of the selection and of the row building run on one
core): a few blocks in flight side by side fill them. The in-process kernel
(`recommend.recommend_blocks`) and the job's scoring step (`jobs.scoring`) both use it.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class BlocksInFlight:
    """`score(block)` for each submitted block, at most `in_flight` at a time (default 2 per core).

    `submit` starts a block and yields the oldest `(key, result)` pairs while more than
    `in_flight` are pending, so memory holds a bounded number of results; `drain`
    yields the rest. A block whose scoring raised raises when its turn comes.
    """

    def __init__(self, score: Callable[[Any], Any], in_flight: int | None = None) -> None:
        self.in_flight = in_flight or 2 * (os.cpu_count() or 1)
        self._score = score
        self._pool = ThreadPoolExecutor(max_workers=self.in_flight, thread_name_prefix="blocks-in-flight")
        self._pending: collections.deque[tuple[Hashable, Future]] = collections.deque()

    def submit(self, key: Hashable, block: Any) -> Iterator[tuple[Hashable, Any]]:
        self._pending.append((key, self._pool.submit(self._score, block)))
        while len(self._pending) > self.in_flight:
            yield self._oldest()

    def drain(self) -> Iterator[tuple[Hashable, Any]]:
        while self._pending:
            yield self._oldest()

    def forget(self) -> None:
        """Drops every pending block (a failed Beam bundle's, before its retry), cancelling those not started."""
        while self._pending:
            self._pending.popleft()[1].cancel()

    def close(self) -> None:
        self.forget()
        self._pool.shutdown()

    def _oldest(self) -> tuple[Hashable, Any]:
        key, future = self._pending.popleft()
        return key, future.result()
