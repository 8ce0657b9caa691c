"""The publish gate: checks on a finished run's lists, and on its bundle, before anyone can read them.

A run that fails a check publishes nothing, keeps the previous pointers and
says why in its run record (`_runs/`) and on stderr.
"""

from __future__ import annotations

import dataclasses

from recsys_core.data import DataError


class GateError(DataError):
    """The run's output failed a publish-gate check; nothing was published."""


@dataclasses.dataclass(frozen=True)
class Gate:
    """Thresholds; `metric_floors` maps a dotted path into the bundle's `metrics` (e.g. `retrieval.ndcg_at_10`)
    to its lowest acceptable value."""

    min_full_list_share: float = 0.9
    max_fallback_share: float = 0.5
    min_distinct_items: int = 1
    min_recall: float = 0.95
    metric_floors: dict[str, float] = dataclasses.field(default_factory=dict)


def parse_metric_floors(values: list[str]) -> dict[str, float]:
    """`["path=value", ...]` -> {path: value}; `ValueError` naming a malformed entry."""
    floors = {}
    for value in values:
        path, sep, floor = value.partition("=")
        try:
            floors[path] = float(floor)
        except ValueError:
            sep = ""
        if not sep or not path:
            raise ValueError(f"--min-bundle-metric {value!r} is not of the form metric.path=number")
    return floors


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
    if counters.get("nan_scores", 0):
        found.append(f"{counters['nan_scores']} recommended rows have a NaN score")
    distinct = counters.get("distinct_items_recommended", 0)
    if distinct < gate.min_distinct_items:
        found.append(f"only {distinct} distinct items recommended (--min-distinct-items {gate.min_distinct_items})")
    measured = recall_at_k(counters)
    if measured is not None and measured < gate.min_recall:
        found.append(
            f"the approximate index found {measured:.1%} of the exact top-K items of the sampled users "
            f"(--min-recall {gate.min_recall}): search more leaves (--scann-leaves-to-search) or use --index exact"
        )
    for path, floor in gate.metric_floors.items():
        value = _lookup(bundle_metrics, path)
        if value is None:
            found.append(f"the bundle has no metric {path!r} (--min-bundle-metric)")
        elif value < floor:
            found.append(f"the bundle's {path} is {value:.4f}, below the floor {floor}")
    return found


def _lookup(metrics: dict, path: str) -> float | None:
    value = metrics
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, int | float) else None
