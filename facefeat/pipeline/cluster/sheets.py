"""Contact sheets: a grid of a cluster's aligned faces, one PNG per cluster."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facefeat.errors import InputError
from facefeat.io import read_image
from facefeat.utils import atomic_path
from facefeat.vision.align import align_face

THUMB = 96
SHEET_COLS = 8
SHEET_MAX_FACES = 64


def write_contact_sheet(res: Any, cid: int, target: Path) -> Path:
    """A grid of the cluster's aligned faces (best detection scores first, at most
    :data:`SHEET_MAX_FACES`), re-read from their images; unreadable ones are gray tiles."""
    idx = sorted(res.members(cid), key=lambda i: -res.faces[i]["det_score"])[:SHEET_MAX_FACES]
    tiles: dict[int, np.ndarray] = {}
    by_src: dict[Any, list[int]] = {}
    for i in idx:
        by_src.setdefault(("mem", i) if i in res.sources else res.faces[i]["path"], []).append(i)
    for key, face_ids in by_src.items():
        try:
            img = read_image(res.sources[key[1]]) if isinstance(key, tuple) else read_image(key)
        except InputError:
            continue
        for i in face_ids:
            tiles[i] = cv2.resize(align_face(img, res.faces[i]["landmarks"]), (THUMB, THUMB))
    cols = min(SHEET_COLS, len(idx))
    rows = math.ceil(len(idx) / cols)
    head = 24
    sheet = np.full((head + rows * THUMB, cols * THUMB, 3), 40, np.uint8)
    for k, i in enumerate(idx):
        r, c = divmod(k, cols)
        sheet[head + r * THUMB: head + (r + 1) * THUMB, c * THUMB:(c + 1) * THUMB] = tiles.get(i, 128)
    text = f"{cid}: {res.name(cid)} ({len(res.members(cid))} faces)"
    text = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)
    cv2.putText(sheet, text, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", sheet)
    if not ok:
        raise OSError(f"{target}: cannot encode the contact sheet as PNG")
    with atomic_path(target, ".png") as tmp:
        tmp.write_bytes(buf.tobytes())
    return target
