"""Plots for the documentation's benchmarks page, from recorded benchmark results.

Reads ``bench/results/*.json`` (each written from a benchmark run: the command, the data, the
machine, and the rows) and the calibrated operating points in the registry, and writes one PNG per
figure into ``docs/img/`` (matplotlib, Agg; atomic writes)::

    python bench/plot_results.py                  # all figures
    python bench/plot_results.py --out /tmp/img   # elsewhere

To refresh a figure, re-run its benchmark (the ``command`` in its JSON file; ``bench/cluster.py``
writes its rows with ``--json``), update the JSON file, and run this script again.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from facefeat.errors import require  # noqa: E402
from facefeat.utils import atomic_write_bytes  # noqa: E402

RESULTS = REPO / "bench" / "results"


def _plt():
    require("matplotlib", "eval", "drawing the benchmark plots")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _plt()
    buf = io.BytesIO()
    try:
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=90)
    finally:
        plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _load(name: str) -> dict:
    path = RESULTS / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SystemExit(f"{path}: no recorded results; run the benchmark named in this script's docstring") from None


def verification(out: Path, model: str = "SFace") -> Path:
    """TAR at each calibrated FAR (1:1) and DIR at each FPIR per gallery size (1:N)."""
    from facefeat.registry import get_spec

    t = get_spec(model).thresholds
    if not t:
        raise SystemExit(f"{model} has no calibrated thresholds in the registry")
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    pts = sorted((v["far"], v["tar"], v["threshold"]) for k, v in t["verification"].items() if k.startswith("far="))
    a.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="#2f6fde")
    for far, tar, thr in pts:
        a.annotate(f"threshold {thr:.3f}", (far, tar), textcoords="offset points", xytext=(6, -4), fontsize=8)
    a.set_xscale("log")
    a.margins(x=0.25, y=0.12)
    a.set_xlabel("false accept rate (FAR)")
    a.set_ylabel("true accept rate (TAR)")
    a.set_title(f"{model} 1:1 verification on {t['data']['name']}", fontsize=10)
    a.grid(alpha=0.3)
    for g in sorted(t["identification"], key=lambda g: g["gallery_size"]):
        p = sorted((v["fpir"], v["dir"]) for k, v in g.items() if k.startswith("fpir="))
        b.plot([x[0] for x in p], [x[1] for x in p], "o-", label=f"gallery of {g['gallery_size']:,}")
    b.set_xscale("log")
    b.set_xlabel("false positive identification rate (FPIR)")
    b.set_ylabel("detection and identification rate (DIR)")
    b.set_title(f"{model} 1:N open-set identification", fontsize=10)
    b.legend(fontsize=8)
    b.grid(alpha=0.3)
    return _save(fig, out / "bench-verification.png")


def clustering(out: Path) -> Path:
    """Pairwise and BCubed F1 against the threshold, per method."""
    rec = _load("clustering.json")
    if isinstance(rec, list):  # the plain rows bench/cluster.py --json writes
        rec = {"rows": rec}
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    colors = {"agglomerative": "#2f6fde", "graph": "#d35400", "dbscan": "#1e8449", "hdbscan": "#8e44ad"}
    for method, color in colors.items():
        rows = sorted((r for r in rec["rows"] if r["method"] == method and r["threshold"] is not None),
                      key=lambda r: r["threshold"])
        if not rows:
            continue
        xs = [r["threshold"] for r in rows]
        ax.plot(xs, [r["pair_f1"] for r in rows], "o-", color=color, label=f"{method}: pair F1")
        ax.plot(xs, [r["bcubed_f1"] for r in rows], "s--", color=color, alpha=0.6, label=f"{method}: BCubed F1")
    for r in rec["rows"]:
        if r["threshold"] is None:  # HDBSCAN has no threshold: a horizontal reference line
            ax.axhline(r["pair_f1"], color=colors.get(r["method"], "grey"), lw=1, ls=":",
                       label=f"{r['method']} (no threshold): pair F1")
    ax.set_xlabel("cosine similarity threshold")
    ax.set_ylabel("F1")
    ax.set_ylim(0.45, 1.0)
    ax.set_title("Clustering all of LFW (15,013 faces, 5,749 identities), SFace", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    return _save(fig, out / "bench-clustering.png")


def video(out: Path) -> Path:
    """Frames per second with 1-3 faces: predict_video (every frame, every 5th) vs per-frame predict."""
    rec = _load("video.json")
    plt = _plt()
    import numpy as np

    rows = rec["rows"]
    x = np.arange(len(rows))
    series = [("video_every_5th_fps", "predict_video, detect every 5th frame", "#1e8449"),
              ("video_every_frame_fps", "predict_video, detect every frame", "#2f6fde"),
              ("predict_per_frame_fps", "pipe.predict(frame) per frame", "#8a94a6")]
    fig, ax = plt.subplots(figsize=(7, 3.4))
    w = 0.27
    for i, (key, label, color) in enumerate(series):
        vals = [r[key] for r in rows]
        bars = ax.bar(x + (i - 1) * w, vals, w, label=label, color=color)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(x, [f"{r['faces']} face{'s' if r['faces'] > 1 else ''}" for r in rows])
    ax.set_ylabel("frames per second")
    ax.set_title("Video at 640×480, SFace, 2 CPU cores", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out / "bench-video.png")


def embed_dataset(out: Path) -> Path:
    """Images per second and peak memory: local engine vs Ray on the same CPUs."""
    rec = _load("embed_dataset.json")
    plt = _plt()
    rows = rec["rows"]
    names = [r["engine"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 2.8))
    bars = a.barh(names, [r["images_per_s"] for r in rows], color=["#8a94a6", "#2f6fde"])
    a.bar_label(bars, fmt="%.1f", fontsize=8)
    a.set_xlabel("images per second")
    bars = b.barh(names, [r["peak_rss_mb"] for r in rows], color=["#8a94a6", "#2f6fde"])
    b.bar_label(bars, fmt="%.0f MB", fontsize=8)
    b.set_xlabel("peak RSS per process (MB)")
    b.set_yticks([])
    a.set_title("embed_dataset on 300 LFW images (loaded machine)", fontsize=10, loc="left")
    return _save(fig, out / "bench-embed-dataset.png")


FIGURES = {"verification": verification, "clustering": clustering, "video": video, "embed-dataset": embed_dataset}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img", help="folder for the PNGs")
    ap.add_argument("figures", nargs="*", choices=[[], *FIGURES], default=[], help="default: all")
    args = ap.parse_args(argv)
    for name in args.figures or list(FIGURES):
        print(FIGURES[name](args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
