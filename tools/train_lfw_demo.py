#!/usr/bin/env python
"""Show that training works, end to end, on LFW (CPU is fine; the numbers are time-bounded).

    python tools/train_lfw_demo.py --minutes 20 --finetune-minutes 10

1. Builds a PaddleX-format dataset from LFW with :func:`facefeat.data.lfw_demo.build_lfw_demo`
   (YuNet + 5-point alignment to 112x112): train = the LFW people with >= 8 images (217
   identities, at most ``--max-images-per-id`` images each); val = pairs of the first ``--folds``
   folds of the standard ``pairs.txt`` in which neither person is a train identity
   (``--max-pairs`` of them, balanced per fold), so train and val never share a person.
2. Evaluates SFace (OpenCV Zoo weights) on the val pairs: 10-fold accuracy, threshold.
3. Trains MobileFaceNet from scratch for about ``--minutes`` (the epoch count is set from a measured
   training speed) and reports val accuracy before (random init) and after.
4. Fine-tunes SFace from its released weights for about ``--finetune-minutes``, before/after.

Everything goes to ``--work`` (default ``./output/lfw_demo``); the summary is ``demo_result.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from facefeat.utils import shared_dir  # noqa: E402


def write_pairs_subset(pairs_file: Path, folds: int, dst: Path) -> Path:
    """The first ``folds`` folds of LFW's pairs.txt, in its own format."""
    lines = [ln for ln in pairs_file.read_text().splitlines() if ln.strip()]
    head = lines[0].split()
    n_folds, per = (int(head[0]), int(head[1])) if len(head) == 2 else (1, int(head[0]))
    folds = min(folds, n_folds)
    body = lines[1: 1 + folds * 2 * per]
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(f"{folds} {per}\n" + "\n".join(body) + "\n")
    return dst


