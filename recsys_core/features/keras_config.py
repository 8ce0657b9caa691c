"""Keras `get_config` / `from_config` for the layers and models whose constructor arguments are their config.

A class takes `ArgumentsConfig` as its first base and is `register`ed; its constructor's
arguments are recorded as it is called. `get_config` encodes
them as JSON values (schema features by their schema entry, a vocabulary by its JSON,
layers and models by `tf.keras.layers.serialize`, arrays as lists); `from_config`
decodes them and calls the constructor again, so a model round-trips through
`tf.keras.layers.serialize` / `deserialize` as Keras's own layers do (weights not
included: copy them with `set_weights`).
"""

from __future__ import annotations

import functools
import inspect
import json

import numpy as np
import tensorflow as tf

from recsys_core.features.vocabulary import FeatureVocabulary
from recsys_core.schema import Feature

PACKAGE = "recsys_core"
_FEATURE, _VOCABULARY, _LAYER, _ARRAY = "__feature__", "__vocabulary__", "__layer__", "__array__"


def register(cls):
    """Registers `cls` with Keras under `recsys_core>ClassName`, so `tf.keras.layers.deserialize` finds it."""
    return tf.keras.utils.register_keras_serializable(package=PACKAGE)(cls)


class ArgumentsConfig:
    """Mixin: `get_config` is the arguments the constructor was called with (each subclass's `__init__` records
    them), `from_config` calls it with them."""

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _recording(cls.__dict__["__init__"])

    @tf.__internal__.tracking.no_automatic_dependency_tracking
    def _keep_arguments(self, arguments: dict) -> None:
        """Not tracked: the layers among the arguments are tracked as the attributes the constructor sets."""
        self._constructor_arguments = arguments

    def get_config(self) -> dict:
        return {**super().get_config(), **{name: encode(value) for name, value in self._constructor_arguments.items()}}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**{name: decode(value) for name, value in config.items()})

    def get_build_config(self) -> None:
        """None: these layers build on their first call, from feature dicts of mixed dtypes (Keras would build
        them from float placeholders of the recorded shapes)."""
        return None


def _recording(init):
    """`init`, then its arguments by name (those given; `**kwargs` spread out) kept for `get_config`."""
    signature = inspect.signature(init)
    spread = [p.name for p in signature.parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD]

    @functools.wraps(init)
    def recording_init(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        arguments = signature.bind(self, *args, **kwargs).arguments
        del arguments["self"]
        for name in spread:
            arguments.update(arguments.pop(name, {}))
        self._keep_arguments(dict(arguments))

    return recording_init


def encode(value):
    """A constructor argument as a JSON value (see the module's docstring)."""
    if isinstance(value, FeatureVocabulary):
        return {_VOCABULARY: json.loads(value.to_json())}
    if isinstance(value, Feature):
        return {_FEATURE: value.to_dict()}
    if isinstance(value, tf.keras.layers.Layer):
        return {_LAYER: tf.keras.layers.serialize(value)}
    if isinstance(value, np.ndarray):
        return {_ARRAY: value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, list | tuple):
        return [encode(item) for item in value]
    return value


def decode(value):
    """The argument `encode` made `value` of."""
    if isinstance(value, list):
        return [decode(item) for item in value]
    if not isinstance(value, dict):
        return value
    if _VOCABULARY in value:
        return FeatureVocabulary.from_json(json.dumps(value[_VOCABULARY]))
    if _FEATURE in value:
        return Feature.from_dict(value[_FEATURE])
    if _LAYER in value:
        return tf.keras.layers.deserialize(value[_LAYER])
    if _ARRAY in value:
        return np.asarray(value[_ARRAY], value["dtype"])
    return {name: decode(item) for name, item in value.items()}
