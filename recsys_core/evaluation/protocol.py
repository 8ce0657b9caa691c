"""The offline protocol of the shipped lists: choices on validation, figures on test, baselines beside them.

1. On the validation split (carved from training), with the interactions of the
   fitting part as what the job sees: the popularity window (the most popular
   unseen items of which window order the validation users' lists best), then the
   re-ranker, its blend weight and the popularity prior that give the job's lists
   the best NDCG@10, and the EASE regularisation.
2. On the test split, with every training interaction as what the job sees: the
   job's final lists (each re-ranker at its chosen weight, the chosen one as
   `final`), its retrieval-only top-K, most-popular-unseen lists (all time, and in
   the chosen window) and EASE lists (EASE up to `training.ease_max_items` items),
   all through `offline.list_figures`, each also over the users with and without
   training history; and (`rating_baselines`) the user+item bias RMSE.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import tensorflow as tf

from recsys_core.config import ExperimentConfig
from recsys_core.data.activity import ALL_TIME
from recsys_core.data.tables import InteractionData, group_by_user
from recsys_core.evaluation import baselines, list_ranking, metrics, offline
from recsys_core.models.list_ranker import ListRanker
from recsys_core.registry import RATING_MODELS
from recsys_core.schema import ITEM_ID, USER_ID
from recsys_core.serving.list_features import LIST_FEATURES, LIST_RANKER, NO_RERANKER, ItemFactors, ListRankerInputs
from recsys_core.serving.recommend import BundleScorer, RecommendSettings

log = logging.getLogger(__name__)
SELECTION_METRIC = "ndcg_at_10"
SELECTION_K = 10
CHOICES = ("popularity_window_days", "reranker", "blend_weight", "popularity_weight", "ease_l2")  # what the job uses


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


def _per_user_score(top: np.ndarray, held_out: offline.HeldOut) -> np.ndarray:
    """`[users]` NDCG@10 of `top`, the mean of both relevance definitions: what users will watch, and what
    they will like (nan for users with neither)."""
    every = metrics.per_user_scores(top, held_out.relevant, SELECTION_K)["ndcg"]
    liked = metrics.per_user_scores(top, held_out.liked, SELECTION_K)["ndcg"]
    return np.nanmean(np.stack([every, liked]), axis=0)


def _paired_gain(better: np.ndarray, baseline: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the per-user difference `better - baseline` (users scored by both)."""
    gain = better - baseline
    gain = gain[~np.isnan(gain)]
    standard_error = float(gain.std(ddof=1) / np.sqrt(len(gain))) if len(gain) > 1 else 0.0
    return float(gain.mean()) if len(gain) else 0.0, standard_error


