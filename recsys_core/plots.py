"""PNG plots: training curves for every model, the DLRM feature-interaction heatmap."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_history(name: str, history: dict[str, list[float]], path: str) -> None:
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
            axis.plot(epochs, history[f"val_{metric}"], marker="o", label="test")
        axis.set(title=f"{name}: {metric}", xlabel="epoch")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def plot_interactions(matrix: np.ndarray, labels: tuple[str, ...], path: str, title: str) -> None:
    """Heatmap of a `[features, features]` interaction-strength matrix."""
    figure, axis = plt.subplots(figsize=(6, 5))
    image = axis.imshow(matrix, cmap="viridis")
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    for (row, col), value in np.ndenumerate(matrix):
        axis.text(col, row, f"{value:.2f}", ha="center", va="center", color="white", fontsize=7)
    axis.set_title(title)
    figure.colorbar(image)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
