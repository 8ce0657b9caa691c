"""What every benchmark here measures the same way: the machine's matmul peak and medians of repeats."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import recsys_core  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

# isort: split
import tensorflow as tf


def median_seconds(run: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    """`(median, every)` wall seconds of `run()` over `repeats` calls, after one untimed warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


class EpochTimer(tf.keras.callbacks.Callback):
    """`seconds`: the wall time of every epoch of a fit."""

    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def matmul_peak_gflops(n: int = 4096, repeats: int = 5) -> float:
    """GFLOP/s of an `[n, n] @ [n, n]` fp32 `tf.matmul`, median of `repeats`: the machine's practical peak."""
    a, b = tf.random.normal([n, n]), tf.random.normal([n, n])
    seconds, _ = median_seconds(lambda: tf.matmul(a, b).numpy(), repeats)
    return 2 * n**3 / seconds / 1e9
