"""The publish gate: checks on a finished run's lists, and on its bundle, before anyone can read them.

A run that fails a check publishes nothing, keeps the previous pointers and
says why in its run record (`_runs/`) and on stderr.
"""

from __future__ import annotations

import dataclasses
import math

from jobs.counters import DISTINCT_ITEMS_RECOMMENDED, NON_FINITE_ITEM_EMBEDDINGS, rows_written
from recsys_core.data import DataError
from recsys_core.serving import outputs

# Counters of values that are NaN or infinite where the job computed a number (`recommend.recommend_block`,
# `jobs.scoring.EmbedItemsFn`): any of them refuses the run.
NON_FINITE = {
    "non_finite_retrieval_scores": "retrieval scores",
    "non_finite_ranking_scores": "predicted ratings of the re-ranker",
    "non_finite_list_scores": "list-ranker scores",
    "non_finite_user_embeddings": "user embeddings",
    NON_FINITE_ITEM_EMBEDDINGS: "item embeddings",
    "nan_scores": "final scores of recommended rows",
}


class GateError(DataError):
    """The run's output failed a publish-gate check; nothing was published."""


@dataclasses.dataclass(frozen=True)
class Gate:
    """Thresholds. `metric_floors` and `metric_ceilings` map a dotted path into the bundle's `metrics` (e.g.
    `lists.final.ndcg_at_10`, `ranking.rmse`) to its lowest and highest acceptable value.

    `min_distinct_item_share`: the distinct items of all lists over as many as they could hold (the
    catalogue, or every recommended row if fewer): a query tower that collapsed gives everyone nearly the
    same list (on ML-100K, about 50 distinct items of 1 682, 0.03; healthy lists about 0.25).
    """

    min_full_list_share: float = 0.9
    max_fallback_share: float = 0.5
    min_distinct_items: int = 1
    min_distinct_item_share: float = 0.05
    min_recall: float = 0.95
    metric_floors: dict[str, float] = dataclasses.field(default_factory=dict)
    metric_ceilings: dict[str, float] = dataclasses.field(default_factory=dict)


def parse_metric_bounds(values: list[str], flag: str = "--min-bundle-metric") -> dict[str, float]:
    """`["path=value", ...]` -> {path: value}; `ValueError` naming a malformed or non-finite entry."""
    bounds = {}
    for value in values:
        path, sep, bound = value.partition("=")
        try:
            bounds[path] = float(bound)
        except ValueError:
            sep = ""
        if not sep or not path or not math.isfinite(bounds.get(path, 0.0)):
            raise ValueError(f"{flag} {value!r} is not of the form metric.path=number")
    return bounds


def users_served(counters: dict[str, int]) -> int:
    """Users given a list: by the model or by the popularity fallback."""
    return counters.get("users_scored", 0) + counters.get("fallback_users", 0)


def recall_at_k(counters: dict[str, int]) -> float | None:
    """Recall@K of the approximate index against exact top-K on the sampled users (None: exact index)."""
    relevant = counters.get("recall_relevant", 0)
    return counters.get("recall_hits", 0) / relevant if relevant else None


def failures(gate: Gate, counters: dict[str, int], bundle_metrics: dict) -> list[str]:
    """Every check the run fails, each as a sentence with the figure and the threshold (empty: publish)."""
    users = users_served(counters)
    if not users:
        return ["no user was scored: the inputs have no users"]
    found = []
    full = 1 - counters.get("users_short_of_final_k", 0) / users
    if full < gate.min_full_list_share:
        found.append(f"only {full:.1%} of users have a full list (--min-full-list-share {gate.min_full_list_share})")
    fallback = counters.get("fallback_users", 0) / users
    if fallback > gate.max_fallback_share:
        found.append(
            f"{fallback:.1%} of users get the popularity fallback, not the model (--max-fallback-share "
            f"{gate.max_fallback_share}): are the interactions or the bundle the right ones?"
        )
    for counter, what in NON_FINITE.items():
        if counters.get(counter, 0):
            found.append(f"{counters[counter]} {what} are NaN or infinite: is the bundle's model broken?")
    distinct = counters.get(DISTINCT_ITEMS_RECOMMENDED, 0)
    if distinct < gate.min_distinct_items:
        found.append(f"only {distinct} distinct items recommended (--min-distinct-items {gate.min_distinct_items})")
    possible = min(
        counters.get(rows_written(outputs.ITEM_EMBEDDINGS), 0),
        counters.get(rows_written(outputs.RECOMMENDATIONS), 0),
    )
    if possible and distinct / possible < gate.min_distinct_item_share:
        found.append(
            f"the lists hold {distinct} distinct items of {possible} they could hold ({distinct / possible:.1%}, "
            f"--min-distinct-item-share {gate.min_distinct_item_share}): has the query tower collapsed?"
        )
    measured = recall_at_k(counters)
    if measured is not None and measured < gate.min_recall:
        found.append(
            f"the approximate index found {measured:.1%} of the exact top-K items of the sampled users "
            f"(--min-recall {gate.min_recall}): search more leaves (--scann-leaves-to-search) or use --index exact"
        )
    bounds = [(path, floor, "floor", "--min-bundle-metric") for path, floor in gate.metric_floors.items()]
    bounds += [(path, ceiling, "ceiling", "--max-bundle-metric") for path, ceiling in gate.metric_ceilings.items()]
    for path, bound, kind, flag in bounds:
        value = _lookup(bundle_metrics, path)
        if value is None:
            found.append(f"the bundle has no metric {path!r} ({flag})")
        elif not math.isfinite(value):
            found.append(f"the bundle's {path} is {value} ({flag} {bound})")
        elif value < bound if kind == "floor" else value > bound:
            found.append(
                f"the bundle's {path} is {value:.4f}, {'below' if kind == 'floor' else 'above'} the {kind} {bound}"
            )
    return found


def _lookup(metrics: dict, path: str) -> float | None:
    value = metrics
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, int | float) else None
