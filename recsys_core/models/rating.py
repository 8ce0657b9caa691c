"""Rating regression: the ranking model, and the wrapper shared with DLRM and DCN."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs

from recsys_core.distribute import dtype_policy
from recsys_core.features.encoders import IdEmbedding
from recsys_core.features.keras_config import ArgumentsConfig, register
from recsys_core.models.base import Model, RatesInHalves
from recsys_core.schema import RATING


@register
class RatingModel(ArgumentsConfig, Model):
    """Any rating scorer (features -> `[batch]` ratings) trained with MSE over the global batch (`rating_task`),
    reporting RMSE."""

    def __init__(self, scorer: tf.keras.Model, global_batch_size: int) -> None:
        super().__init__()
        self.scorer = scorer
        self.task = rating_task(global_batch_size)

    def call(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        return self.scorer(features)

    @property
    def halves(self) -> RatesInHalves | None:
        return self.scorer if isinstance(self.scorer, RatesInHalves) else None

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        return self.task(labels=features[RATING], predictions=self(features))


def rating_task(global_batch_size: int) -> tfrs.tasks.Ranking:
    """Mean squared error over the global batch, reporting RMSE; in float32 under any dtype policy."""
    with dtype_policy("float32"):
        return tfrs.tasks.Ranking(
            loss=GlobalBatchMeanSquaredError(global_batch_size),
            metrics=[tf.keras.metrics.RootMeanSquaredError(name="rmse")],
        )


class GlobalBatchMeanSquaredError(tf.keras.losses.Loss):
    """Each replica's share of the global batch's mean squared error.

    Replicas' gradients are summed, so dividing by the global batch size (not
    the replica's) gives every strategy the gradient of the default one.
    """

    def __init__(self, global_batch_size: int) -> None:
        super().__init__(reduction=tf.keras.losses.Reduction.SUM, name="global_batch_mse")
        self._global_batch_size = global_batch_size

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        return tf.math.squared_difference(y_true, y_pred) / self._global_batch_size


@register
class RankingScorer(ArgumentsConfig, tf.keras.Model):
    """Biased factor model with an MLP over user and item features.

    rating = mean + b_user + b_item + MLP([user, item, user * item]), `[batch]` float32 (the MLP's last
    layer and the biases are float32 under any dtype policy).
    """

    def __init__(
        self,
        query_encoder: tf.keras.layers.Layer,
        item_encoder: tf.keras.layers.Layer,
        user_bias: tf.keras.layers.Layer,
        item_bias: tf.keras.layers.Layer,
        projection_dim: int,
        hidden_layers: tuple[int, ...],
        rating_mean: float,
        **kwargs,
    ) -> None:
        super().__init__(autocast=False, **kwargs)
        self.query_encoder = query_encoder
        self.item_encoder = item_encoder
        self.user_bias = user_bias
        self.item_bias = item_bias
        self.user_projection = tf.keras.layers.Dense(projection_dim)
        self.item_projection = tf.keras.layers.Dense(projection_dim)
        self.mlp = tf.keras.Sequential(
            [tf.keras.layers.Dense(units, activation="relu") for units in hidden_layers] + [rating_layer(rating_mean)]
        )

    def call(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        user = self.user_projection(self.query_encoder(features))
        item = self.item_projection(self.item_encoder(features))
        interaction = self.mlp(tf.concat([user, item, user * item], axis=1))
        bias = self.user_bias(features) + self.item_bias(features)
        return tf.squeeze(interaction + bias, axis=1)

    # The same rating in two halves, for re-ranking many candidates per user: everything that
    # depends on the user alone or the item alone is computed once per user and once per item
    # (the MLP's first layer splits into a user part, an item part and a part of `user * item`).

    def user_state(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        """User features -> `[users, p + h + 1]`: projection, its share of the first layer (and its bias), bias."""
        user = self.user_projection(self.query_encoder(features))
        first = self.mlp.layers[0]
        return tf.concat([user, user @ first.kernel[: user.shape[-1]] + first.bias, self.user_bias(features)], axis=1)

    def item_state(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        """Item features -> `[items, p + h + 1]`: projection, its share of the first layer, bias."""
        item = self.item_projection(self.item_encoder(features))
        width = item.shape[-1]
        return tf.concat([item, item @ self.mlp.layers[0].kernel[width : 2 * width], self.item_bias(features)], axis=1)

    def rate_states(self, user: tf.Tensor, item: tf.Tensor) -> tf.Tensor:
        """Ratings of `user_state` and `item_state` rows paired by broadcasting, `[..., S]` -> `[...]`; as `call`."""
        first = self.mlp.layers[0]
        width = self.user_projection.units
        user, user_part, user_bias = tf.split(user, [width, first.units, 1], axis=-1)
        item, item_part, item_bias = tf.split(item, [width, first.units, 1], axis=-1)
        hidden = first.activation(user_part + item_part + tf.tensordot(user * item, first.kernel[2 * width :], 1))
        for layer in self.mlp.layers[1:]:
            hidden = layer(hidden)
        return tf.squeeze(hidden + (user_bias + item_bias), axis=-1)


def rating_layer(rating_mean: float) -> tf.keras.layers.Dense:
    """A rating MLP's last layer, `[batch, h]` -> `[batch, 1]`: starts at the mean rating, float32 under any
    dtype policy (in bfloat16, ratings near 4 would be rounded to steps of 1/64)."""
    return tf.keras.layers.Dense(1, bias_initializer=tf.keras.initializers.Constant(rating_mean), dtype="float32")


@register
class IdBias(ArgumentsConfig, tf.keras.layers.Layer):
    """A learned scalar per id (OOV ids share one): `[batch]` strings -> `[batch, 1]` float32."""

    def __init__(self, feature: str, vocabulary: list[str], l2: float, **kwargs) -> None:
        super().__init__(autocast=False, **kwargs)
        self.feature = feature
        self.bias = IdEmbedding(vocabulary, 1, l2, initializer="zeros", dtype="float32")

    def call(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        return self.bias(features[self.feature])
