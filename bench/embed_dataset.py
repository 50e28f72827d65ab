"""embed_dataset throughput: the local engine vs Ray Data on this machine, and memory per worker.

Question (issue 13): what does Ray cost on one machine? Target: **Ray >= 0.8x the local
engine's images/s** on the same cores (on a cluster Ray then scales with the workers added).

Both engines embed the same first ``--limit`` LFW images (YuNet + 5-point alignment + SFace)
into Parquet shards in a temp directory, end to end through ``facefeat.distributed.embed_dataset``
(listing, model load, decode, detect, align, embed, Parquet writes):

* ``local``: one process; ONNX Runtime and OpenCV use all ``--cpus`` threads.
* ``ray``: a local Ray instance with ``--cpus`` CPUs (started before timing: on a cluster it is
  already up) and ``--workers`` actors of ``--cpus / --workers`` CPUs each, one inference thread
  per CPU; decode is fused into the actors by Ray (same resources). Actor start-up and model
  loading are inside the timed run, as a user sees it.

Each engine runs ``--repeat`` times (fresh output dir); the best run counts. Rates are end to end,
so Ray's fixed cost (actors starting and loading the models: ~5-15 s here) weighs more on small
``--limit``s than it does on an archive of millions. Peak RSS: the local
process's high-water mark (``ru_maxrss`` of a child process that runs only the local engine) and,
for Ray, each actor process's high-water mark (``VmHWM`` of ``ray::MapWorker...`` processes,
read from /proc every 0.2 s) plus the driver's. The machine's load average is printed: on a host shared
with other jobs the numbers move a lot; the ratio of runs measured back to back is what counts.

    python bench/embed_dataset.py --limit 400
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import LFW_DIR, need, print_table  # noqa: E402


def lfw_list(n: int, dst: Path) -> Path:
    paths = []
    for person in sorted(os.listdir(LFW_DIR)):
        paths += [str(LFW_DIR / person / f) for f in sorted(os.listdir(LFW_DIR / person))]
        if len(paths) >= n:
            break
    dst.write_text("".join(f"{p}\n" for p in paths[:n]))
    return dst


def run_local_child(listing: str, out: str, batch_size: int, shard_size: int) -> None:
    """Child mode: one local run; prints its report and peak RSS as JSON."""
    from facefeat.distributed import embed_dataset

    r = embed_dataset(listing, out, batch_size=batch_size, shard_size=shard_size, progress=False)
    print(json.dumps({**r.to_dict(), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


class RssSampler(threading.Thread):
    """Peak RSS (``VmHWM`` from /proc) per Ray actor process (``ray::MapWorker...``), sampled while running."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peaks: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for d in Path("/proc").iterdir():
                if not d.name.isdigit():
                    continue
                try:
                    if not (d / "cmdline").read_bytes().startswith(b"ray::MapWorker"):
                        continue
                    for line in (d / "status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            mb = int(line.split()[1]) / 1024
                            self.peaks[int(d.name)] = max(self.peaks.get(int(d.name), 0.0), mb)
                except OSError:
                    continue
            self.stop.wait(0.2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=400, help="LFW images")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs for both engines")
    ap.add_argument("--workers", type=int, default=2, help="Ray actors")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--shard-size", type=int, default=25)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--object-store-mb", type=int, default=400)
    ap.add_argument("--child-local", nargs=2, metavar=("LIST", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_local:
        run_local_child(*args.child_local, args.batch_size, args.shard_size)
        return 0
    need(LFW_DIR, "LFW")
    tmp = Path(tempfile.mkdtemp(prefix="facefeat-bench-embed-"))
    listing = lfw_list(args.limit, tmp / "images.txt")
    env = {**os.environ, "FACEFEAT_NUM_THREADS": str(args.cpus), "OMP_NUM_THREADS": str(args.cpus),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    print(f"{args.limit} LFW images, {args.cpus} CPUs, load average before: {os.getloadavg()[0]:.1f}")

    local = []
    for i in range(args.repeat):
        res = subprocess.run([sys.executable, __file__, "--child-local", str(listing), str(tmp / f"local{i}"),
                              "--batch-size", str(args.batch_size), "--shard-size", str(args.shard_size)],
                             env=env, capture_output=True, text=True, check=True)
        local.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(f"local run {i}: {local[-1]['images_per_s']:.1f} images/s")

    import ray

    from facefeat.distributed import embed_dataset

    per = max(1, args.cpus // args.workers)
    os.environ.update({"PYTHONPATH": env["PYTHONPATH"]})
    t0 = time.perf_counter()
    ray.init(num_cpus=args.cpus, object_store_memory=args.object_store_mb * 2**20, include_dashboard=False,
             log_to_driver=False, runtime_env={"env_vars": {"FACEFEAT_NUM_THREADS": str(per), "OMP_NUM_THREADS": str(per)}})
    ray_init_s = time.perf_counter() - t0
    rays, sampler = [], RssSampler()
    sampler.start()
    try:
        for i in range(args.repeat):
            r = embed_dataset(listing, tmp / f"ray{i}", engine="ray", workers=args.workers, num_cpus=per,
                              batch_size=args.batch_size, shard_size=args.shard_size, progress=False)
            rays.append(r.to_dict())
            print(f"ray run {i}: {rays[-1]['images_per_s']:.1f} images/s")
    finally:
        sampler.stop.set()
        sampler.join()
        ray.shutdown()
    driver_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    best_l = max(local, key=lambda d: d["images_per_s"])
    best_r = max(rays, key=lambda d: d["images_per_s"])
    ratio = best_r["images_per_s"] / best_l["images_per_s"]
    actors = sorted(sampler.peaks.values())
    rows = [["engine", "images/s", "faces/s", "seconds", "peak RSS per worker MB"],
            ["local (1 process)", f"{best_l['images_per_s']:.1f}", f"{best_l['faces_per_s']:.1f}",
             f"{best_l['seconds']:.1f}", f"{best_l['peak_rss_mb']:.0f}"],
            [f"ray ({args.workers} actors x {per} CPU)", f"{best_r['images_per_s']:.1f}", f"{best_r['faces_per_s']:.1f}",
             f"{best_r['seconds']:.1f}", f"{max(actors):.0f} (driver {driver_rss:.0f})" if actors else "n/a"]]
    print()
    print_table(rows)
    print(f"\nray init (not timed): {ray_init_s:.1f} s; actor processes seen: {len(actors)}; "
          f"load average after: {os.getloadavg()[0]:.1f}")
    print(f"Ray / local images/s: {ratio:.2f}x (target >= 0.8x): {'PASS' if ratio >= 0.8 else 'MISS'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
