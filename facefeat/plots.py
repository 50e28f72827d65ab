"""Plots with matplotlib (Agg backend, no display): the ROC of an evaluation and the histogram of
images per identity of a dataset check. PNGs are written atomically.

matplotlib comes with the ``eval`` / ``train`` extras (``pip install 'facefeat[eval]'``).
"""

from __future__ import annotations

import io
import os
from typing import Mapping, Sequence

import numpy as np

from facefeat.errors import require
from facefeat.utils import atomic_write_bytes

__all__ = ["save_histogram_png", "save_roc_png"]

#: the operating points marked on a ROC (false accept rates)
MARKED_FARS = (1e-3, 1e-2)


def _pyplot():
    require("matplotlib", "eval", "drawing plots (ROC, histograms)")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> str:
    plt = _pyplot()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=100)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return str(path)


def save_roc_png(curves: Sequence[tuple[str, Mapping]], path: str | os.PathLike, title: str = "ROC",
                 size: tuple[int, int] = (720, 560)) -> str:
    """TAR against FAR (log scale) for ``(name, roc)`` curves; ``roc``: ``fpr``, ``tpr`` and
    optionally ``auc``, ``eer``, ``tar_at_far`` (as :func:`facefeat.engine.verification.roc_metrics`).

    Each curve's EER point and its TAR at FAR 1e-3 / 1e-2 are marked; the legend gives AUC, EER
    and TAR@FAR=1e-3. Returns the path.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(size[0] / 100, size[1] / 100))
    min_far = 1e-4
    for _, r in curves:
        fpr = np.asarray(r["fpr"], dtype=float)
        if (fpr > 0).any():
            min_far = min(min_far, float(fpr[fpr > 0].min()))
    lo = 10.0 ** max(-6, int(np.floor(np.log10(min_far))))
    for name, r in curves:
        fpr = np.clip(np.asarray(r["fpr"], dtype=float), lo, 1.0)
        tpr = np.asarray(r["tpr"], dtype=float)
        parts = [name] if name else []
        auc, eer = r.get("auc"), r.get("eer")
        tar = r.get("tar_at_far") or {}
        if auc is not None and np.isfinite(auc):
            parts.append(f"AUC {auc:.4f}")
        if eer is not None and np.isfinite(eer):
            parts.append(f"EER {100 * eer:.2f}%")
        t3 = (tar.get("1e-03") or {}).get("tar")
        if t3 is not None and np.isfinite(t3):
            parts.append(f"TAR@1e-3 {100 * t3:.2f}%")
        (line,) = ax.plot(fpr, tpr, lw=1.8, label="  ".join(parts) or None, drawstyle="steps-post")
        if eer is not None and np.isfinite(eer) and eer > 0:
            ax.plot([max(eer, lo)], [1 - eer], "o", mfc="none", color=line.get_color(), ms=7)
        for far in MARKED_FARS:
            pt = tar.get(f"{far:.0e}") or {}
            if pt.get("tar") is not None and np.isfinite(pt["tar"]):
                ax.plot([far], [pt["tar"]], "s", color=line.get_color(), ms=5)
                ax.annotate(f"{100 * pt['tar']:.1f}% @ {far:.0e}", (far, pt["tar"]), textcoords="offset points",
                            xytext=(4, -12), fontsize=8, color=line.get_color())
    for far in MARKED_FARS:
        ax.axvline(far, color="0.8", lw=0.8, ls="--", zorder=0)
    ax.set_xscale("log")
    ax.set_xlim(lo, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("FAR (false accept rate, log scale)")
    ax.set_ylabel("TAR (true accept rate)")
    ax.set_title(title)
    ax.grid(True, which="major", color="0.9")
    if any(line.get_label() and not line.get_label().startswith("_") for line in ax.get_lines()):
        ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def save_histogram_png(labels: Sequence[str], heights: Sequence[int], path: str | os.PathLike, title: str,
                       xlabel: str, ylabel: str) -> str:
    """A labelled bar chart (one bar per bin, its count on top). Returns the path."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.4, 0.5 * len(labels) + 1.5), 4.2))
    bars = ax.bar(range(len(labels)), heights, color="#4285f4", edgecolor="#285ab4")
    ax.bar_label(bars, fontsize=8)
    ax.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 12 else 0, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.yaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return _save(fig, path)