def measure_train_speed(model: str, batch_size: int, steps: int = 3) -> float:
    """Images per second of forward + backward + AdamW on this machine (median after 2 warm-up steps)."""
    import torch

    from facefeat.models.heads import build_head
    from facefeat.registry import get_spec
    from facefeat.runtime.torch_build import build_torch_model

    spec = get_spec(model)
    net = build_torch_model(spec).train()
    head = build_head("ArcMargin", spec.embedding_size, 100)
    opt = torch.optim.AdamW(list(net.parameters()) + list(head.parameters()), lr=1e-4)
    x = torch.randn(batch_size, 3, 112, 112)
    y = torch.randint(0, 100, (batch_size,))
    times = []
    for i in range(steps + 2):
        t = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(head(net(x), y), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t)
    return batch_size / sorted(times)[len(times) // 2]


def evaluate(predictor, pairs: Path, batch_size: int) -> dict:
    from facefeat.engine.evaluate import evaluate_pairs_file

    r = evaluate_pairs_file(predictor, pairs, flip=True, batch_size=batch_size, progress=True)
    keep = ("accuracy", "std", "auc", "eer", "recommended_threshold", "protocol", "num_pairs", "seconds")
    return {"flip": {k: r["flip"].get(k) for k in keep}, "no_flip": {k: r["no_flip"].get(k) for k in keep}}


def pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lfw", default=str(shared_dir() / "data" / "lfw"))
    ap.add_argument("--pairs", default=str(shared_dir() / "data" / "lfw_pairs.txt"))
    ap.add_argument("--work", default="./output/lfw_demo")
    ap.add_argument("--folds", type=int, default=5, help="val = the first N folds of pairs.txt")
    ap.add_argument("--max-pairs", type=int, default=600, help="val pairs kept (balanced per fold)")
    ap.add_argument("--max-images-per-id", type=int, default=20)
    ap.add_argument("--align", default="align", choices=["align", "crop", "center"])
    ap.add_argument("--minutes", type=float, default=20.0, help="MobileFaceNet from-scratch training budget")
    ap.add_argument("--finetune-minutes", type=float, default=10.0, help="SFace fine-tuning budget (0: skip)")
    ap.add_argument("--epochs", type=int, default=0, help="MobileFaceNet epochs (0: from --minutes and a speed probe)")
    ap.add_argument("--finetune-epochs", type=int, default=0, help="SFace epochs (0: from --finetune-minutes)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.002, help="MobileFaceNet peak learning rate")
    ap.add_argument("--finetune-lr", type=float, default=1e-4, help="SFace fine-tuning peak learning rate")
    ap.add_argument("--loss", default="ArcMargin", choices=["ArcMargin", "CosMargin"])
    ap.add_argument("--margin", type=float, default=None, help="Train.margin (default: the loss's)")
    ap.add_argument("--scale", type=float, default=None, help="Train.scale (default 64)")
    ap.add_argument("--num-workers", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--eval-batch-size", type=int, default=64)
    ap.add_argument("--dataset", default=None, help="dataset folder (default: <work>/dataset)")
    ap.add_argument("--skip-build", action="store_true", help="reuse an existing dataset")
    ap.add_argument("--skip-scratch", action="store_true", help="skip the MobileFaceNet from-scratch run")
    a = ap.parse_args(argv)

    from facefeat.config import load_config
    from facefeat.data.lfw_demo import build_lfw_demo
    from facefeat.engine.runner import save_used_config
    from facefeat.engine.train import run_train
    from facefeat.predict.predictor import create_model
    from facefeat.utils import atomic_write_json

    t_all = time.perf_counter()
    work = Path(a.work).resolve()
    ds = Path(a.dataset).resolve() if a.dataset else work / "dataset"
    summary: dict = {"args": vars(a)}

    def save() -> None:
        summary["wall_time_s"] = round(time.perf_counter() - t_all, 1)
        atomic_write_json(work / "demo_result.json", summary)

    # 1. dataset
    if not (a.skip_build and (ds / "train" / "label.txt").is_file()):
        subset = write_pairs_subset(Path(a.pairs), a.folds, work / "pairs_subset.txt")
        t = time.perf_counter()
        built = build_lfw_demo(a.lfw, subset, ds, align=a.align, max_pairs=a.max_pairs,
                               max_images_per_id=a.max_images_per_id)
        built["seconds"] = round(time.perf_counter() - t, 1)
        summary["dataset"] = {k: v for k, v in built.items() if k != "fallback_images"}
    else:
        summary["dataset"] = json.loads((ds / "lfw_demo.json").read_text())
    d = summary["dataset"]
    print(f"[dataset] {d['num_train_ids']} train identities / {d['num_train_images']} images; "
          f"{d['num_val_pairs']} val pairs ({d['val_folds']} LFW folds); faces {d.get('faces')}", flush=True)
    val_pairs = ds / "val" / "pair_label.txt"
    save()

    # 2. SFace as released
    sface = evaluate(create_model("SFace", batch_size=a.eval_batch_size), val_pairs, a.eval_batch_size)
    summary["sface_pretrained"] = sface
    print(f"[SFace] accuracy {pct(sface['flip']['accuracy'])} ± {pct(sface['flip']['std'])} (flip test), "
          f"{pct(sface['no_flip']['accuracy'])} (no flip); threshold {sface['flip']['recommended_threshold']:.4f}",
          flush=True)
    save()

    def budget_epochs(model: str, minutes: float) -> tuple[int, float]:
        ips = measure_train_speed(model, a.batch_size)
        n = d["num_train_images"]
        # leave ~15% of the budget for validation and checkpoints
        epochs = max(1, int(math.floor(0.85 * minutes * 60 * ips / n)))
        return epochs, ips

    def train(model: str, config: str, out: Path, minutes: float, extra: list[str], fixed_epochs: int = 0) -> dict:
        if fixed_epochs > 0:
            epochs, ips = fixed_epochs, float("nan")
        else:
            # the probe is only as good as the machine is quiet; pass --epochs on a shared machine
            epochs, ips = budget_epochs(model, minutes)
            print(f"[{model}] measured {ips:.1f} img/s -> {epochs} epoch(s) of {d['num_train_images']} images "
                  f"for a ~{minutes:g} min budget", flush=True)
        cfg = load_config(str(REPO / "facefeat" / "configs" / config), [
            "Global.mode=train", f"Global.dataset_dir={ds}", f"Global.output={out}", f"Global.device={a.device}",
            f"Train.epochs_iters={epochs}", f"Train.batch_size={a.batch_size}", f"Train.num_workers={a.num_workers}",
            f"Train.loss={a.loss}", f"Train.eval_interval={epochs}", "Train.log_interval=10",
            *([f"Train.margin={a.margin}"] if a.margin is not None else []),
            *([f"Train.scale={a.scale}"] if a.scale is not None else []),
            # PaddleX warms up for 1 epoch; a CPU-budget run of few epochs warms up for 10% of them
            f"Train.warmup_steps={min(1.0, 0.1 * epochs)}",
            f"Evaluate.batch_size={a.eval_batch_size}", *extra])
        t = time.perf_counter()
        res = run_train(cfg, on_start=lambda: save_used_config(cfg))
        return {"epochs": epochs, "measured_train_img_per_s": None if math.isnan(ips) else round(ips, 2), "train_seconds": round(time.perf_counter() - t, 1),
                "best_val": res["best_metric"], "history": [{k: h.get(k) for k in ("epoch", "loss", "seconds", "val")}
                                                             for h in res["history"]],
                "output": str(out)}

    # 3. MobileFaceNet from scratch
    import torch

    from facefeat.registry import get_spec
    from facefeat.runtime.torch_build import build_torch_model

    if not a.skip_scratch and (a.minutes > 0 or a.epochs > 0):
        torch.manual_seed(0)
        before = evaluate(build_torch_model(get_spec("MobileFaceNet")), val_pairs, a.eval_batch_size)
        print(f"[MobileFaceNet] random init: accuracy {pct(before['flip']['accuracy'])}", flush=True)
        mfn_out = work / "mobilefacenet_scratch"
        mfn = train("MobileFaceNet", "MobileFaceNet.yaml", mfn_out, a.minutes,
                    ["Train.pretrain_weight_path=null", f"Train.learning_rate={a.lr}"], a.epochs)
        after = evaluate(create_model(model_dir=mfn_out / "best_model" / "inference", batch_size=a.eval_batch_size),
                         val_pairs, a.eval_batch_size)
        summary["mobilefacenet_scratch"] = {"before": before, "after": after, **mfn}
        print(f"[MobileFaceNet] from scratch, {mfn['epochs']} epoch(s) in {mfn['train_seconds'] / 60:.1f} min: "
              f"accuracy {pct(before['flip']['accuracy'])} -> {pct(after['flip']['accuracy'])} "
              f"(threshold {after['flip']['recommended_threshold']:.4f})", flush=True)
        save()

    # 4. SFace fine-tuning
    if a.finetune_minutes > 0 or a.finetune_epochs > 0:
        sf_out = work / "sface_finetune"
        sf = train("SFace", "SFace.yaml", sf_out, a.finetune_minutes,
                   ["Train.pretrain_weight_path=SFace", f"Train.learning_rate={a.finetune_lr}"], a.finetune_epochs)
        after_sf = evaluate(create_model(model_dir=sf_out / "best_model" / "inference", batch_size=a.eval_batch_size),
                            val_pairs, a.eval_batch_size)
        summary["sface_finetune"] = {"before": sface, "after": after_sf, **sf}
        print(f"[SFace] fine-tuned {sf['epochs']} epoch(s) in {sf['train_seconds'] / 60:.1f} min: accuracy "
              f"{pct(sface['flip']['accuracy'])} -> {pct(after_sf['flip']['accuracy'])}", flush=True)
    save()
    print(f"[done] {work / 'demo_result.json'} ({(time.perf_counter() - t_all) / 60:.1f} min)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
