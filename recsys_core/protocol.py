"""The offline protocol of the shipped lists: choices on validation, figures on test, baselines beside them.

1. On the validation split (carved from training), with the interactions of the
   fitting part as what the job sees: the re-ranker, its blend weight and the
   popularity prior that give the job's lists the best NDCG@10, and the EASE
   regularisation.
2. On the test split, with every training interaction as what the job sees: the
   job's final lists (each re-ranker at its chosen weight, the chosen one as
   `final`), its retrieval-only top-K, most-popular-unseen and EASE lists (EASE up
   to `training.ease_max_items` items), all
   through `evaluation.list_figures`; and (`rating_baselines`) the user+item bias RMSE.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from recsys_core import baselines, evaluation, metrics
from recsys_core.config import ExperimentConfig
from recsys_core.data.tables import InteractionData
from recsys_core.recommend import BundleScorer, RecommendSettings
from recsys_core.registry import RATING_MODELS

log = logging.getLogger(__name__)
SELECTION_METRIC = "ndcg_at_10"
SELECTION_K = 10
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

    Every re-ranker (and none) is tried with every blend weight and popularity prior
    of the config's grids (`scoring.blend`); the job's lists of the validation users
    are scored by NDCG@10, averaged over both relevance definitions (every held-out
    item; those rated at least 4). The best re-ranker is kept only if it beats the
    best order without one by more than two standard errors (paired over users).

    Returns:
        `reranker`, `blend_weight` and `popularity_weight` of the best lists; per
        re-ranker, its best weights (`blend_weights`, `popularity_weights`); the EASE
        `ease_l2`; and every validation score (`validation_scores`, keyed
        `<re-ranker>@<blend weight>+<popularity weight>`).
    """
    scorer = BundleScorer(bundle)
    base = _settings(config, fit)
    rerankers = [name for name in RATING_MODELS if name in scorer.manifest["signatures"]]
    held_out = evaluation.HeldOut.build(fit, validation)
    job_lists = evaluation.JobLists(scorer, held_out)

    def per_user(name: str, weight: float, popularity: float) -> np.ndarray:
        settings = dataclasses.replace(base, reranker=name, blend_weight=weight, popularity_weight=popularity)
        top = job_lists(settings)
        every = metrics.per_user_scores(top, held_out.relevant, SELECTION_K)["ndcg"]
        liked = metrics.per_user_scores(top, held_out.liked, SELECTION_K)["ndcg"]
        # Both relevance definitions count: what users will watch, and what they will like.
        return np.nanmean(np.stack([every, liked]), axis=0)

    weights = {NO_RERANKER: (0.0,), **{name: config.training.blend_weights for name in rerankers}}
    grid = {name: [(w, p) for w in ws for p in config.training.popularity_weights] for name, ws in weights.items()}
    per_user_scores = {name: {point: per_user(name, *point) for point in points} for name, points in grid.items()}
    scores = {
        name: {point: float(np.nanmean(v)) for point, v in by_point.items()}
        for name, by_point in per_user_scores.items()
    }
    best = {name: max(by_point, key=by_point.get) for name, by_point in scores.items()}
    best_reranker = max(best, key=lambda name: scores[name][best[name]])
    # A re-ranker costs a model call per candidate: keep it only if it beats the retrieval
    # order (with its best prior) by more than two standard errors of the per-user difference.
    gain = per_user_scores[best_reranker][best[best_reranker]] - per_user_scores[NO_RERANKER][best[NO_RERANKER]]
    gain = gain[~np.isnan(gain)]
    standard_error = float(gain.std(ddof=1) / np.sqrt(len(gain))) if len(gain) > 1 else 0.0
    chosen = best_reranker if gain.mean() > 2 * standard_error else NO_RERANKER
    ease_scores = {
        f"{l2:g}": evaluation.list_figures(evaluation.ease_lists(held_out, l2, config.training.final_k), held_out)[
            SELECTION_METRIC
        ]
        for l2 in (config.training.ease_l2 if _ease_fits(config, fit) else ())
    }
    selection = {
        "metric": "validation NDCG@10, mean of both relevance definitions (every item; rated >= 4)",
        "reranker": chosen,
        "blend_weight": best[chosen][0],
        "popularity_weight": best[chosen][1],
        "blend_weights": {name: point[0] for name, point in best.items()},
        "popularity_weights": {name: point[1] for name, point in best.items()},
        "validation_scores": {
            f"{name}@{w:g}+{p:g}": value for name, by_point in scores.items() for (w, p), value in by_point.items()
        },
        "best_reranker_gain": {"reranker": best_reranker, "mean": float(gain.mean()), "standard_error": standard_error},
        "ease_l2": float(max(ease_scores, key=ease_scores.get)) if ease_scores else None,
        "ease_validation_scores": ease_scores,
    }
    log.info(
        "chosen on validation: %s",
        {k: selection[k] for k in ("reranker", "blend_weight", "popularity_weight", "ease_l2")},
    )
    return selection


def _ease_fits(config: ExperimentConfig, data: InteractionData) -> bool:
    """Whether the EASE baseline is computed (`training.ease_max_items`); logs why not."""
    if data.items.num_rows <= config.training.ease_max_items:
        return True
    log.info(
        "EASE baseline left out: %d items exceed training.ease_max_items=%d (it inverts an items x items matrix)",
        data.items.num_rows,
        config.training.ease_max_items,
    )
    return False


def lists_on_test(
    bundle: str, config: ExperimentConfig, selection: dict, train: InteractionData, test: InteractionData
) -> dict[str, dict[str, float]]:
    """Figures of every list on the test split, by system.

    Systems: `final` (the job's lists as chosen), `final_<re-ranker>` (each re-ranker,
    and `final_none`, at its chosen weights), `retrieval` (the job with neither
    re-ranker nor popularity prior: the two towers' order, all `top_k` rows),
    `most_popular` and `ease`.
    """
    base = _settings(config, train)
    held_out = evaluation.HeldOut.build(train, test)
    job_lists = evaluation.JobLists(BundleScorer(bundle), held_out)
    lists = {
        f"final_{name}": job_lists(
            dataclasses.replace(
                base,
                reranker=name,
                blend_weight=selection["blend_weights"][name],
                popularity_weight=selection["popularity_weights"][name],
            )
        )
        for name in selection["blend_weights"]
    }
    lists["final"] = lists[f"final_{selection['reranker']}"]
    lists["retrieval"] = job_lists(dataclasses.replace(base, final_k=config.training.top_k))
    lists["most_popular"] = evaluation.popular_lists(held_out, config.training.top_k)
    if selection["ease_l2"] is not None:
        lists["ease"] = evaluation.ease_lists(held_out, selection["ease_l2"], config.training.top_k)
    return {name: evaluation.list_figures(top, held_out, config.training.final_k) for name, top in lists.items()}


def rating_baselines(train: InteractionData, test: InteractionData) -> dict[str, dict[str, float]]:
    """Test RMSE/MAE of user + item biases fitted on the training split (with the global-mean RMSE)."""
    bias = baselines.fit_bias(train.ratings)
    labels = test.ratings["rating"].to_numpy()
    predictions = bias.predict(test.ratings["user_id"], test.ratings["item_id"])
    return {"user_item_bias": evaluation.rating_figures(predictions, labels, bias.mean)}
