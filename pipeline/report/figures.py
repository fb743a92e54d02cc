"""The report's figures as PNG bytes (matplotlib, Agg, no pyplot state), ready to embed as base64.

matplotlib is imported when the first figure is drawn, not with this module: it takes about a
second, and the report's sections (and every test that reads them) import this module.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from pipeline.report.analysis import Bin
from pipeline.report.curves import CurvePoint
from pipeline.report.health import LayerRow
from pipeline.report.stats import ErrorEstimate, estimate

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TRAIN, DEV, OTHER = "#1f77b4", "#d62728", "#7f7f7f"


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight", metadata={"Software": None})  # no version stamp
    return buf.getvalue()


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    return Figure(figsize=(width, height), layout="constrained")


def _new(width: float = 6.0, height: float = 3.6, ncols: int = 1) -> tuple[Figure, list]:
    fig = _figure(width, height)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return fig, list(axes)


def errors_figure(errors: Mapping[str, ErrorEstimate], human_error: float, confidence: float) -> bytes:
    """Error per split with its interval, against the human-level line."""
    fig, (ax,) = _new(5.5, 3.4)
    names = list(errors)
    rates = np.array([errors[k].rate for k in names])
    lows = rates - np.array([errors[k].low for k in names])
    highs = np.array([errors[k].high for k in names]) - rates
    ax.bar(
        names, 100 * rates, color=[TRAIN if k == "train" else DEV if k == "dev" else OTHER for k in names], alpha=0.7
    )
    ax.errorbar(names, 100 * rates, yerr=100 * np.vstack([lows, highs]), fmt="none", color="black", capsize=6)
    ax.axhline(100 * human_error, color="green", linestyle="--", label=f"human level {100 * human_error:.1f}%")
    ax.set_ylabel("error (%)")
    ax.set_title(f"Error per split, {100 * confidence:.0f}% Wilson intervals")
    ax.legend()
    return _png(fig)


def learning_curve_figure(
    points: Sequence[CurvePoint], human_error: float, dev_n: int | None = None, confidence: float = 0.95
) -> bytes:
    """Train and dev error against m; with ``dev_n``, each dev point carries its Wilson interval."""
    fig, (ax,) = _new()
    m = [p.m for p in points]
    ax.plot(m, [100 * p.train_error for p in points], "o-", color=TRAIN, label="train")
    dev = np.array([100 * p.dev_error for p in points])
    if dev_n:
        intervals = [estimate("dev", p.dev_error, dev_n, confidence) for p in points]
        bounds = 100 * np.array([(e.low, e.high) for e in intervals])
        ax.fill_between(m, bounds[:, 0], bounds[:, 1], color=DEV, alpha=0.12, label="dev interval")
    ax.plot(m, dev, "s-", color=DEV, label="dev")
    ax.axhline(100 * human_error, color="green", linestyle="--", label="human level")
    ax.set_xlabel("training examples m")
    ax.set_ylabel("error (%)")
    ax.set_title("Learning curve of the best configuration")
    ax.legend()
    return _png(fig)


def cost_figure(history: Sequence[Mapping[str, float | None]]) -> bytes:
    """Train and dev cost per epoch, with dev error on a second axis when recorded."""
    fig, (ax,) = _new()
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h.get("train_cost") for h in history], color=TRAIN, label="train cost")
    if any(h.get("dev_cost") is not None for h in history):
        ax.plot(epochs, [h.get("dev_cost") for h in history], color=DEV, label="dev cost")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cost")
    ax.set_yscale("log")
    handles = ax.get_lines()
    if any(h.get("dev_error") is not None for h in history):
        ax2 = ax.twinx()
        dev_error = [100 * h["dev_error"] if h.get("dev_error") is not None else None for h in history]
        handles += ax2.plot(epochs, dev_error, ":", color=OTHER, label="dev error (right)")
        ax2.set_ylabel("dev error (%)")
    ax.legend(handles=handles, loc="upper right")  # one legend for both axes
    ax.set_title("Final model: cost per epoch")
    return _png(fig)


def regularization_figure(rows: Sequence[Mapping[str, float]]) -> bytes:
    """Train and dev error of the finished trials against l2_lambda and keep_prob (no retraining)."""
    fig, axes = _new(10.0, 3.6, ncols=2)
    for ax, key in zip(axes, ("l2_lambda", "keep_prob"), strict=True):
        pts = sorted((r[key], r["train_error"], r["dev_error"]) for r in rows if r.get(key) is not None)
        x = np.array([p[0] for p in pts], dtype=float)
        ax.scatter(x, [100 * p[1] for p in pts], color=TRAIN, marker="o", label="train")
        ax.scatter(x, [100 * p[2] for p in pts], color=DEV, marker="s", label="dev")
        ax.set_xlabel(key + (" (0 = off)" if key == "l2_lambda" else ""))
        ax.set_ylabel("error (%)")
        if key == "l2_lambda" and (x > 0).any():
            ax.set_xscale("symlog", linthresh=float(x[x > 0].min()))  # keeps the 'off' trials visible at 0
        ax.legend()
    fig.suptitle("Regularization path from the trials")
    return _png(fig)


def history_figure(numbers: Sequence[int], values: Sequence[float]) -> bytes:
    """Each finished trial's objective and the best so far."""
    fig, (ax,) = _new()
    ax.scatter(numbers, [100 * v for v in values], color=OTHER, label="trial")
    ax.step(numbers, [100 * v for v in np.minimum.accumulate(values)], where="post", color=DEV, label="best so far")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial number")
    ax.set_ylabel("dev error (%)")
    ax.set_title("Optimization history")
    ax.legend()
    return _png(fig)


