"""Config + feature schema -> built TFRS models. Call inside `strategy.scope()`.

`build_model` looks the name up in `registry.MODELS`, whose entries point at the
`build_*` functions below; each reads the schema features its model `reads`.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs

from recsys_core import registry
from recsys_core.config import ExperimentConfig, FitConfig, RetrievalConfig
from recsys_core.features.encoders import ItemEncoder, QueryEncoder
from recsys_core.features.vocabulary import FeatureVocabulary
from recsys_core.models.dlrm import CrossHead, DlrmEmbeddings, DlrmScorer, DotInteractionHead
from recsys_core.models.multitask import MultitaskModel
from recsys_core.models.rating import IdBias, RankingScorer, RatingModel, rating_layer
from recsys_core.models.retrieval import RetrievalModel, Tower
from recsys_core.schema import ITEM_ID, USER_ID, FeatureSchema


def build_model(name: str, config: ExperimentConfig, schema: FeatureSchema, vocab: FeatureVocabulary) -> tfrs.Model:
    """Builds the named model (see `registry.MODELS`); `ValueError` for an unknown name."""
    return registry.spec(name).build(config, schema, vocab)


def build_retrieval(name: str, config: ExperimentConfig, schema: FeatureSchema, vocab: FeatureVocabulary):
    query_tower, candidate_tower = build_towers(config.retrieval, schema, vocab)
    cfg = config.retrieval
    return RetrievalModel(query_tower, candidate_tower, cfg.temperature, cfg.remove_accidental_hits, correction(cfg))


def build_ranking(name: str, config: ExperimentConfig, schema: FeatureSchema, vocab: FeatureVocabulary):
    cfg = config.ranking
    scorer = RankingScorer(
        QueryEncoder(
            schema.of("user", "ranking"),
            vocab,
            cfg.embedding_dim,
            use_time=cfg.use_time,
            use_history=cfg.use_history,
            l2=cfg.l2,
        ),
        ItemEncoder(schema.of("item", "ranking"), vocab, cfg.embedding_dim, l2=cfg.l2),
        *_biases(vocab, cfg.l2),
        projection_dim=cfg.embedding_dim,
        hidden_layers=cfg.hidden_layers,
        rating_mean=vocab.rating_mean,
    )
    return RatingModel(scorer, cfg.batch_size)


def build_dlrm(name: str, config: ExperimentConfig, schema: FeatureSchema, vocab: FeatureVocabulary):
    """DLRM (`name="dlrm"`, dot interaction) or DCN (`name="dcn"`, cross layers)."""
    cfg = getattr(config, name)
    features = schema.of("user", "dlrm") + schema.of("item", "dlrm")
    embeddings = DlrmEmbeddings(features, vocab, cfg.embedding_dim, cfg.bottom_layers, cfg.l2, cfg.use_time)
    interaction = DotInteractionHead(cfg.self_interaction) if name == "dlrm" else CrossHead(cfg.cross_layers)
    scorer = DlrmScorer(embeddings, interaction, cfg.top_layers, _biases(vocab, cfg.l2), vocab.rating_mean)
    return RatingModel(scorer, cfg.batch_size)


def build_multitask(name: str, config: ExperimentConfig, schema: FeatureSchema, vocab: FeatureVocabulary):
    cfg = config.multitask
    query_tower, candidate_tower = build_towers(config.retrieval, schema, vocab)
    head = tf.keras.Sequential(
        [tf.keras.layers.Dense(units, activation="relu") for units in cfg.rating_layers]
        + [rating_layer(vocab.rating_mean)]
    )
    return MultitaskModel(
        query_tower,
        candidate_tower,
        head,
        config.retrieval.temperature,
        config.retrieval.remove_accidental_hits,
        cfg.batch_size,
        cfg.retrieval_weight,
        cfg.rating_weight,
        correction(config.retrieval),
    )


def _biases(vocab: FeatureVocabulary, l2: float) -> tuple[IdBias, IdBias]:
    return IdBias(USER_ID, vocab.user_ids, l2), IdBias(ITEM_ID, vocab.item_ids, l2)


def build_towers(cfg: RetrievalConfig, schema: FeatureSchema, vocab: FeatureVocabulary) -> tuple[Tower, Tower]:
    """Query and candidate towers, each ending in `cfg.tower_layers[-1]` units."""
    query = QueryEncoder(
        schema.of("user", "towers"),
        vocab,
        cfg.embedding_dim,
        cfg.use_user_features,
        cfg.use_time,
        cfg.use_history,
        cfg.l2,
    )
    item_features = schema.of("item", "towers") if cfg.use_item_features else ()
    item = ItemEncoder(item_features, vocab, cfg.embedding_dim, cfg.l2)
    return Tower(query, cfg.tower_layers, name="query_tower"), Tower(item, cfg.tower_layers, name="candidate_tower")


def correction(cfg: RetrievalConfig) -> float:
    """Strength of the logQ correction of the retrieval loss (0: none)."""
    return cfg.correction_strength if cfg.sampling_correction else 0.0


def build_optimizer(cfg: FitConfig) -> tf.keras.optimizers.Optimizer:
    optimizers = {
        "adam": tf.keras.optimizers.Adam,
        "adagrad": tf.keras.optimizers.Adagrad,
        "sgd": tf.keras.optimizers.SGD,
    }
    if cfg.optimizer not in optimizers:
        raise ValueError(f"optimizer={cfg.optimizer!r} is not one of: {', '.join(optimizers)}")
    return optimizers[cfg.optimizer](learning_rate=cfg.learning_rate)
