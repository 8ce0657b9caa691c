"""The offline protocol of the shipped lists: choices on validation, figures on test, baselines beside them.

1. On the validation split (carved from training), with the interactions of the
   fitting part as what the job sees: the re-ranker and its blend weight that
   give the job's lists the best NDCG@10, and the EASE regularisation.
2. On the test split, with every training interaction as what the job sees: the
   job's final lists (each re-ranker at its chosen weight, the chosen one as
   `final`), its retrieval-only top-K, most-popular-unseen and EASE lists, all
   through `evaluation.list_figures`; the user+item bias RMSE.
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


def evaluate_lists(
    bundle: str,
    config: ExperimentConfig,
    fit: InteractionData,
    validation: InteractionData,
    train: InteractionData,
    test: InteractionData,
) -> tuple[dict, dict[str, dict[str, float]]]:
    """Runs the protocol on a written bundle; returns `(selection, figures by system)`.

    `selection` holds the chosen `reranker` and `blend_weight` (what the job uses
    by default), the EASE `ease_l2` and every validation score behind them.
    """
    scorer = BundleScorer(bundle)
    cfg = config.training
    base = RecommendSettings(
        top_k=cfg.top_k,
        final_k=cfg.final_k,
        reranker=NO_RERANKER,
        timestamp=int(train.ratings["timestamp"].to_numpy().max()),
        run_id="offline-evaluation",
        blend_weight=0.0,
    )
    rerankers = [name for name in RATING_SIGNATURES if name in scorer.manifest["signatures"]]
    held_out = evaluation.HeldOut.build(fit, validation)

    def validation_score(settings: RecommendSettings) -> float:
        return evaluation.list_figures(evaluation.job_lists(scorer, held_out, settings), held_out)[SELECTION_METRIC]

    candidates = [(NO_RERANKER, 0.0)] + [(r, w) for r in rerankers for w in cfg.blend_weights if w > 0]
    scores = {
        f"{name}@{weight:g}": validation_score(dataclasses.replace(base, reranker=name, blend_weight=weight))
        for name, weight in candidates
    }
    best_weights = {
        name: max((w for r, w in candidates if r == name), key=lambda w, n=name: scores[f"{n}@{w:g}"])
        for name in [NO_RERANKER] + rerankers
    }
    chosen = max(best_weights, key=lambda name: scores[f"{name}@{best_weights[name]:g}"])
    ease_scores = {
        l2: evaluation.list_figures(evaluation.ease_lists(held_out, l2, cfg.final_k), held_out)[SELECTION_METRIC]
        for l2 in cfg.ease_l2
    }
    ease_l2 = max(ease_scores, key=ease_scores.get)
    selection = {
        "metric": f"validation {SELECTION_METRIC}",
        "reranker": chosen,
        "blend_weight": best_weights[chosen],
        "blend_weights": best_weights,
        "validation_scores": scores,
        "ease_l2": ease_l2,
        "ease_validation_scores": {f"{l2:g}": v for l2, v in ease_scores.items()},
    }
    log.info("chosen on validation: %s", {k: selection[k] for k in ("reranker", "blend_weight", "ease_l2")})

    held_out = evaluation.HeldOut.build(train, test)
    final_lists = {
        name: evaluation.job_lists(
            scorer, held_out, dataclasses.replace(base, reranker=name, blend_weight=best_weights[name])
        )
        for name in rerankers
    }
    lists = {
        "final": final_lists[chosen] if chosen in final_lists else evaluation.job_lists(scorer, held_out, base),
        **{f"final_{name}": top for name, top in final_lists.items()},
        "retrieval": evaluation.job_lists(scorer, held_out, dataclasses.replace(base, final_k=cfg.top_k)),
        "most_popular": evaluation.popular_lists(held_out, cfg.top_k),
        "ease": evaluation.ease_lists(held_out, ease_l2, cfg.top_k),
    }
    figures = {name: evaluation.list_figures(top, held_out, cfg.final_k) for name, top in lists.items()}
    bias = baselines.fit_bias(train.ratings)
    labels = test.ratings["user_rating"].to_numpy()
    figures["user_item_bias"] = evaluation.rating_figures(
        bias.predict(test.ratings["user_id"], test.ratings["movie_id"]), labels, bias.mean
    )
    return selection, figures
