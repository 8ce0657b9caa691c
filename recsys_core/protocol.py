"""The offline protocol of the shipped lists: choices on validation, figures on test, baselines beside them.

1. On the validation split (carved from training), with the interactions of the
   fitting part as what the job sees: the re-ranker and its blend weight that
   give the job's lists the best NDCG@10, and the EASE regularisation.
2. On the test split, with every training interaction as what the job sees: the
   job's final lists (each re-ranker at its chosen weight, the chosen one as
   `final`), its retrieval-only top-K, most-popular-unseen and EASE lists, all
   through `evaluation.list_figures`; and (`rating_baselines`) the user+item bias RMSE.
"""

from __future__ import annotations

import dataclasses
import logging

from recsys_core import baselines, evaluation
from recsys_core.config import ExperimentConfig
from recsys_core.data.tables import InteractionData
from recsys_core.export import RATING_SIGNATURES
from recsys_core.recommend import BundleScorer, RecommendSettings

log = logging.getLogger(__name__)
SELECTION_METRIC = "ndcg_at_10"
NO_RERANKER = "none"


def _settings(config: ExperimentConfig, data: InteractionData) -> RecommendSettings:
    """The job's settings with no re-ranker; the run date is the end of `data`."""
    return RecommendSettings(
        top_k=config.training.top_k,
        final_k=config.training.final_k,
        reranker=NO_RERANKER,
        timestamp=int(data.ratings["timestamp"].to_numpy().max()),
        run_id="offline-evaluation",
        blend_weight=0.0,
    )


def select(bundle: str, config: ExperimentConfig, fit: InteractionData, validation: InteractionData) -> dict:
    """Chooses on validation what the job will use; the job reads the result from the bundle manifest.

    Returns:
        `reranker` and `blend_weight` (the best job lists by validation NDCG@10; `none`
        when no re-ranker improves on the retrieval order), the best weight of every
        re-ranker (`blend_weights`), the EASE `ease_l2`, and every validation score.
    """
    scorer = BundleScorer(bundle)
    base = _settings(config, fit)
    rerankers = [name for name in RATING_SIGNATURES if name in scorer.manifest["signatures"]]
    held_out = evaluation.HeldOut.build(fit, validation)

    def score(top) -> float:
        return evaluation.list_figures(top, held_out)[SELECTION_METRIC]

    candidates = [(NO_RERANKER, 0.0)] + [(r, w) for r in rerankers for w in config.training.blend_weights if w > 0]
    scores = {
        f"{name}@{weight:g}": score(
            evaluation.job_lists(scorer, held_out, dataclasses.replace(base, reranker=name, blend_weight=weight))
        )
        for name, weight in candidates
    }
    best_weights = {
        name: max((w for r, w in candidates if r == name), key=lambda w, n=name: scores[f"{n}@{w:g}"])
        for name in [NO_RERANKER] + rerankers
    }
    chosen = max(best_weights, key=lambda name: scores[f"{name}@{best_weights[name]:g}"])
    ease_scores = {
        f"{l2:g}": score(evaluation.ease_lists(held_out, l2, config.training.final_k)) for l2 in config.training.ease_l2
    }
    selection = {
        "metric": f"validation {SELECTION_METRIC}",
        "reranker": chosen,
        "blend_weight": best_weights[chosen],
        "blend_weights": best_weights,
        "validation_scores": scores,
        "ease_l2": float(max(ease_scores, key=ease_scores.get)),
        "ease_validation_scores": ease_scores,
    }
    log.info("chosen on validation: %s", {k: selection[k] for k in ("reranker", "blend_weight", "ease_l2")})
    return selection


def lists_on_test(
    bundle: str, config: ExperimentConfig, selection: dict, train: InteractionData, test: InteractionData
) -> dict[str, dict[str, float]]:
    """Figures of every list on the test split, by system.

    Systems: `final` (the job's lists with the chosen re-ranker), `final_<re-ranker>`
    (each re-ranker at its chosen weight), `retrieval` (the job with no re-ranker,
    all `top_k` rows), `most_popular` and `ease`.
    """
    scorer = BundleScorer(bundle)
    base = _settings(config, train)
    held_out = evaluation.HeldOut.build(train, test)
    weights = selection["blend_weights"]
    rerankers = [name for name in weights if name != NO_RERANKER]
    lists = {
        f"final_{name}": evaluation.job_lists(
            scorer, held_out, dataclasses.replace(base, reranker=name, blend_weight=weights[name])
        )
        for name in rerankers
    }
    chosen = selection["reranker"]
    lists["final"] = lists[f"final_{chosen}"] if chosen in rerankers else evaluation.job_lists(scorer, held_out, base)
    lists["retrieval"] = evaluation.job_lists(
        scorer, held_out, dataclasses.replace(base, final_k=config.training.top_k)
    )
    lists["most_popular"] = evaluation.popular_lists(held_out, config.training.top_k)
    lists["ease"] = evaluation.ease_lists(held_out, selection["ease_l2"], config.training.top_k)
    return {name: evaluation.list_figures(top, held_out, config.training.final_k) for name, top in lists.items()}


def rating_baselines(train: InteractionData, test: InteractionData) -> dict[str, dict[str, float]]:
    """Test RMSE/MAE of user + item biases fitted on the training split (with the global-mean RMSE)."""
    bias = baselines.fit_bias(train.ratings)
    labels = test.ratings["user_rating"].to_numpy()
    predictions = bias.predict(test.ratings["user_id"], test.ratings["movie_id"])
    return {"user_item_bias": evaluation.rating_figures(predictions, labels, bias.mean)}
