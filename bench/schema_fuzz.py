"""Schema-driven fuzzing of the service with schemathesis against its own ``/openapi.json``.

Starts the service (one process, small limits, API keys set, image URLs on with the default
address policy) on a free 127.0.0.1 port, builds one index, then runs ``schemathesis run`` with
every check and the admin key, and prints the number of requests, 5xx answers and check failures
(schema violations). Goal: zero 5xx and zero schema violations.

    pip install schemathesis
    python bench/schema_fuzz.py                  # ~50 examples per operation
    python bench/schema_fuzz.py --max-examples 200

Loopback only; bounded by ``--max-examples`` and ``--timeout``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from serving_fixtures import ProcessServer  # noqa: E402

KEY = "fuzz-admin-key-0123456789"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-examples", type=int, default=50)
    ap.add_argument("--workers", type=int, default=1, help="schemathesis workers (hypothesis is not thread-safe on 3.11)")
    ap.add_argument("--timeout", type=float, default=1200, help="seconds for the whole fuzz run")
    args = ap.parse_args(argv)
    st = shutil.which("schemathesis") or shutil.which("st")
    if st is None:
        print("bench/schema_fuzz.py: needs schemathesis (pip install schemathesis)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="facefeat-fuzz-") as tmp:
        log = Path(tmp) / "server.log"
        srv = ProcessServer(Path(tmp) / "storage", "--infer-concurrency", "1", "--threads", "1",
                            "--max-body-bytes", "2000000", "--max-build-images", "4", "--allow-url-images",
                            "--api-key", KEY, "--url-timeout-s", "2", log_path=log).start()
        report = Path(tmp) / "report.ndjson"
        # what the schema cannot express: a base64 string that is not an image or shows no face (400),
        # an index key that does not exist (404), an image over the pixel limit (413)
        (Path(tmp) / "schemathesis.toml").write_text(
            '[checks.positive_data_acceptance]\nexpected-statuses = ["2xx", "400", "404", "413"]\n')
        try:
            cmd = [st, "run", srv.url + "/openapi.json", "--checks", "all", "-n", str(args.max_examples),
                   "-w", str(args.workers), "-H", f"X-API-Key: {KEY}", "--request-timeout", "60",
                   "--continue-on-failure", "--report", "ndjson", "--report-ndjson-path", str(report),
                   "--generation-deterministic"]
            proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=args.timeout)
        finally:
            srv.stop()
        out = proc.stdout + proc.stderr
        print(out[-6000:])
        statuses: dict[int, int] = {}
        if report.is_file():
            for line in report.read_text().splitlines():
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                for resp in _responses(ev):
                    statuses[resp] = statuses.get(resp, 0) + 1
        n5xx = sum(v for k, v in statuses.items() if k >= 500)
        server_errors = log.read_text(errors="replace").count("internal error") if log.exists() else 0
        print(json.dumps({"requests": sum(statuses.values()), "statuses": dict(sorted(statuses.items())),
                          "5xx": n5xx, "server_log_internal_errors": server_errors,
                          "schemathesis_exit": proc.returncode}))
        return 0 if proc.returncode == 0 and n5xx == 0 else 1


def _responses(ev, depth: int = 0):
    """Every HTTP status found in one ndjson event (the layout differs between versions)."""
    if depth > 12:
        return
    if isinstance(ev, dict):
        if "status_code" in ev and isinstance(ev["status_code"], int) and "elapsed" in ev:
            yield ev["status_code"]
        for v in ev.values():
            yield from _responses(v, depth + 1)
    elif isinstance(ev, list):
        for v in ev:
            yield from _responses(v, depth + 1)


if __name__ == "__main__":
    raise SystemExit(main())
