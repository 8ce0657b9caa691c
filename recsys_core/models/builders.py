"""Config -> built TFRS models. Call inside `strategy.scope()`."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs

from recsys_core.config import MODEL_NAMES, ExperimentConfig, FitConfig, RetrievalConfig
from recsys_core.features.encoders import ItemEncoder, QueryEncoder
from recsys_core.features.vocabulary import FeatureVocabulary
from recsys_core.models.dlrm import CrossHead, DlrmEmbeddings, DlrmScorer, DotInteractionHead
from recsys_core.models.multitask import MultitaskModel
from recsys_core.models.rating import IdBias, RankingScorer, RatingModel, rating_task
from recsys_core.models.retrieval import RetrievalModel, Tower

RATING_MODELS = ("ranking", "dlrm", "dcn", "multitask")
TOWER_MODELS = ("retrieval", "multitask")


def build_model(name: str, config: ExperimentConfig, vocab: FeatureVocabulary) -> tfrs.Model:
    """Builds the named model (`retrieval`, `ranking`, `dlrm`, `dcn` or `multitask`)."""
    if name == "retrieval":
        query_tower, candidate_tower = build_towers(config.retrieval, vocab)
        return RetrievalModel(
            query_tower, candidate_tower, retrieval_task(config.retrieval), correction(config.retrieval)
        )
    if name == "ranking":
        cfg = config.ranking
        scorer = RankingScorer(
            QueryEncoder(vocab, cfg.embedding_dim, use_time=cfg.use_time, use_history=cfg.use_history, l2=cfg.l2),
            ItemEncoder(vocab, cfg.embedding_dim, l2=cfg.l2),
            IdBias("user_id", vocab.user_ids, cfg.l2),
            IdBias("movie_id", vocab.movie_ids, cfg.l2),
            projection_dim=cfg.embedding_dim,
            hidden_layers=cfg.hidden_layers,
            rating_mean=vocab.rating_mean,
        )
        return RatingModel(scorer, rating_task(cfg.batch_size))
    if name in ("dlrm", "dcn"):
        cfg = getattr(config, name)
        embeddings = DlrmEmbeddings(vocab, cfg.embedding_dim, cfg.bottom_layers, cfg.l2, cfg.use_time)
        interaction = DotInteractionHead(cfg.self_interaction) if name == "dlrm" else CrossHead(cfg.cross_layers)
        biases = (IdBias("user_id", vocab.user_ids, cfg.l2), IdBias("movie_id", vocab.movie_ids, cfg.l2))
        scorer = DlrmScorer(embeddings, interaction, cfg.top_layers, biases, vocab.rating_mean)
        return RatingModel(scorer, rating_task(cfg.batch_size))
    if name == "multitask":
        cfg = config.multitask
        query_tower, candidate_tower = build_towers(config.retrieval, vocab)
        head = tf.keras.Sequential(
            [tf.keras.layers.Dense(units, activation="relu") for units in cfg.rating_layers]
            + [tf.keras.layers.Dense(1, bias_initializer=tf.keras.initializers.Constant(vocab.rating_mean))]
        )
        return MultitaskModel(
            query_tower,
            candidate_tower,
            head,
            retrieval_task(config.retrieval),
            rating_task(cfg.batch_size),
            cfg.retrieval_weight,
            cfg.rating_weight,
            correction(config.retrieval),
        )
    raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}")


def build_towers(cfg: RetrievalConfig, vocab: FeatureVocabulary) -> tuple[Tower, Tower]:
    """Query and candidate towers, each ending in `cfg.tower_layers[-1]` units."""
    query = QueryEncoder(vocab, cfg.embedding_dim, cfg.use_user_features, cfg.use_time, cfg.use_history, cfg.l2)
    item = ItemEncoder(vocab, cfg.embedding_dim, cfg.use_title, cfg.use_genres, cfg.l2)
    return Tower(query, cfg.tower_layers, name="query_tower"), Tower(item, cfg.tower_layers, name="candidate_tower")


def correction(cfg: RetrievalConfig) -> float:
    """Strength of the logQ correction of the retrieval loss (0: none)."""
    return cfg.correction_strength if cfg.sampling_correction else 0.0


def retrieval_task(cfg: RetrievalConfig) -> tfrs.tasks.Retrieval:
    """In-batch softmax (optionally without accidental hits); reports the epoch's mean loss."""
    return tfrs.tasks.Retrieval(
        temperature=cfg.temperature,
        remove_accidental_hits=cfg.remove_accidental_hits,
        loss_metrics=[tf.keras.metrics.Mean(name="retrieval_loss")],
    )


def build_optimizer(cfg: FitConfig) -> tf.keras.optimizers.Optimizer:
    optimizers = {
        "adam": tf.keras.optimizers.Adam,
        "adagrad": tf.keras.optimizers.Adagrad,
        "sgd": tf.keras.optimizers.SGD,
    }
    if cfg.optimizer not in optimizers:
        raise ValueError(f"optimizer={cfg.optimizer!r} is not one of: {', '.join(optimizers)}")
    return optimizers[cfg.optimizer](learning_rate=cfg.learning_rate)