def importance_figure(importances: Mapping[str, float]) -> bytes:
    fig, (ax,) = _new(5.5, 0.5 + 0.45 * len(importances))
    names = list(importances)[::-1]  # largest on top
    ax.barh(names, [importances[n] for n in names], color=TRAIN)
    ax.set_xlabel("importance (normalized)")
    ax.set_title("Parameter importances")
    return _png(fig)


def confusion_figure(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> bytes:
    cm = np.asarray(matrix, dtype=int)
    fig, (ax,) = _new(4.6, 4.2)
    ax.grid(False)
    ax.imshow(cm, cmap="Blues")
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    for i, j in np.ndindex(cm.shape):
        if cm[i, j]:
            ax.text(
                j, i, str(cm[i, j]), ha="center", va="center", color="white" if cm[i, j] > cm.max() / 2 else "black"
            )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (test)")
    return _png(fig)


def health_figure(rows: Sequence[LayerRow]) -> bytes:
    """The update ratio (learning rate x ||dW|| / ||W||) of each layer per epoch, log scale."""
    fig, (ax,) = _new()
    layers = sorted({r.layer for r in rows})
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    for i, layer in enumerate(layers):
        pts = sorted((r.epoch, r.update_ratio) for r in rows if r.layer == layer)
        xs = [e for e, v in pts if math.isfinite(v) and v > 0]  # a log axis shows neither 0 nor inf
        ys = [v for e, v in pts if math.isfinite(v) and v > 0]
        label = f"layer {layer}" + (" (output)" if layer == layers[-1] else "")
        ax.plot(xs, ys, color=cmap(i / max(1, len(layers) - 1)), label=label)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("update ratio  lr·‖dW‖ / ‖W‖")
    ax.set_title("Final model: gradient health per layer")
    ax.legend(fontsize="small")
    return _png(fig)


def reliability_figure(bins: Sequence[Bin], ece: float) -> bytes:
    """Accuracy against the mean predicted probability per bin, with the diagonal of perfect calibration."""
    fig, (ax,) = _new(4.6, 4.2)
    full = [b for b in bins if b.n]
    width = bins[0].high - bins[0].low if bins else 0.1
    ax.bar(
        [b.low for b in full],
        [b.accuracy for b in full],
        width=width,
        align="edge",
        color=TRAIN,
        alpha=0.6,
        edgecolor="black",
        label="accuracy",
    )
    ax.plot([b.confidence for b in full], [b.accuracy for b in full], "o", color=DEV, label="bin mean probability")
    ax.plot([0, 1], [0, 1], "--", color=OTHER, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability of the predicted class")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability on dev (ECE {ece:.3f})")
    ax.legend(loc="upper left", fontsize="small")
    return _png(fig)


def gallery_figure(images: Sequence[np.ndarray], titles: Sequence[str]) -> bytes:
    """Misclassified examples in a grid, each with its caption ("true -> predicted (p)")."""
    cols = min(4, len(images))
    rows = -(-len(images) // cols)
    fig = _figure(2.0 * cols, 2.2 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, image, title in zip(axes, images, titles, strict=False):
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=8)
    return _png(fig)
