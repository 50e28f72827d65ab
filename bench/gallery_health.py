"""Gallery health on LFW: inject wrong-person samples, count what the health check flags and how many
stranger matches its fixes remove at the calibrated threshold (issue 18, item 4).

A gallery of LFW people with ``--per`` photos each is enrolled through the one enrolment path
(detect, align, embed, quality figures; policy ``off`` so that every photo is kept and judged by the
health check instead). ``--inject`` (default 20) gallery people then get one photo of a *stranger*
(someone not in the gallery) under their name - the faceid #8 failure: one bad reference photo lets
a stranger match. The stranger's other photos are the probes. Reported:

* flagged: how many injected samples the health check lists as ``remove_sample`` fixes (recall),
  and how many genuine samples it lists too (false flags);
* stranger matches: probes of the strangers recognised as the gallery person they were injected
  into, at the gallery's calibrated 1:N threshold, before and after applying the remove fixes;
* the other findings (close pairs, quality, duplicates) and the time the check took.

Features, figures and crops are cached per image in ``$FACEFEAT_BENCH_CACHE`` (default
/tmp/facefeat_bench), so re-runs only run the check.

    python bench/gallery_health.py                          # all LFW people with >= 5 photos (4 + spare)
    python bench/gallery_health.py --people 30 --inject 5   # quick
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

CACHE = Path(os.environ.get("FACEFEAT_BENCH_CACHE", "/tmp/facefeat_bench"))


def embed_cached(pipe, paths: list[str], model: str) -> dict[str, dict]:
    """``path -> {"feature", "figures", "crop", "hash"}`` for every image with one usable face."""

    CACHE.mkdir(parents=True, exist_ok=True)
    cache = CACHE / f"gallery_health_{model}.npz"
    have: dict[str, dict] = {}
    if cache.is_file():
        z = np.load(cache, allow_pickle=True)
        have = z["items"].item()
    todo = [p for p in paths if p not in have]
    for s in range(0, len(todo), 64):
        part = todo[s:s + 64]
        g = pipe.gallery_features(part, ["x"] * len(part), quality="off")
        for k, pos in enumerate(g.positions):
            r = g.records[k]
            have[part[pos]] = {"feature": np.asarray(g.features[k], np.float32), "figures": r.figures,
                               "crop": r.crop, "hash": r.content_hash, "det": r.det}
        for rej in g.rejected:
            have[part[rej.index]] = None
        np.savez(cache, items=np.array(have, dtype=object))
        print(f"  embedded {min(s + 64, len(todo))}/{len(todo)}", file=sys.stderr)
    return have


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="SFace")
    ap.add_argument("--per", type=int, default=4, help="gallery photos per person (default 4)")
    ap.add_argument("--people", type=int, default=0, help="gallery people (default: every person with > per photos)")
    ap.add_argument("--inject", type=int, default=20, help="wrong-person samples injected (default 20)")
    ap.add_argument("--probes", type=int, default=5, help="probe photos per stranger at most (default 5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the result here")
    a = ap.parse_args(argv)

    from facefeat.index import create_index
    from facefeat.index.health import gallery_health
    from facefeat.index.store import SampleRecord
    from facefeat.index.store_factory import open_store
    from facefeat.pipeline import create_pipeline
    from facefeat.thresholds import is_match

    root = need(LFW_DIR, "LFW")
    rng = np.random.default_rng(a.seed)
    folders = {d.name: sorted(str(p) for p in d.glob("*.jpg")) for d in sorted(root.iterdir()) if d.is_dir()}
    many = [n for n, ps in folders.items() if len(ps) > a.per]
    rng.shuffle(many)
    gallery_people = sorted(many[: a.people] if a.people else many)
    strangers = [n for n, ps in folders.items() if n not in set(gallery_people) and len(ps) >= 2]
    rng.shuffle(strangers)
    strangers = strangers[: 2 * a.inject]  # spares: a stranger needs a usable photo and a probe
    paths = [p for n in gallery_people for p in folders[n][: a.per]]
    paths += [p for n in strangers for p in folders[n][: 1 + a.probes]]
    pipe = create_pipeline("face_recognition", model=a.model)
    t0 = time.perf_counter()
    items = embed_cached(pipe, paths, a.model)
    embed_s = time.perf_counter() - t0
    strangers = [n for n in strangers if sum(items.get(p) is not None for p in folders[n][: 1 + a.probes]) >= 2
                 and items.get(folders[n][0]) is not None][: a.inject]
    victims = list(rng.choice(gallery_people, size=len(strangers), replace=False))

    feats, labels, recs, injected = [], [], [], set()
    for n in gallery_people:
        for p in folders[n][: a.per]:
            it = items.get(p)
            if it is not None:
                feats.append(it["feature"]), labels.append(n)
                recs.append(SampleRecord(figures=it["figures"], det=it["det"], content_hash=it["hash"]))
    probes = []
    for stranger, victim in zip(strangers, victims):
        first, *rest = [p for p in folders[stranger][: 1 + a.probes] if items.get(p) is not None]
        injected.add(len(feats))
        it = items[first]
        feats.append(it["feature"]), labels.append(victim)
        recs.append(SampleRecord(figures=it["figures"], det=it["det"], content_hash=it["hash"]))
        probes += [(items[p]["feature"], victim) for p in rest]
    x = np.stack(feats)
    with tempfile.TemporaryDirectory() as tmp:
        index = create_index(dim=x.shape[1], model_name=pipe.predictor.model_name, index_type="Flat")
        ids = index.add_samples(x, labels, None, recs).ids
        index.save(tmp)
        t1 = time.perf_counter()
        with open_store(tmp) as store:
            rep = gallery_health(store, max_fixes=10 ** 9)
        check_s = time.perf_counter() - t1
    inj_ids = {ids[p] for p in injected}
    removed = {f["id"] for f in rep["fixes"] if f["action"] == "remove_sample"}
    t = rep["threshold"]

    def stranger_matches(keep: np.ndarray) -> int:
        """Probes whose best gallery sample matches and carries the victim's name."""
        g, lab = x[keep], [labels[i] for i in np.nonzero(keep)[0]]
        n = 0
        for f, victim in probes:
            s = g @ f
            j = int(s.argmax())
            n += bool(is_match(float(s[j]), t)) and lab[j] == victim
        return n

    all_rows = np.ones(len(x), bool)
    after = np.asarray([ids[p] not in removed for p in range(len(x))])
    res = {
        "model": a.model, "people": rep["people"], "samples": rep["samples"], "per": a.per,
        "injected": len(inj_ids), "flagged_injected": len(inj_ids & removed),
        "flagged_genuine": len(removed - inj_ids), "probes": len(probes),
        "stranger_matches_before": stranger_matches(all_rows), "stranger_matches_after": stranger_matches(after),
        "threshold": t, "operating_point": rep["operating_point"].get("operating_point"),
        "counts": rep["counts"], "embed_s": round(embed_s, 1), "check_s": round(check_s, 2),
        "loadavg": os.getloadavg(),
    }
    print(json.dumps(res, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
