"""Start-up cost of the command line: ``python -m facefeat --help`` (and any other argv), in fresh
processes, optionally against a second source tree for a before/after comparison.

For each tree: wall-clock seconds of the whole process (min, median), the import time Python
reports (``-X importtime``, the sum of every module's own time: min, median), how many modules it
imports (facefeat's own among them), and the HEAVY packages (tests/test_layering.py) it loads,
which must be none for ``--help``. Runs alternate between the trees, so load drifts hit both.

    python bench/cli_startup.py --runs 20
    python bench/cli_startup.py --runs 20 --baseline /tmp/before   # a tree holding facefeat/ (git archive)
    python bench/cli_startup.py --runs 10 -- models                # another command line
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO, print_table  # noqa: E402

sys.path.insert(0, str(REPO / "tests"))
from test_layering import HEAVY  # noqa: E402


def one_run(tree: Path, argv: list[str]) -> tuple[float, float, list[str]]:
    """(wall seconds, import seconds, imported module names) of one fresh ``python -m facefeat``."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    t0 = time.perf_counter()
    # run from an empty directory: `python -m` puts the working directory first on sys.path
    with tempfile.TemporaryDirectory() as cwd:
        r = subprocess.run([sys.executable, "-X", "importtime", "-m", "facefeat", *argv], cwd=cwd, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    rows = [line[len("import time:"):].split("|") for line in r.stderr.splitlines()
            if line.startswith("import time:") and "self [us]" not in line]
    return wall, sum(int(self_us) for self_us, _, _ in rows) / 1e6, [name.strip() for _, _, name in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--baseline", type=Path, default=None, help="a second source tree (holding facefeat/)")
    ap.add_argument("argv", nargs="*", default=["--help"], help="facefeat's arguments (default: --help)")
    a = ap.parse_args()
    trees = {"this tree": REPO} | ({"baseline": a.baseline.resolve()} if a.baseline else {})
    for name, tree in trees.items():
        if not (tree / "facefeat" / "__init__.py").is_file():
            raise SystemExit(f"--baseline {tree}: no facefeat/__init__.py there")
    walls: dict[str, list[float]] = {n: [] for n in trees}
    imports: dict[str, list[float]] = {n: [] for n in trees}
    modules: dict[str, list[str]] = {}
    for _ in range(max(1, a.runs)):
        for name, tree in trees.items():
            w, i, mods = one_run(tree, a.argv)
            walls[name].append(w)
            imports[name].append(i)
            modules[name] = mods
    print(f"python -m facefeat {' '.join(a.argv)}: {a.runs} runs each, load average {os.getloadavg()[0]:.2f}")
    rows = [["tree", "wall min s", "wall median s", "import min s", "import median s", "modules", "facefeat",
             "heavy"]]
    for name in trees:
        mods = modules[name]
        heavy = sorted({m.split(".")[0] for m in mods} & HEAVY)
        rows.append([name, f"{min(walls[name]):.3f}", f"{statistics.median(walls[name]):.3f}",
                     f"{min(imports[name]):.3f}", f"{statistics.median(imports[name]):.3f}", str(len(mods)),
                     str(sum(m.split(".")[0] == "facefeat" for m in mods)), ",".join(heavy) or "-"])
    print_table(rows)


if __name__ == "__main__":
    main()
