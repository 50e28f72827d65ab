"""LFW through the whole pipeline: detect (YuNet) -> align -> embed -> verify / identify.

Verification: the standard 6,000-pair protocol (10 folds; threshold chosen on 9 folds, accuracy on
the 10th), with and without the flip test, for ``align`` (5-point similarity onto the ArcFace
template) and ``crop`` (PaddleX's box crop stretched to 112x112) modes. Images where YuNet finds
no face fall back to a fixed centre crop and are counted. Also: ROC AUC, EER, TAR@FAR.

Identification (``--identification``): gallery = the first image of every person with >= 2
images, probes = their other images (closed set: rank-1 accuracy), and impostor probes = people
with a single image (open set: detection-and-identification rate vs false-positive
identification rate at the verification threshold).

Speed: end-to-end ms per LFW image (read + detect + align + embed, without and with the flip
test), for the runtime chosen by ``--backend/--precision`` (default ``auto``; ``--model-dir`` runs
an exported or int8-quantised model directory), and where the
``face_recognition`` package (dlib HOG + ResNet) is installed, the same on a subset for it, on
one thread, in the same run.

    python bench/lfw.py                   # all 6,000 pairs
    python bench/lfw.py --limit 600       # 60 matched + 60 mismatched pairs per fold... quick
    python bench/lfw.py --identification  # + identification over all 13,233 images
    python bench/lfw.py --limit 600 --backend onnxruntime --precision fp32
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import LFW_DIR, LFW_PAIRS, need, print_table  # noqa: E402

from facefeat import create_model  # noqa: E402
from facefeat.data.formats import read_pairs  # noqa: E402
from facefeat.data.lfw_demo import center_crop  # noqa: E402
from facefeat.engine.verification import evaluate_pairs  # noqa: E402
from facefeat.io import read_image  # noqa: E402
from facefeat.io.image import iter_batches  # noqa: E402
from facefeat.vision.align import align  # noqa: E402
from facefeat.vision.detector import YuNetDetector, central_face  # noqa: E402

MODES = ("align", "crop")


def select_pairs(ps, limit: int | None):
    """All pairs, or about ``limit`` of them balanced over folds and labels (file order kept)."""
    folds = np.asarray(ps.fold_ids)
    if not limit or limit >= len(ps.pairs):
        return list(ps.pairs), folds
    k = max(1, limit // (2 * len(set(folds.tolist()))))
    keep = []
    for f in sorted(set(folds.tolist())):
        idx = np.flatnonzero(folds == f)
        keep += [i for i in idx if ps.pairs[i].label == 1][:k] + [i for i in idx if ps.pairs[i].label == 0][:k]
    keep.sort()
    return [ps.pairs[i] for i in keep], folds[keep]


class Embedder:
    """Embeds LFW images in every mode, with and without flip, timing the no-flip align path."""

    def __init__(self, model_name: str, weights: str | None, threads: int, backend: str = "auto",
                 precision: str = "auto", model_dir: str | None = None):
        self.model = create_model(None if model_dir else model_name, weights, model_dir=model_dir, batch_size=64,
                                  num_threads=threads, backend=backend, precision=precision)
        self.detector = YuNetDetector(score_threshold=0.5)
        self.no_face: list[str] = []
        self.t_e2e = 0.0
        self.t_flip = 0.0  # the flip test's extra cost on the align path
        self.n_e2e = 0

    def run(self, paths: list[str]) -> dict[tuple[str, bool], np.ndarray]:
        out = {(m, f): [] for m in MODES for f in (False, True)}
        done = 0
        for chunk in iter_batches(paths, 64):
            t0 = time.perf_counter()
            faces = {m: [] for m in MODES}
            for p in chunk:
                img = read_image(p)
                det = central_face(self.detector.detect(img), img.shape[1], img.shape[0])
                if det is None:
                    self.no_face.append(p)
                for m in MODES:
                    faces[m].append(center_crop(img) if det is None else align(img, det, mode=m))
            raw = self.model.raw_features(faces["align"])
            self.t_e2e += time.perf_counter() - t0  # read + detect + align + embed (align mode, no flip)
            self.n_e2e += len(chunk)
            raws = {"align": raw, "crop": self.model.raw_features(faces["crop"])}
            for m in MODES:
                t1 = time.perf_counter()
                flipped = self.model.raw_features([np.ascontiguousarray(f[:, ::-1]) for f in faces[m]])
                if m == "align":
                    self.t_flip += time.perf_counter() - t1
                out[(m, False)].append(raws[m])
                out[(m, True)].append(raws[m] + flipped)
            done += len(chunk)
            print(f"  {done}/{len(paths)} images, {self.t_e2e / self.n_e2e * 1e3:.1f} ms/img e2e",
                  end="\r", flush=True)
        print()
        res = {}
        for key, parts in out.items():
            x = np.concatenate(parts)
            res[key] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return res


def verification(feats, index, pairs, folds) -> list[dict]:
    li = np.array([index[p.left] for p in pairs])
    ri = np.array([index[p.right] for p in pairs])
    labels = np.array([p.label for p in pairs])
    rows = []
    for (mode, flip), f in feats.items():
        scores = np.sum(f[li] * f[ri], axis=1)
        m = evaluate_pairs(scores, labels, fold_ids=folds)
        rows.append({"mode": mode, "flip": flip, **summarise(m)})
    return rows


def summarise(m: dict) -> dict:
    tar = m.get("tar_at_far", {})
    return {"accuracy": m["accuracy"], "std": m["std"], "threshold": m["recommended_threshold"],
            "auc": m["auc"], "eer": m["eer"],
            "tar@far=1e-2": tar.get("1e-02", {}).get("tar"), "tar@far=1e-3": tar.get("1e-03", {}).get("tar")}


def identification(emb: Embedder, threshold: float) -> dict:
    people = sorted(p for p in os.listdir(LFW_DIR) if (LFW_DIR / p).is_dir())
    files = {p: sorted(str(LFW_DIR / p / f) for f in os.listdir(LFW_DIR / p)) for p in people}
    gallery = [(files[p][0], p) for p in people if len(files[p]) >= 2]
    probes = [(f, p) for p in people if len(files[p]) >= 2 for f in files[p][1:]]
    impostors = [(files[p][0], p) for p in people if len(files[p]) == 1]
    paths = [g for g, _ in gallery] + [q for q, _ in probes] + [q for q, _ in impostors]
    print(f"identification: {len(gallery)} gallery, {len(probes)} genuine probes, {len(impostors)} impostors")
    f = emb.run(paths)[("align", False)]
    g, q, imp = f[: len(gallery)], f[len(gallery): len(gallery) + len(probes)], f[len(gallery) + len(probes):]
    glabels = np.array([p for _, p in gallery])
    s = q @ g.T
    top = s.argmax(1)
    correct = glabels[top] == np.array([p for _, p in probes])
    top_score = s.max(1)
    imp_top = (imp @ g.T).max(1)
    return {"gallery": len(gallery), "probes": len(probes), "impostors": len(impostors),
            **open_set(correct, top_score, imp_top, threshold)}


def open_set(correct: np.ndarray, top_score: np.ndarray, imp_top: np.ndarray, threshold: float) -> dict:
    """Rank-1, DIR/FPIR at the verification threshold, and DIR at FPIR 1% / 10% (thresholds from
    the impostors' best-match scores)."""
    out = {"rank1": float(correct.mean()), "threshold": float(threshold),
           "dir@threshold": float(np.mean(correct & (top_score >= threshold))),
           "fpir@threshold": float(np.mean(imp_top >= threshold))}
    for fpir in (0.01, 0.1):
        thr = float(np.quantile(imp_top, 1 - fpir))
        out[f"dir@fpir={fpir}"] = float(np.mean(correct & (top_score > thr)))
        out[f"threshold@fpir={fpir}"] = thr
    return out


def _pkg_resources_shim() -> None:
    """face_recognition_models still calls pkg_resources.resource_filename, which setuptools >= 81
    no longer ships; provide that one function from importlib.resources."""
    import importlib.machinery
    import importlib.util
    import types

    if importlib.util.find_spec("pkg_resources") is not None:
        return
    from importlib.resources import files

    shim = types.ModuleType("pkg_resources")
    shim.__spec__ = importlib.machinery.ModuleSpec("pkg_resources", None)
    shim.resource_filename = lambda pkg, name: str(files(pkg) / name)
    sys.modules["pkg_resources"] = shim


def dlib_speed(paths: list[str]) -> float | None:
    """ms/img of face_recognition (dlib HOG detector + ResNet encoder) on one thread."""
    try:
        _pkg_resources_shim()
        import face_recognition
    except Exception as exc:  # pragma: no cover - optional peer
        print(f"dlib peer not installed ({exc}); pip install dlib-bin face-recognition-models "
              "&& pip install --no-deps face-recognition")
        return None
    t0 = time.perf_counter()
    for p in paths:
        img = face_recognition.load_image_file(p)
        locs = face_recognition.face_locations(img, model="hog")
        face_recognition.face_encodings(img, locs)
    return (time.perf_counter() - t0) / len(paths) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="SFace")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--model-dir", default=None, help="an exported or int8-quantised model directory instead")
    ap.add_argument("--backend", default="auto", choices=["auto", "openvino", "onnxruntime", "torch"])
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "int8"])
    ap.add_argument("--limit", type=int, default=None, help="about this many pairs, balanced over folds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--identification", action="store_true")
    ap.add_argument("--dlib-images", type=int, default=50, help="images timed for the dlib peer (0: skip)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    need(LFW_DIR, "LFW")
    ps = read_pairs(need(LFW_PAIRS, "LFW pairs"), root=LFW_DIR, format="lfw")
    pairs, folds = select_pairs(ps, args.limit)
    paths = list(dict.fromkeys(x for p in pairs for x in (p.left, p.right)))
    print(f"{len(pairs)} pairs ({sum(p.label for p in pairs)} matched), {len(paths)} images, model {args.model}")

    emb = Embedder(args.model, args.weights, args.threads, args.backend, args.precision, args.model_dir)
    rt = emb.model.runtime_info()
    print(f"runtime: {rt['backend']}/{rt['precision']} on {rt['device']}, CPU features "
          f"{', '.join(rt['cpu_features'])}; load {os.getloadavg()[0]:.1f}")
    feats = emb.run(paths)
    e2e = emb.t_e2e / emb.n_e2e * 1e3
    e2e_flip = (emb.t_e2e + emb.t_flip) / emb.n_e2e * 1e3
    index = {p: i for i, p in enumerate(paths)}
    rows = verification(feats, index, pairs, folds)
    result = {"model": args.model, "pairs": len(pairs), "images": len(paths), "no_face": len(emb.no_face),
              "backend": rt["backend"], "precision": rt["precision"], "cpu_features": rt["cpu_features"],
              "e2e_ms_per_img": e2e, "e2e_flip_ms_per_img": e2e_flip, "verification": rows}

    table = [["mode", "flip", "accuracy", "std", "threshold", "AUC", "EER", "TAR@1e-2", "TAR@1e-3"]]
    fmt = lambda v, p=4: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
    for r in rows:
        table.append([r["mode"], str(r["flip"]), fmt(r["accuracy"] * 100, 2) + "%", fmt(r["std"] * 100, 2),
                      fmt(r["threshold"]), fmt(r["auc"]), fmt(r["eer"]), fmt(r["tar@far=1e-2"]), fmt(r["tar@far=1e-3"])])
    print()
    print_table(table)
    print(f"\nno face detected (centre-crop fallback): {len(emb.no_face)} of {len(paths)} images")
    print(f"end-to-end (read + detect + align + embed, {args.threads} threads, {rt['backend']}/{rt['precision']}): "
          f"{e2e:.1f} ms/img without flip, {e2e_flip:.1f} ms/img with the flip test")

    if args.dlib_images:
        import cv2

        cv2.setNumThreads(1)
        os.environ["OMP_NUM_THREADS"] = "1"
        d = dlib_speed(paths[: args.dlib_images])
        if d:
            one = Embedder(args.model, args.weights, 1, args.backend, args.precision, args.model_dir)
            one.run(paths[: args.dlib_images])
            ours1 = one.t_e2e / one.n_e2e * 1e3
            result.update(dlib_ms_per_img=d, e2e_ms_per_img_1thread=ours1)
            print(f"dlib HOG + ResNet (face_recognition), 1 thread: {d:.1f} ms/img; facefeat 1 thread: "
                  f"{ours1:.1f} ms/img -> {d / ours1:.1f}x faster")

    if args.identification:
        align_noflip = next(r for r in rows if r["mode"] == "align" and not r["flip"])
        result["identification"] = identification(emb, align_noflip["threshold"])
        print(json.dumps(result["identification"], indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=float))


if __name__ == "__main__":
    main()
