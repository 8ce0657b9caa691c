"""PNG plots: training curves, the DLRM feature-interaction heatmap and the evaluation report's figures."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _png_bytes(figure: plt.Figure) -> bytes:
    """`figure` laid out as a 90 dpi PNG (the caller writes the bytes, on any file system); closes it."""
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def history_png(name: str, history: dict[str, list[float]]) -> bytes:
    """One panel per metric (loss, rmse, ...), training and validation curves by epoch."""
    # Keras's `loss` entries are last-batch values; the tasks' `*_loss` means are plotted instead.
    metrics = [
        m for m in history if not m.startswith("val_") and m not in ("loss", "regularization_loss", "total_loss")
    ]
    figure, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.5), squeeze=False)
    for axis, metric in zip(axes[0], metrics, strict=True):
        epochs = np.arange(1, len(history[metric]) + 1)
        axis.plot(epochs, history[metric], marker="o", label="train")
        if f"val_{metric}" in history:
            axis.plot(epochs, history[f"val_{metric}"], marker="o", label="validation")
        axis.set(title=f"{name}: {metric}", xlabel="epoch")
        axis.legend()
    return _png_bytes(figure)


def interactions_png(matrix: np.ndarray, labels: tuple[str, ...], title: str) -> bytes:
    """Heatmap of a `[features, features]` interaction-strength matrix."""
    figure, axis = plt.subplots(figsize=(6, 5))
    image = axis.imshow(matrix, cmap="viridis")
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    for (row, col), value in np.ndenumerate(matrix):
        axis.text(col, row, f"{value:.2f}", ha="center", va="center", color="white", fontsize=7)
    axis.set_title(title)
    figure.colorbar(image)
    return _png_bytes(figure)


def recall_curves_png(curves: dict[str, dict], title: str) -> bytes:
    """Recall@k against k (log axis), one line per system.

    Args:
        curves: `{system: {"k": [1, 5, ...], "recall": [...]}}`, in legend order.
        title: The plot's title.

    Returns:
        The PNG image.
    """
    figure, axis = plt.subplots(figsize=(6.4, 4))
    for system, curve in curves.items():
        axis.plot(curve["k"], curve["recall"], marker="o", markersize=4, label=system)
    ks = sorted({k for curve in curves.values() for k in curve["k"]})
    axis.set_xscale("log")
    axis.minorticks_off()
    axis.set_xticks(ks, [str(k) for k in ks])
    axis.set_ylim(bottom=0)
    axis.set(title=title, xlabel="k (log scale)", ylabel="recall@k")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    return _png_bytes(figure)


def rating_bars_png(systems: dict[str, dict], metric: str = "rmse") -> bytes:
    """One bar per system that has `metric` (mean, error bar = std), on a y axis zoomed onto the values.

    Args:
        systems: `{system: {metric: {"mean": float, "std": float, ...}, ...}}`, in bar order.
        metric: The metric to plot, e.g. "rmse" or "mae".

    Returns:
        The PNG image.

    Raises:
        ValueError: No system has `metric`.
    """
    names = [name for name, metrics in systems.items() if metric in metrics]
    if not names:
        raise ValueError(f"no system has the metric {metric!r}")
    means = np.array([systems[name][metric]["mean"] for name in names])
    stds = np.array([systems[name][metric]["std"] for name in names])
    low, high = float(np.min(means - stds)), float(np.max(means + stds))
    margin = max(high - low, 0.05 * high) * 0.3
    figure, axis = plt.subplots(figsize=(6.4, 4))
    positions = np.arange(len(names))
    axis.bar(positions, means, yerr=stds, capsize=6, color="tab:blue", alpha=0.8, width=0.6)
    for position, mean, std in zip(positions, means, stds, strict=True):
        axis.text(position, mean + std + margin * 0.1, f"{mean:.3f}", ha="center", va="bottom", fontsize=9)
    axis.set_xticks(positions, names)
    axis.set_ylim(max(0.0, low - margin), high + margin)
    axis.set(title=f"{metric.upper()} (mean ± std over seeds; lower is better)", ylabel=metric.upper())
    axis.grid(axis="y", alpha=0.3)
    return _png_bytes(figure)


def popularity_shares_png(bins: list[str], shares: dict[str, list[float]]) -> bytes:
    """Grouped bars: per training-popularity bin, the share of each system's recommended slots.

    Args:
        bins: Labels of the item-popularity bins (number of training ratings), e.g. "1-10", "201+".
        shares: `{system: [share per bin]}`, in legend order.

    Returns:
        The PNG image.
    """
    figure, axis = plt.subplots(figsize=(6.4, 4))
    positions = np.arange(len(bins))
    width = 0.8 / max(len(shares), 1)
    for index, (system, values) in enumerate(shares.items()):
        offset = (index - (len(shares) - 1) / 2) * width
        axis.bar(positions + offset, values, width=width, label=system)
    axis.set_xticks(positions, bins)
    axis.set(
        title="Popularity of the recommended items",
        xlabel="training ratings of the recommended item",
        ylabel="share of recommended slots",
    )
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize="small")
    return _png_bytes(figure)