def select(
    bundle: str, config: ExperimentConfig, fit: InteractionData, validation: InteractionData
) -> tuple[dict, ListRanker | None]:
    """Chooses on validation what the job will use; the job reads the result from the bundle manifest.

    First the popularity window (`training.popularity_windows_days`): the one whose
    most-popular-unseen lists (the job's fallback) score best. With its popularity,
    every re-ranker (and none) is tried with every blend weight and popularity prior
    of the config's grids (`scoring.blend`); the job's lists of the validation users
    are scored by NDCG@10, averaged over both relevance definitions (every held-out
    item; those rated at least 4). The best re-ranker is kept only if it beats the
    best order without one by more than two standard errors (paired over users).
    Last, the list ranker (`list_ranking.py`, with `list_ranker.enabled`) is fitted on
    the validation users' candidate lists and replaces that choice if its out-of-fold
    lists score better than the blends' out-of-fold lists (the best blend chosen on
    the other folds); the gain and its standard error are recorded. (Two standard
    errors, the rule for a rating re-ranker over none, rejected it on validation in
    runs where it gained +0.02 to +0.03 on test: docs/benchmarks.md.)

    Returns:
        the selection, and the fitted list ranker (None when disabled). The selection
        holds `popularity_window_days` (0: all time) and its `popularity_window_scores`;
        `reranker`, `blend_weight` and `popularity_weight` of the best lists; per
        re-ranker, its best weights (`blend_weights`, `popularity_weights`); the EASE
        `ease_l2`; and every validation score (`validation_scores`, keyed
        `<re-ranker>@<blend weight>+<popularity weight>`); and the list ranker's
        `list_ranker` record (rating model read, epochs, validation score and gain).
    """
    scorer = BundleScorer(bundle)
    base = _settings(config, fit)
    rerankers = [name for name in RATING_MODELS if name in scorer.manifest.signatures]
    held_out = offline.HeldOut.build(fit, validation)
    window_scores = {
        window: float(np.nanmean(_per_user_score(offline.popular_lists(held_out, SELECTION_K, window), held_out)))
        for window in config.training.popularity_windows_days
    }
    window = max(window_scores, key=window_scores.get)
    job_lists = offline.JobLists(scorer, held_out, window)

    def per_user(name: str, weight: float, popularity: float) -> np.ndarray:
        settings = dataclasses.replace(base, reranker=name, blend_weight=weight, popularity_weight=popularity)
        return _per_user_score(job_lists(settings), held_out)

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
    gain, standard_error = _paired_gain(
        per_user_scores[best_reranker][best[best_reranker]], per_user_scores[NO_RERANKER][best[NO_RERANKER]]
    )
    chosen = best_reranker if gain > 2 * standard_error else NO_RERANKER
    ease_scores = {
        f"{l2:g}": offline.list_figures(offline.ease_lists(held_out, l2, config.training.final_k), held_out)[
            SELECTION_METRIC
        ]
        for l2 in (config.training.ease_l2 if _ease_fits(config, fit) else ())
    }
    ease_l2 = float(max(ease_scores, key=ease_scores.get)) if ease_scores else None
    without_list_ranker = chosen
    ranker, ranker_record = None, None
    if config.list_ranker.enabled:
        ranker, ranker_record = _list_ranker_choice(
            scorer, held_out, base, config, window, ease_l2, rerankers, per_user_scores
        )
        if ranker_record is not None and ranker_record["gain"]["mean"] > 0:
            chosen = LIST_RANKER  # both sides out of fold: the better on validation ships, as every other choice
    selection = {
        "metric": "validation NDCG@10, mean of both relevance definitions (every item; rated >= 4)",
        "popularity_window_days": float(window),
        "popularity_window_scores": {f"{w:g}": value for w, value in window_scores.items()},
        "reranker": chosen,
        "without_list_ranker": without_list_ranker,  # what the job would use without the list ranker
        "blend_weight": best[chosen][0] if chosen in best else 0.0,
        "popularity_weight": best[chosen][1] if chosen in best else 0.0,
        "blend_weights": {name: point[0] for name, point in best.items()},
        "popularity_weights": {name: point[1] for name, point in best.items()},
        "validation_scores": {
            f"{name}@{w:g}+{p:g}": value for name, by_point in scores.items() for (w, p), value in by_point.items()
        },
        "best_reranker_gain": {"reranker": best_reranker, "mean": gain, "standard_error": standard_error},
        "list_ranker": ranker_record,
        "ease_l2": ease_l2,
        "ease_validation_scores": ease_scores,
    }
    log.info("chosen on validation: %s", {k: selection[k] for k in CHOICES})
    return selection, ranker


def _out_of_fold(candidates: list[np.ndarray], fold: np.ndarray) -> np.ndarray:
    """`[users]` per-user scores of the best of `candidates` (each `[users]`), chosen for each fold's users on
    the other folds' users."""
    scores = np.full(len(fold), np.nan)
    for number in np.unique(fold):
        rows = fold == number
        best = max(candidates, key=lambda per_user: float(np.nanmean(per_user[~rows])))
        scores[rows] = best[rows]
    return scores


def _list_ranker_choice(
    scorer: BundleScorer,
    held_out: offline.HeldOut,
    base: RecommendSettings,
    config: ExperimentConfig,
    window: float,
    ease_l2: float | None,
    rerankers: list[str],
    blend_scores: dict[str, dict[tuple[float, float], np.ndarray]],
) -> tuple[ListRanker | None, dict | None]:
    """The list ranker fitted on the validation lists, and its record: what it reads, its epochs, its out-of-fold
    validation score and gain over the blends' out-of-fold lists (`blend_scores`: per-user scores of every
    blend tried, by re-ranker and weights). (None, None) with too few lists."""
    settings = config.list_ranker
    rating_model = settings.rating_model if settings.rating_model in rerankers else None
    factors = item_factors(held_out.seen, ease_l2, settings.affinity_rank, held_out.item_cooccurrence)
    ranking = scorer.with_list_ranker(ListRankerInputs(rating_model, factors, settings.extra_candidates))
    fold = list_ranking.folds(held_out.user_ids)
    fitted, scores = _fit_list_ranker(ranking, held_out, fold, base, config, window)
    if fitted is None:
        log.info("list ranker left out: too few validation lists hold a held-out item among their candidates")
        return None, None
    # Against the blends' out-of-fold scores: the best blend is chosen on the users it is scored on.
    blends = [per_user for by_point in blend_scores.values() for per_user in by_point.values()]
    gain, standard_error = _paired_gain(scores, _out_of_fold(blends, fold))
    return fitted.model, {
        "rating_model": rating_model,
        "extra_candidates": settings.extra_candidates,
        "features": list(LIST_FEATURES),
        "epochs": fitted.epochs,
        "validation_score": float(np.nanmean(scores)),
        "gain": {"over": "the best blend, out of fold", "mean": gain, "standard_error": standard_error},
    }


