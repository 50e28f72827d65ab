"""The service on a real database: two `facefeat serve` replicas sharing one PostgreSQL (8 clients
writing and recognising through both), the CLI writing a server's gallery at the same time, and
servers killed with SIGKILL mid-write (1 and 2 workers): no lost, duplicated or half-applied write."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from pg_server import pg_server, pg_url  # noqa: E402,F401  (fixtures)
from serving_fixtures import ProcessServer, b64_bytes, lfw_images  # noqa: E402

from facefeat.index import load_index  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--infer-concurrency", "1", "--threads", "1"]


def _small(path: Path, side: int = 125) -> str:
    img = cv2.resize(cv2.imread(str(path)), (side, side), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return b64_bytes(buf.tobytes())


def _ok(r: httpx.Response) -> dict:
    assert r.status_code == 200, f"{r.request.url.path}: {r.status_code} {r.text[:300]}"
    return r.json()["result"]


@pytest.fixture(scope="module")
def photos(lfw_dir) -> dict[str, list[str]]:
    return {p: [_small(f) for f in lfw_images(lfw_dir, p, 6)] for p in ("George_W_Bush", "Colin_Powell", "Tony_Blair")}


@pytest.mark.slow
def test_two_replicas_share_one_postgres(pg_url, photos, tmp_path):
    servers = [ProcessServer(tmp_path / f"s{i}", *ARGS, "--store", pg_url, log_path=tmp_path / f"s{i}.log").start()
               for i in range(2)]
    try:
        a, b = (httpx.Client(base_url=s.url, timeout=120) for s in servers)
        seed = [{"image": photos["George_W_Bush"][0], "label": "George_W_Bush"}]
        key = _ok(a.post("/face-recognition-index-build", json={"imageLabelPairs": seed}))["indexKey"]
        # a person added through one replica is recognised through the other on the next request
        _ok(a.post("/face-recognition-person-add", json={"indexKey": key, "label": "Tony_Blair",
                                                          "images": photos["Tony_Blair"][:1]}))
        res = _ok(b.post("/face-recognition-infer", json={"image": photos["Tony_Blair"][2], "indexKey": key,
                                                          "visualize": False}))
        assert res["faces"][0]["recResults"][0]["label"] == "Tony_Blair"
        acked: dict[int, str] = {0: "George_W_Bush", 1: "Tony_Blair"}
        lock, errors = threading.Lock(), []

        def client(n: int) -> None:
            rng = random.Random(n)
            try:
                with httpx.Client(base_url=servers[n % 2].url, timeout=120) as mine, \
                        httpx.Client(base_url=servers[1 - n % 2].url, timeout=120) as other:
                    for j in range(3):
                        label = f"c{n}-{j}"
                        img = rng.choice(photos["Colin_Powell"])
                        r = _ok(mine.post("/face-recognition-index-add", json={
                            "indexKey": key, "imageLabelPairs": [{"image": img, "label": label}]}))
                        with lock:
                            assert r["ids"][0] not in acked, f"id {r['ids'][0]} given twice"
                            acked[r["ids"][0]] = label
                        _ok(other.post("/face-recognition-infer", json={"image": img, "indexKey": key,
                                                                         "visualize": False}))
            except Exception as exc:  # reported below
                errors.append(repr(exc))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        assert not errors, errors
        assert sorted(acked) == list(range(len(acked))) == list(range(26))  # unique and positional
        for c in (a, b):
            info = _ok(c.get("/face-recognition-index-info", params={"indexKey": key}))
            assert {e["id"]: e["label"] for e in info["entries"]} == acked
        assert load_index(pg_url + f"?gallery={key}").labels() == acked
    finally:
        for s in servers:
            s.stop()


@pytest.mark.slow
def test_cli_and_server_write_one_gallery_at_once(photos, tmp_path, lfw_dir):
    srv = ProcessServer(tmp_path / "storage", *ARGS, log_path=tmp_path / "s.log").start()
    try:
        c = httpx.Client(base_url=srv.url, timeout=120)
        seed = [{"image": photos["George_W_Bush"][0], "label": "George_W_Bush"}]
        key = _ok(c.post("/face-recognition-index-build", json={"imageLabelPairs": seed}))["indexKey"]
        gallery = tmp_path / "g"
        (gallery / "Tony_Blair").mkdir(parents=True)
        lines = []
        for f in lfw_images(lfw_dir, "Tony_Blair", 4):
            (gallery / "Tony_Blair" / f.name).write_bytes(f.read_bytes())
            lines.append(f"Tony_Blair/{f.name} Tony_Blair")
        (gallery / "gallery.txt").write_text("\n".join(lines) + "\n")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        cli = subprocess.Popen([sys.executable, "-m", "facefeat", "index", "add", str(srv_path(tmp_path, key)),
                                "--gallery", str(gallery)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        got = []
        for j in range(6):  # the server writes while the CLI does; no client ever sees a conflict
            r = c.post("/face-recognition-index-add", json={"indexKey": key, "imageLabelPairs": [
                {"image": photos["Colin_Powell"][j], "label": f"Colin-{j}"}]})
            assert r.status_code == 200, r.text
            got += r.json()["result"]["ids"]
        out, err = cli.communicate(timeout=600)
        assert cli.returncode == 0, err[-2000:]
        assert "added 4" in out
        info = _ok(c.get("/face-recognition-index-info", params={"indexKey": key}))
        labels = [e["label"] for e in info["entries"]]
        assert sorted(labels) == sorted(["George_W_Bush"] + [f"Colin-{j}" for j in range(6)] + ["Tony_Blair"] * 4)
        assert [e["id"] for e in info["entries"]] == list(range(11))
    finally:
        srv.stop()


def srv_path(tmp_path: Path, key: str) -> Path:
    return tmp_path / "storage" / "indexes" / key


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "postgres"])
@pytest.mark.parametrize("workers", [1, 2])
def test_server_killed_mid_write_loses_no_acknowledged_change(photos, tmp_path, workers, store, request):
    storage = tmp_path / "storage"
    url = request.getfixturevalue("pg_url") if store == "postgres" else None
    extra = ["--store", url] if url else []
    acked: dict[int, str] = {}
    removed: set[int] = set()
    tried: set[int] = set()
    key = None
    for rnd in range(3):
        srv = ProcessServer(storage, *ARGS, "--workers", str(workers), *extra, log_path=tmp_path / "s.log").start()
        stop = threading.Event()
        try:
            c = httpx.Client(base_url=srv.url, timeout=60)
            if key is None:
                seed = [{"image": photos["George_W_Bush"][0], "label": "seed"}]
                key = _ok(c.post("/face-recognition-index-build", json={"imageLabelPairs": seed}))["indexKey"]
                acked[0] = "seed"
            else:  # the restarted server serves every acknowledged change
                info = _ok(c.get("/face-recognition-index-info", params={"indexKey": key}))
                have = {e["id"]: e["label"] for e in info["entries"]}
                assert {i: lab for i, lab in acked.items() if i not in tried}.items() <= have.items()

            def writer(n: int) -> None:
                j = 0
                with httpx.Client(base_url=srv.url, timeout=60) as w:
                    while not stop.is_set():
                        label = f"r{rnd}-w{n}-{j}"
                        j += 1
                        try:
                            live = [i for i in list(acked) if i not in removed and i not in tried]
                            if j % 4 == 0 and len(live) > 2:
                                victim = max(live)
                                tried.add(victim)  # a remove in flight when killed may or may not land
                                r = w.post("/face-recognition-index-remove", json={"indexKey": key, "ids": [victim]})
                                if r.status_code == 200:
                                    removed.add(victim)
                                continue
                            img = photos["Colin_Powell"][(n + j) % 6]
                            r = w.post("/face-recognition-index-add", json={
                                "indexKey": key, "imageLabelPairs": [{"image": img, "label": label}]})
                        except (httpx.HTTPError, OSError):
                            return  # the server is gone
                        if r.status_code == 200:
                            acked[r.json()["result"]["ids"][0]] = label

            threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
            for t in threads:
                t.start()
            time.sleep(random.Random(rnd).uniform(3, 8))
            os.killpg(srv.proc.pid, signal.SIGKILL)  # the master and its workers
            srv.proc.wait(30)
            stop.set()
            for t in threads:
                t.join(60)
        finally:
            stop.set()
            srv.stop()
    back = load_index(f"{url}?gallery={key}" if url else storage / "indexes" / key)
    labels = back.labels()
    for i, lab in acked.items():
        if i not in tried:
            assert labels.get(i) == lab, (i, lab)
    assert not set(labels) & removed
    recs = back.store.records(back.ids())
    assert all(r.crop is not None for r in recs.values()) and set(recs) == set(labels)


@pytest.fixture
def tiny_disk(tmp_path):
    m = tmp_path / "tiny"
    m.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(m)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()})")
    try:
        yield m
    finally:
        subprocess.run(["umount", "-l", str(m)], capture_output=True)


@pytest.mark.slow
def test_a_full_disk_answers_507_with_a_plain_message(photos, tmp_path, tiny_disk):
    """Issue 20, item 10: 507 and a plain message (no FAISS or SQLite internals); nothing changes."""
    srv = ProcessServer(tiny_disk / "storage", *ARGS, log_path=tmp_path / "s.log").start()
    try:
        c = httpx.Client(base_url=srv.url, timeout=120)
        seed = [{"image": photos["George_W_Bush"][0], "label": "George_W_Bush"}]
        key = _ok(c.post("/face-recognition-index-build", json={"imageLabelPairs": seed}))["indexKey"]
        st = os.statvfs(tiny_disk)
        filler = tiny_disk / "filler"
        with open(filler, "wb") as f:  # leave (almost) nothing free
            try:
                f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - 4096))
                f.flush()
                os.fsync(f.fileno())
            except OSError:
                pass
        pairs = [{"image": photos["Colin_Powell"][j], "label": "Colin_Powell"} for j in range(4)]
        r = c.post("/face-recognition-index-add", json={"indexKey": key, "imageLabelPairs": pairs})
        assert r.status_code == 507, r.text
        msg = r.json()["errorMsg"]
        assert "disk is full" in msg and not any(w in msg.lower() for w in ("faiss", "sqlite", "traceback", "errno"))
        info = _ok(c.get("/face-recognition-index-info", params={"indexKey": key}))
        assert info["imageCount"] == 1  # the gallery is unchanged
        filler.unlink()
        res = _ok(c.post("/face-recognition-index-add", json={"indexKey": key, "imageLabelPairs": pairs}))
        assert res["ids"] == [1, 2, 3, 4] and res["imageCount"] == 5
    finally:
        srv.stop()


@pytest.mark.slow
def test_labels_are_one_person_over_http(photos, tmp_path):
    """Issue 20, item 13: NFC + strip everywhere (add, rename, remove), control/bidi characters refused."""
    import unicodedata

    srv = ProcessServer(tmp_path / "storage", *ARGS, log_path=tmp_path / "s.log").start()
    try:
        c = httpx.Client(base_url=srv.url, timeout=120)
        nfc, nfd = unicodedata.normalize("NFC", "Zoë"), unicodedata.normalize("NFD", "Zoë")
        seed = [{"image": photos["George_W_Bush"][0], "label": nfd}]
        key = _ok(c.post("/face-recognition-index-build", json={"imageLabelPairs": seed}))["indexKey"]
        add = {"indexKey": key, "label": "  padded  ", "images": photos["Tony_Blair"][:1]}
        assert _ok(c.post("/face-recognition-person-add", json=add))["label"] == "padded"
        _ok(c.post("/face-recognition-person-add", json={"indexKey": key, "label": nfc,
                                                          "images": photos["George_W_Bush"][1:2]}))
        persons = _ok(c.get("/face-recognition-persons", params={"indexKey": key}))["persons"]
        assert [(p["label"], p["sampleCount"]) for p in persons] == [(nfc, 2), ("padded", 1)]
        assert _ok(c.post("/face-recognition-person-rename", json={"indexKey": key, "label": " padded",
                                                                   "newLabel": "Tony "}))["newLabel"] == "Tony"
        assert _ok(c.post("/face-recognition-person-remove", json={"indexKey": key, "label": nfd}))["removed"] == [0, 2]
        for bad in ("evil\u202eexe.jpg", "two\nlines"):
            r = c.post("/face-recognition-person-add", json={"indexKey": key, "label": bad,
                                                             "images": photos["Colin_Powell"][:1]})
            assert r.status_code == 400 and "control character" in r.json()["errorMsg"], r.text
    finally:
        srv.stop()


@pytest.mark.slow
def test_postgres_restarted_under_a_server(pg_server, pg_url, photos, tmp_path):
    """While the database is down requests fail clearly (503, a plain message), afterwards they work
    and nothing acknowledged is lost."""
    srv = ProcessServer(tmp_path / "s", *ARGS, "--store", pg_url, log_path=tmp_path / "s.log").start()
    try:
        c = httpx.Client(base_url=srv.url, timeout=120)
        seed = [{"image": photos["George_W_Bush"][0], "label": "George_W_Bush"}]
        key = _ok(c.post("/face-recognition-index-build", json={"imageLabelPairs": seed}))["indexKey"]
        pg_server.stop()
        try:
            add = {"indexKey": key, "imageLabelPairs": [{"image": photos["Tony_Blair"][0], "label": "Tony_Blair"}]}
            r = c.post("/face-recognition-index-add", json=add)
            assert r.status_code == 503, r.text
            assert "unavailable" in r.json()["errorMsg"] and "Traceback" not in r.text
            r = c.get("/face-recognition-index-info", params={"indexKey": key})
            assert r.status_code == 503, r.text
        finally:
            pg_server.start()
        assert _ok(c.post("/face-recognition-index-add", json=add))["ids"] == [1]
        info = _ok(c.get("/face-recognition-index-info", params={"indexKey": key}))
        assert [(e["id"], e["label"]) for e in info["entries"]] == [(0, "George_W_Bush"), (1, "Tony_Blair")]
    finally:
        srv.stop()
