"""Unknown faces on LFW (issue 18, item 2): a gallery of ``--people`` people with one photo each, every
other LFW photo fed through recognition with ``keep_unknown`` on; then the review grid's groups.

Reported: faces seen, recognised, kept unknown; the unknown groups (``facefeat.index.sightings.
unknown_groups``: the existing clustering at its default threshold), their purity
(pairwise precision: of the pairs of faces put in one group, the fraction showing one person),
the faces they cover, and the clicks naming them takes (one per group). A face's person is the
folder's when its box holds the image centre (LFW is cropped around its subject), else a
background face of its own.

    python bench/gallery_unknown.py                        # 1,000 people, all of LFW (long: the lead runs it)
    python bench/gallery_unknown.py --people 30 --limit 300    # quick
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import LFW_DIR, need  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="SFace")
    ap.add_argument("--people", type=int, default=1000, help="gallery people, one photo each (default 1000)")
    ap.add_argument("--limit", type=int, default=0, help="stream photos (default: every other LFW photo)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)

    from facefeat.index import create_index
    from facefeat.index import sightings as S
    from facefeat.index.people import People
    from facefeat.index.persist import open_index
    from facefeat.pipeline import create_pipeline

    root = need(LFW_DIR, "LFW")
    rng = np.random.default_rng(a.seed)
    folders = {d.name: sorted(str(p) for p in d.glob("*.jpg")) for d in sorted(root.iterdir()) if d.is_dir()}
    names = sorted(folders)
    rng.shuffle(names)
    gallery = sorted(names[: a.people])
    stream = [p for n in sorted(folders) for p in folders[n][1 if n in set(gallery) else 0:]]
    rng.shuffle(stream)
    stream = stream[: a.limit] if a.limit else stream
    pipe = create_pipeline("face_recognition", model=a.model)
    with tempfile.TemporaryDirectory() as tmp:
        people = People(create_index(dim=pipe.predictor.embedding_size, model_name=pipe.predictor.model_name,
                                     index_type="Flat"))
        t0 = time.perf_counter()
        rep = pipe.enroll([(folders[n][0], n) for n in gallery], people, quality="off")
        people.save(tmp)
        index = open_index(tmp)
        S.configure(index, record=False, keep_unknown=True, retention_days=30)
        seen = named = 0
        for res in pipe.predict(stream, index=index):
            for b in res["boxes"]:
                if not b.get("too_small"):
                    seen += 1
                    named += b["labels"] is not None
        stream_s = time.perf_counter() - t0
        unknown = S.search(index, unknown=True, limit=10 ** 9)
        t1 = time.perf_counter()
        from facefeat.pipeline.unknown import unknown_groups

        groups = unknown_groups(index)
        group_s = time.perf_counter() - t1
    truth = {}
    for r in unknown:
        folder = Path(r["source"]).parent.name
        x0, y0, x1, y1 = (r["box"] or [0, 0, 0, 0])[:4]
        truth[r["id"]] = folder if x0 <= 125 <= x1 and y0 <= 125 <= y1 else f"background:{r['id']}"
    same = pairs = 0
    for g in groups:
        ids = [truth[i] for i in g["ids"]]
        _, counts = np.unique(ids, return_counts=True)
        same += int(sum(c * (c - 1) // 2 for c in counts))
        pairs += len(ids) * (len(ids) - 1) // 2
    out = {"model": a.model, "gallery_people": len(gallery), "enrolled": len(rep["added"]),
           "stream_photos": len(stream), "faces_seen": seen, "recognised": named, "kept_unknown": len(unknown),
           "groups": len(groups), "faces_in_groups": sum(g["size"] for g in groups),
           "largest_group": max((g["size"] for g in groups), default=0),
           "pairwise_precision": round(same / pairs, 4) if pairs else None, "clicks_to_name": len(groups),
           "stream_s": round(stream_s, 1), "group_s": round(group_s, 2), "loadavg": os.getloadavg()}
    print(json.dumps(out, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