def _fit_list_ranker(
    scorer: BundleScorer,
    held_out: offline.HeldOut,
    fold: np.ndarray,
    base: RecommendSettings,
    config: ExperimentConfig,
    window: float,
) -> tuple[list_ranking.FittedListRanker | None, np.ndarray | None]:
    """The list ranker fitted on the validation users' candidate lists (`scorer` gives its inputs), and
    `[users]` the scores of its out-of-fold lists: each fold's users as the job would list them with the
    ranker fitted on the other folds. (None, None) with too few lists (`list_ranking.enough_lists`)."""
    settings = dataclasses.replace(base, reranker=LIST_RANKER)
    job_lists = offline.JobLists(scorer, held_out, window)
    candidates, features = job_lists.candidates(settings)
    labels = list_ranking.list_labels(candidates, held_out.relevant, held_out.liked)
    if not list_ranking.enough_lists(labels):
        return None, None
    fitted = list_ranking.fit_list_ranker(features, labels, fold, config.list_ranker, config.training.seed)
    scores = np.full(len(fold), np.nan)
    for number, model in enumerate(fitted.fold_models):
        ranking = scorer.with_list_ranker(scorer.list_inputs, lambda f, model=model: model(tf.constant(f)).numpy())
        rows = fold == number
        scores[rows] = _per_user_score(job_lists(settings, ranking), held_out)[rows]
    return fitted, scores


def item_factors(
    data: InteractionData, ease_l2: float | None, rank: int, gram: np.ndarray | None = None
) -> ItemFactors | None:
    """The list ranker's item-to-item factors: EASE's weights at `ease_l2` over `data` (its `gram` when
    computed already), in rank `rank`; None without EASE (`training.ease_max_items`)."""
    if ease_l2 is None:
        return None
    items = data.items[ITEM_ID]
    if gram is None:
        everyone, _ = group_by_user(data.ratings, data.users[USER_ID], items)
        gram = baselines.item_cooccurrence(everyone, len(items))
    sources, targets = baselines.low_rank(baselines.ease_item_weights(gram, ease_l2), rank)
    return ItemFactors(np.asarray(items.to_pylist(), dtype=object), sources, targets)


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
) -> tuple[dict[str, dict[str, float]], dict | None]:
    """Figures of every list on the test split, by system, each with its figures over the users with and
    without training history (`with_history`, `without_history`: `offline.figures_by_history`).

    Systems: `final` (the job's lists as chosen), `final_<re-ranker>` (each re-ranker,
    and `final_none`, at its chosen weights; `final_list`: the list ranker), `retrieval` (the job with neither
    re-ranker nor popularity prior: the two towers' order, all `top_k` rows),
    `most_popular` (all time), `most_popular_recent` (in the chosen window) and `ease`.
    """
    base = _settings(config, train)
    held_out = offline.HeldOut.build(train, test)
    window = selection.get("popularity_window_days", ALL_TIME)
    scorer = BundleScorer(bundle)
    job_lists = offline.JobLists(scorer, held_out, window)
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
    if LIST_RANKER in scorer.manifest.signatures:
        lists[f"final_{LIST_RANKER}"] = job_lists(dataclasses.replace(base, reranker=LIST_RANKER))
    lists["final"] = lists[f"final_{selection['reranker']}"]
    lists["retrieval"] = job_lists(dataclasses.replace(base, final_k=config.training.top_k))
    lists["most_popular"] = offline.popular_lists(held_out, config.training.top_k)
    lists["most_popular_recent"] = offline.popular_lists(held_out, config.training.top_k, window)
    if selection["ease_l2"] is not None:
        lists["ease"] = offline.ease_lists(held_out, selection["ease_l2"], config.training.top_k)
    figures = {
        name: {
            **offline.list_figures(top, held_out, config.training.final_k),
            **offline.figures_by_history(top, held_out),
        }
        for name, top in lists.items()
    }
    return figures, _list_ranker_gain(lists, selection, held_out)


def _list_ranker_gain(lists: dict[str, np.ndarray], selection: dict, held_out: offline.HeldOut) -> dict | None:
    """Test NDCG@10 (every test item relevant) of the list ranker's lists less that of the lists the job would
    ship without it, paired over users: `{over, mean, standard_error}`; None without a list ranker."""
    without = selection.get("without_list_ranker")
    if f"final_{LIST_RANKER}" not in lists or without is None:
        return None
    with_ranker, without_ranker = (
        metrics.per_user_scores(lists[f"final_{name}"], held_out.relevant, SELECTION_K)["ndcg"]
        for name in (LIST_RANKER, without)
    )
    mean, standard_error = _paired_gain(with_ranker, without_ranker)
    return {"over": f"final_{without}", "mean": mean, "standard_error": standard_error}


def rating_baselines(train: InteractionData, test: InteractionData) -> dict[str, dict[str, float]]:
    """Test RMSE/MAE of user + item biases fitted on the training split (with the global-mean RMSE)."""
    bias = baselines.fit_bias(train.ratings)
    labels = test.ratings["rating"].to_numpy()
    predictions = bias.predict(test.ratings["user_id"], test.ratings["item_id"])
    return {"user_item_bias": offline.rating_figures(predictions, labels, bias.mean)}
