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


def load_pairs(limit: int | None):
    """LFW's pairs.txt read, the pairs chosen (:func:`select_pairs`) and the images they use, in
    order: ``(all_pairs, pairs, folds, paths)``."""
    need(LFW_DIR, "LFW")
    ps = read_pairs(need(LFW_PAIRS, "LFW pairs"), root=LFW_DIR, format="lfw")
    pairs, folds = select_pairs(ps, limit)
    return ps, pairs, folds, list(dict.fromkeys(x for p in pairs for x in (p.left, p.right)))


def pair_rows(pairs, paths: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each pair's two rows in ``paths`` (the order of a feature matrix) and its label."""
    pos = {p: i for i, p in enumerate(paths)}
    return (np.array([pos[p.left] for p in pairs]), np.array([pos[p.right] for p in pairs]),
            np.array([p.label for p in pairs]))


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

    def __init__(self, model_name: str, weights: str | None, threads: int, retry: bool = False,
                 backend: str = "auto", precision: str = "auto", model_dir: str | None = None,
                 landmarks: str = "mirror"):
        self.model = create_model(None if model_dir else model_name, weights, model_dir=model_dir, batch_size=64,
                                  num_threads=threads, backend=backend, precision=precision)
        self.detector = YuNetDetector(score_threshold=0.5)
        from facefeat.vision.refine import LandmarkRefiner

        self.landmarks = landmarks  # the pipeline's landmark placement (facefeat.vision.refine)
        self.refiner = LandmarkRefiner(self.detector, landmarks)
        if retry:  # the retrying detector of verification / enrolment (facefeat.vision.retry)
            from facefeat.vision.retry import RetryDetector

            self.detector = RetryDetector(self.detector, 0.5)
        self.no_face: list[str] = []
        self.t_e2e = 0.0
        self.t_flip = 0.0  # the flip test's extra cost on the align path
        self.n_e2e = 0

    def crop(self, img: np.ndarray, det, mode: str) -> np.ndarray:
        """The face as the pipeline gives it to the model: its own face crop where it has one
        (FaceNet, SFace+FaceNet; facefeat.vision.crops), else ``mode``."""
        fc = self.model.meta.extra.get("face_crop")
        if fc and mode == "align":
            from facefeat.vision.crops import model_crop

            return model_crop(img, det, fc)
        return align(img, det, mode=mode)

    def faces(self, img: np.ndarray) -> list:
        """The faces as the pipeline finds them: detected (with retries under ``--retry``), landmarks
        placed by ``--landmarks`` (as FaceRecognitionPipeline.detect / detect_retry do)."""
        if not hasattr(self.detector, "detect_with_path"):
            return self.refiner.refine(img, self.detector.detect(img))
        dets, path = self.detector.detect_with_path(img)
        if path["path"] != "default":
            return dets
        return self.refiner.refine(img, dets, keep=dets[:1] if {"orientation", "deroll"} & path.keys() else ())

    def run(self, paths: list[str], only_align: bool = False) -> dict[tuple[str, bool], np.ndarray]:
        """Features per (mode, flip); ``only_align``: just ("align", False), the pipeline's default."""
        modes = ("align",) if only_align else MODES
        out = {(m, f): [] for m in modes for f in ((False,) if only_align else (False, True))}
        done = 0
        for chunk in iter_batches(paths, 64):
            t0 = time.perf_counter()
            faces = {m: [] for m in MODES}
            for p in chunk:
                img = read_image(p)
                det = central_face(self.faces(img), img.shape[1], img.shape[0])
                if det is None:
                    self.no_face.append(p)
                for m in modes:
                    faces[m].append(center_crop(img) if det is None else self.crop(img, det, m))
            raw = self.model.raw_features(faces["align"])
            self.t_e2e += time.perf_counter() - t0  # read + detect + align + embed (align mode, no flip)
            self.n_e2e += len(chunk)
            if only_align:
                out[("align", False)].append(raw)
                done += len(chunk)
                print(f"  {done}/{len(paths)} images, {self.t_e2e / self.n_e2e * 1e3:.1f} ms/img e2e",
                      end="\r", flush=True)
                continue
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


def lfw_people() -> dict[str, list[str]]:
    people = sorted(p for p in os.listdir(LFW_DIR) if (LFW_DIR / p).is_dir())
    return {p: sorted(str(LFW_DIR / p / f) for f in os.listdir(LFW_DIR / p)) for p in people}


def all_features(emb: Embedder, cache: str | None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(paths, person id per image, align/no-flip features) of every LFW image; cached in ``cache``."""
    files = lfw_people()
    paths = [f for p in files for f in files[p]]
    person = np.array([i for i, p in enumerate(files) for _ in files[p]])
    if cache and Path(cache).is_file():
        z = np.load(cache)
        if len(z["feats"]) == len(paths):
            return paths, person, z["feats"]
    feats = emb.run(paths, only_align=True)[("align", False)]
    if cache:
        np.savez(cache, feats=feats)
    return paths, person, feats


def calibrate(emb: Embedder, pairs, pair_index: dict, model: str, cache: str | None,
              impostor_pairs: int = 2_000_000, seed: int = 0) -> dict:
    """The zoo thresholds record: 1:1 thresholds at FAR 1e-2/1e-3/1e-4 from every genuine LFW pair
    and ``impostor_pairs`` random cross-identity pairs of all 13,233 images; the best-accuracy
    threshold (and the accuracy at every point) on the 6,000 standard pairs; 1:N thresholds at FPIR
    1% / 10% as in ``identification`` (full gallery and a random 100-person gallery)."""
    from facefeat.engine.calibration import identification_points, verification_points

    paths, person, f = all_features(emb, cache)
    rng = np.random.default_rng(seed)
    # genuine: every same-person pair
    gen = []
    for pid in np.unique(person):
        idx = np.flatnonzero(person == pid)
        if len(idx) > 1:
            s = f[idx] @ f[idx].T
            gen.append(s[np.triu_indices(len(idx), 1)])
    gen = np.concatenate(gen)
    a = rng.integers(0, len(paths), impostor_pairs * 2)
    b = rng.integers(0, len(paths), impostor_pairs * 2)
    keep = person[a] != person[b]
    a, b = a[keep][:impostor_pairs], b[keep][:impostor_pairs]
    imp = np.einsum("ij,ij->i", f[a], f[b])
    li, ri, ps_labels = pair_rows(pairs, paths)
    ps_scores = np.einsum("ij,ij->i", f[li], f[ri])
    ver = verification_points(gen, imp, pair_scores=ps_scores, pair_labels=ps_labels)
    # 1:N open set
    files = lfw_people()
    names = list(files)
    multi = [i for i, p in enumerate(names) if len(files[p]) >= 2]
    single = [i for i, p in enumerate(names) if len(files[p]) == 1]
    first = {pid: int(np.flatnonzero(person == pid)[0]) for pid in range(len(names))}
    imp_idx = np.array([first[i] for i in single])
    ident = []
    for size in (len(multi), 100):
        gal = multi if size == len(multi) else sorted(rng.choice(multi, size, replace=False).tolist())
        g_idx = np.array([first[i] for i in gal])
        g_set = set(gal)
        probes = np.array([j for j in range(len(paths)) if person[j] in g_set and j != first[person[j]]])
        s = f[probes] @ f[g_idx].T
        correct = np.array(gal)[s.argmax(1)] == person[probes]
        top = s.max(1)
        imp_top = (f[imp_idx] @ f[g_idx].T).max(1)
        e = identification_points(imp_top, size, genuine_top=top, genuine_correct=correct)
        e["rank1"] = float(correct.mean())
        for name, t in (("fixed 0.4", 0.4), ("1:1 far=1e-3", ver["far=1e-3"]["threshold"])):
            e[f"at {name}"] = {"threshold": t, "dir": float(np.mean(correct & (top > t))),
                               "fpir": float(np.mean(imp_top > t))}
        ident.append(e)
    record = {
        "metric": "cosine",
        "verification": ver,
        "identification": [{k: v for k, v in e.items() if not k.startswith("at ") and k != "rank1"} for e in ident],
        "data": {"name": "LFW", "images": len(paths), "no_face_centre_crop": len(emb.no_face),
                 "genuine_pairs": int(gen.size), "impostor_pairs": int(imp.size),
                 "accuracy_pairs": "LFW pairs.txt (6,000)",
                 "identification": "gallery: first image of each person with >= 2 images (or a random 100 of "
                 "them); genuine probes: their other images; strangers: the 4,069 single-image people"},
        "source": f"bench/lfw.py --calibrate (YuNet score 0.5, landmarks {emb.landmarks}, "
                  f"{'the model face crop' if emb.model.meta.extra.get('face_crop') else '5-point align'}, "
                  f"no flip, {model})",
    }
    return {"thresholds": record, "identification_detail": ident,
            "verification_accuracy": {k: (v or {}).get("accuracy") for k, v in ver.items()}}


def quality_study(paths: list[str], pairs, feats: np.ndarray, thresholds: dict, folds: np.ndarray) -> dict:
    """Rejection rate of each quality policy over the pair images, and verification on the pairs
    whose two images both pass (10-fold accuracy, and accuracy at the calibrated FAR 1e-3 point)."""
    from facefeat.engine.verification import accuracy_at
    from facefeat.vision.quality import POLICIES, face_quality

    det = YuNetDetector(score_threshold=0.5)
    figs: dict[str, dict | None] = {}
    for n, p in enumerate(paths, 1):
        img = read_image(p)
        d = central_face(det.detect(img), img.shape[1], img.shape[0])
        figs[p] = None if d is None or d.too_small else face_quality(align(img, d), d)
        if n % 500 == 0:
            print(f"  quality {n}/{len(paths)}", end="\r", flush=True)
    print()
    li, ri, labels = pair_rows(pairs, paths)
    scores = np.einsum("ij,ij->i", feats[li], feats[ri])
    t3 = thresholds["verification"]["far=1e-3"]["threshold"]
    out = {}
    for name, pol in POLICIES.items():
        ok = {p: f is not None and not pol.reasons(f) for p, f in figs.items()}
        keep = np.array([ok[p.left] and ok[p.right] for p in pairs])
        m = evaluate_pairs(scores[keep], labels[keep], fold_ids=folds[keep])
        reasons: dict[str, int] = {}
        for p, f in figs.items():
            for r in (["no face"] if f is None else pol.reasons(f)):
                key = r.split(" ")[0] + " " + r.split(" ")[1]
                reasons[key] = reasons.get(key, 0) + 1
        out[name] = {"images": len(figs), "rejected": int(sum(not v for v in ok.values())),
                     "rejection_rate": float(np.mean([not v for v in ok.values()])),
                     "pairs_kept": int(keep.sum()), "accuracy_10fold": m["accuracy"],
                     "accuracy_at_far=1e-3": accuracy_at(scores[keep], labels[keep], t3),
                     "reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1]))}
    return out


def rotation_study(paths: list[str], n: int) -> dict:
    """Rotated copies of ``n`` LFW images (90/180/270 and +-30 degrees): how often plain YuNet and the
    retrying detector find the face *with its landmarks in the right place* (all 5 within a quarter
    of the eye distance of the upright photo's, rotated the same way), and which path found it."""
    import cv2

    from facefeat.vision.retry import RetryDetector, _rot90_affine, _rotate90, _rotation

    detector = YuNetDetector(score_threshold=0.5)
    retry = RetryDetector(detector, 0.5)
    sample = paths[:: max(1, len(paths) // n)][:n]
    refs = []
    for p in sample:
        img = read_image(p)
        d = central_face(detector.detect(img), img.shape[1], img.shape[0])
        if d is not None:
            refs.append((img, d))

    def right(dets, want, eye):
        best = min((float(np.abs(d.landmarks - want).max()) for d in dets if not d.too_small), default=None)
        return best is not None and best < 0.25 * eye

    out: dict[str, dict] = {}
    for angle in (0, 90, 180, 270, 30, -30):
        plain = fixed = 0
        used: dict[str, int] = {}
        for img, d in refs:
            h, w = img.shape[:2]
            if angle % 90 == 0:
                m, rot = _rot90_affine(angle, w, h), _rotate90(img, angle)
            else:
                m, size = _rotation(angle, w, h)
                rot = cv2.warpAffine(img, m, size)
            want = d.landmarks @ m[:, :2].T + m[:, 2]
            eye = float(np.hypot(*(d.landmarks[1] - d.landmarks[0])))
            plain += right(detector.detect(rot), want, eye)
            dets, path = retry.detect_with_path(rot)
            fixed += right(dets, want, eye)
            key = path["path"] + (f" {path['angle']:g}" if "angle" in path else "") + \
                (f" (orientation {path['orientation']})" if "orientation" in path else "")
            used[key] = used.get(key, 0) + 1
        out[f"rotated {angle}"] = {"images": len(refs), "plain": plain / len(refs), "retry": fixed / len(refs),
                                   "paths": used}
        print(f"  rotation {angle}: correct plain {plain}/{len(refs)}, retry {fixed}/{len(refs)} {used}")
    return out


def retry_study(emb: Embedder, all_paths: list[str], feats: np.ndarray, pairs, folds: np.ndarray) -> dict:
    """LFW as it is through the retrying detector: how many pair images get other landmarks than
    plain YuNet gives, and 10-fold accuracy with those images re-embedded (vs plain)."""
    from facefeat.vision.retry import RetryDetector

    detector = YuNetDetector(score_threshold=0.5)
    retry = RetryDetector(detector, 0.5)
    paths = list(dict.fromkeys(x for p in pairs for x in (p.left, p.right)))
    pos = {p: i for i, p in enumerate(all_paths)}
    f = feats.copy()
    changed, paths_used = [], {}
    for n, p in enumerate(paths, 1):
        img = read_image(p)
        plain = central_face(detector.detect(img), img.shape[1], img.shape[0])
        dets, path = retry.detect_with_path(img)
        key = path["path"] + "".join(f" {k}" for k in ("orientation", "deroll") if k in path)
        paths_used[key] = paths_used.get(key, 0) + 1
        got = central_face(dets, img.shape[1], img.shape[0])
        if got is not None and (plain is None or np.abs(got.landmarks - plain.landmarks).max() > 1.0):
            changed.append(p)
            f[pos[p]] = emb.model.embed([align(img, got)])[0]
        if n % 300 == 0:
            print(f"  retry check {n}/{len(paths)}", end="\r", flush=True)
    print()
    li, ri, labels = pair_rows(pairs, all_paths)
    acc = {name: evaluate_pairs(np.einsum("ij,ij->i", x[li], x[ri]), labels, fold_ids=folds)["accuracy"]
           for name, x in (("plain", feats), ("retry", f))}
    return {"images": len(paths), "landmarks_changed": len(changed), "changed": changed[:20],
            "paths": paths_used, "accuracy_10fold": acc}


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
    ap.add_argument("--retry", action="store_true", help="detect with the retrying detector (verify/enrol path)")
    ap.add_argument("--landmarks", default="mirror", choices=["plain", "mirror", "zoom"],
                    help="landmark placement (facefeat.vision.refine; the pipeline's default: mirror)")
    ap.add_argument("--identification", action="store_true")
    ap.add_argument("--dlib-images", type=int, default=50, help="images timed for the dlib peer (0: skip)")
    ap.add_argument("--calibrate", action="store_true",
                    help="measure the model's thresholds record (all 13,233 images; see calibrate())")
    ap.add_argument("--cache", default=None, help="--calibrate: features cache (.npz) to reuse across runs")
    ap.add_argument("--quality", action="store_true", help="with --calibrate: quality-policy rejection rates")
    ap.add_argument("--rotations", type=int, default=0, help="with --calibrate: rotated-copy detection on N images")
    ap.add_argument("--retry-check", type=int, default=0,
                    help="with --calibrate: LFW as is through the retrying detector, on about N pairs")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    ps, pairs, folds, paths = load_pairs(args.limit)
    print(f"{len(pairs)} pairs ({sum(p.label for p in pairs)} matched), {len(paths)} images, model {args.model}")

    emb = Embedder(args.model, args.weights, args.threads, args.retry, args.backend, args.precision, args.model_dir,
                   args.landmarks)
    rt = emb.model.runtime_info()
    print(f"runtime: {rt['backend']}/{rt['precision']} on {rt['device']}, CPU features "
          f"{', '.join(rt['cpu_features'])}; load {os.getloadavg()[0]:.1f}")
    if args.calibrate:
        res = calibrate(emb, ps.pairs, {}, args.model, args.cache)
        if args.quality or args.rotations or args.retry_check:
            all_paths, _, f = all_features(emb, args.cache)
            pos = {p: i for i, p in enumerate(all_paths)}
            pf = f[[pos[p] for p in paths]]
            if args.quality:
                res["quality"] = quality_study(paths, ps.pairs, pf, res["thresholds"], np.asarray(ps.fold_ids))
            if args.rotations:
                res["rotations"] = rotation_study(paths, args.rotations)
            if args.retry_check:
                sub, sub_folds = select_pairs(ps, args.retry_check)
                res["retry_check"] = retry_study(emb, all_paths, f, sub, sub_folds)
                print(json.dumps(res["retry_check"], indent=1))
        print(json.dumps(res, indent=2, default=float))
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2, default=float))
        return
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
            one = Embedder(args.model, args.weights, 1, backend=args.backend, precision=args.precision,
                           model_dir=args.model_dir, landmarks=args.landmarks)
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
