"""Library of the nightly batch recommendation job.

Importing it does nothing heavy. It is the one place that selects Keras 2
(``tf-keras``) for TensorFlow Recommenders: ``TF_USE_LEGACY_KERAS=1`` must be set
before TensorFlow is imported, so import ``recsys_core`` before ``tensorflow``.
"""

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TensorFlow's C++ log from WARNING up; on a machine without an NVIDIA driver from FATAL up, because TensorFlow's
# CUDA build logs "failed call to cuInit" as an error on every start there (failures still raise in Python).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if os.path.exists("/proc/driver/nvidia/version") else "3")

__version__ = "0.1.0"


def _check_keras_2() -> None:
    """Fails fast when the `tf.keras` TensorFlow resolves is not Keras 2."""
    import importlib.util

    if importlib.util.find_spec("tf_keras") is None:
        raise ImportError(
            "recsys_core needs Keras 2 for tensorflow_recommenders: install it with "
            "`pip install tf-keras==2.20.1` (or `pip install -e .` in this repository)."
        )
    if os.environ["TF_USE_LEGACY_KERAS"] != "1":
        raise ImportError(
            "recsys_core needs Keras 2 (tf-keras) because tensorflow_recommenders refuses "
            f"Keras 3; TF_USE_LEGACY_KERAS={os.environ['TF_USE_LEGACY_KERAS']!r} is set. "
            "Unset it or set TF_USE_LEGACY_KERAS=1."
        )
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        keras_version = getattr(tf.keras, "__version__", "unknown")
        if not keras_version.startswith("2."):
            raise ImportError(
                f"tf.keras is Keras {keras_version}, but recsys_core needs Keras 2: "
                "TensorFlow was imported before recsys_core without TF_USE_LEGACY_KERAS=1. "
                "Import recsys_core first, or export TF_USE_LEGACY_KERAS=1, and make sure "
                "the tf-keras package is installed (pip install tf-keras)."
            )


_check_keras_2()
