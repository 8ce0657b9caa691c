"""How training uses the hardware: the one `tf.distribute` strategy factory, and the dtype policy."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from urllib.parse import urlparse

import tensorflow as tf


class StrategyError(RuntimeError):
    """The requested strategy cannot run here; the message says why and what to do."""


def split_cpu(num_devices: int) -> None:
    """Splits the host CPU into `num_devices` logical devices (before TF initialises devices).

    Lets `mirrored` run over several replicas on a machine without GPUs.
    """
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_devices)


def make_strategy(name: str, tpu: str = "") -> tf.distribute.Strategy:
    """Returns the strategy named `default`, `one_device`, `mirrored`, `multi_worker_mirrored` or `tpu`.

    `mirrored` uses every GPU, or every logical CPU device when there is no GPU.
    `multi_worker_mirrored` reads the cluster from `TF_CONFIG`. `tpu` connects to
    the TPU at `tpu` (a name, `grpc://host:port`, or `local` on a TPU VM).
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi_worker_mirrored":
        if "TF_CONFIG" not in os.environ:
            raise StrategyError(
                "multi_worker_mirrored needs TF_CONFIG with the cluster and this worker's task, e.g. "
                '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'
            )
        json.loads(os.environ["TF_CONFIG"])
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        return _tpu_strategy(tpu)
    raise ValueError(f"unknown strategy {name!r}; use default, one_device, mirrored, multi_worker_mirrored or tpu")


@contextlib.contextmanager
def dtype_policy(name: str):
    """Keras's global dtype policy is `name` ("float32", "mixed_float16", "mixed_bfloat16") inside the block.

    Layers take the policy in force when they are built: under a mixed policy they compute in
    16-bit floats and keep their variables in float32.
    """
    previous = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        tf.keras.mixed_precision.set_global_policy(previous)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that writes the bundle (always true outside multi-worker training)."""
    resolver = strategy.cluster_resolver
    if resolver is None or resolver.task_type is None:
        return True
    if "chief" in resolver.cluster_spec().as_dict():
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and resolver.task_id == 0


def _tpu_strategy(address: str) -> tf.distribute.Strategy:
    if not address:
        raise StrategyError("--strategy tpu needs --tpu: a TPU name, grpc://host:port, or 'local' on a TPU VM")
    if address.startswith("grpc://"):
        parsed = urlparse(address)
        try:
            socket.create_connection((parsed.hostname, parsed.port or 8470), timeout=5).close()
        except OSError as error:
            raise StrategyError(
                f"no TPU reachable at {address}: {error}. Check the address and the TPU's state"
            ) from error
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except Exception as error:  # the resolver raises many types for an absent TPU
        raise StrategyError(f"could not connect to TPU {address!r}: {error}") from error
    if not tf.config.list_logical_devices("TPU"):
        raise StrategyError(f"TPU {address!r} was resolved but shows no TPU devices")
    return tf.distribute.TPUStrategy(resolver)
