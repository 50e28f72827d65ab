"""Video recognition speed: frames per second at 640x480 with 1-3 faces per frame.

Builds short videos from LFW photos (each face a 200x200 tile drifting across the frame), with a
gallery of the people shown, and times ``pipe.predict_video`` with detection on every frame and on
every 5th frame (tracking in between). The peer, in the same run, is the per-image path a user
without video support would write: ``pipe.predict(frame)`` (detect + align + embed + search every
face of every frame). Files are decoded as fast as possible (no real-time pacing, no drops).

    python bench/video.py                 # 90 frames per video
    python bench/video.py --frames 30     # quick
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import LFW_DIR, need, print_table  # noqa: E402

from facefeat.pipeline import create_pipeline  # noqa: E402

PEOPLE = ["George_W_Bush", "Colin_Powell", "Tony_Blair"]
SIZE = (640, 480)
TILE = 200


def make_video(path: Path, n_faces: int, frames: int) -> Path:
    tiles = [cv2.resize(cv2.imread(str(LFW_DIR / p / f"{p}_0002.jpg")), (TILE, TILE)) for p in PEOPLE[:n_faces]]
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, SIZE)
    for f in range(frames):
        frame = np.full((SIZE[1], SIZE[0], 3), 90, np.uint8)
        for k, tile in enumerate(tiles):
            x = 5 + k * 212 + int(3 * np.sin(f / 8 + k))
            y = 60 + int(100 * (0.5 + 0.5 * np.sin(f / 15 + 2 * k)))
            frame[y:y + TILE, x:x + TILE] = tile
        w.write(frame)
    w.release()
    return path


def per_frame_peer(pipe, index, path: Path) -> tuple[int, float]:
    cap = cv2.VideoCapture(str(path))
    n, t0 = 0, time.perf_counter()
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        next(pipe.predict(frame, index=index))
        n += 1
    cap.release()
    return n, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--model", default="SFace")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    need(LFW_DIR, "LFW")
    pipe = create_pipeline("face_recognition", model=args.model, num_threads=args.threads)
    index = pipe.build_index([str(LFW_DIR / p / f"{p}_0001.jpg") for p in PEOPLE], PEOPLE, index_type="Flat")
    rows = [["faces", "method", "frames", "fps", "x peer", "labels"]]
    with tempfile.TemporaryDirectory() as tmp:
        for n_faces in (1, 2, 3):
            path = make_video(Path(tmp) / f"v{n_faces}.avi", n_faces, args.frames)
            n, secs = per_frame_peer(pipe, index, path)
            peer_fps = n / secs
            rows.append([str(n_faces), "peer: predict() per frame", str(n), f"{peer_fps:.1f}", "1.00", "-"])
            for every_n in (1, 5):
                events = list(pipe.predict_video(str(path), index=index, every_n=every_n))
                s = events[-1]
                labels = sorted({e["label"] or "?" for e in events if e["event"] == "track"})
                rows.append([str(n_faces), f"predict_video every_n={every_n}", str(s["frames_processed"]),
                             f"{s['fps']:.1f}", f"{s['fps'] / peer_fps:.2f}", ",".join(labels)])
                print(f"  {n_faces} face(s), every_n={every_n}: {s['fps']:.1f} fps ({s['tracks']} tracks)", flush=True)
    print(f"\n{SIZE[0]}x{SIZE[1]}, {args.model}, decode + detect + track + embed + search (no annotated output)")
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
