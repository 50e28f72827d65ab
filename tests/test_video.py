"""Video and streams: a real video built from LFW photos with OpenCV's VideoWriter (three people
appearing in turn, moving), recognised and tracked; live-source frame dropping; bad sources;
a stream (loopback HTTP) that drops mid-way and is retried a bounded number of times."""

from __future__ import annotations

import functools
import http.server
import json
import logging
import threading
import time

import cv2
import numpy as np
import pytest

from conftest import first_photo_gallery
from facefeat.errors import InputError
from facefeat.io.video import VideoReader, is_video_source

PEOPLE = ["George_W_Bush", "Colin_Powell", "Tony_Blair"]
FRAMES_EACH, GAP, FPS = 6, 2, 10.0
SIZE = (640, 480)
N_FRAMES = len(PEOPLE) * (FRAMES_EACH + GAP)


def write_video(path, lfw_dir, people=PEOPLE, image_no=2):
    """Each person walks across the frame for FRAMES_EACH frames, then GAP empty frames."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, SIZE)
    assert w.isOpened()
    for k, name in enumerate(people):
        img = cv2.imread(str(lfw_dir / name / f"{name}_{image_no:04d}.jpg"))
        for f in range(FRAMES_EACH):
            frame = np.full((SIZE[1], SIZE[0], 3), 90, np.uint8)
            x, y = 20 + 16 * f + (200 if k % 2 else 0), 40 + 8 * f
            frame[y:y + 250, x:x + 250] = img
            w.write(frame)
        for _ in range(GAP):
            w.write(np.full((SIZE[1], SIZE[0], 3), 90, np.uint8))
    w.release()
    return path


@pytest.fixture(scope="module")
def video(lfw_dir, tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "people.avi", lfw_dir)



@pytest.fixture(scope="module")
def gallery(pipe, lfw_dir, tmp_path_factory):
    return first_photo_gallery(pipe, lfw_dir, PEOPLE, tmp_path_factory.mktemp("gallery") / "index")


def test_tracks_and_identities(pipe, video, gallery, tmp_path):
    out = tmp_path / "annotated.mp4"
    events = list(pipe.predict_video(str(video), index=gallery[0], every_n=2, save_path=out))
    frames = [e for e in events if e["event"] == "frame"]
    tracks = [e for e in events if e["event"] == "track"]
    summary = events[-1]
    assert summary["event"] == "summary" and summary["frames_processed"] == N_FRAMES == len(frames)
    assert summary["frames_dropped"] == 0 and summary["fps"] > 0 and summary["tracks"] == len(tracks)
    assert [t["label"] for t in sorted(tracks, key=lambda t: t["first_frame"])] == PEOPLE
    for t in tracks:
        assert t["confidence"] == 1.0 and t["score"] > 0.4 and t["detections"] >= FRAMES_EACH // 2
    for k, name in enumerate(PEOPLE):  # every frame a person is on screen shows one face with their name
        for f in frames[k * (FRAMES_EACH + GAP) + 1:k * (FRAMES_EACH + GAP) + FRAMES_EACH]:
            assert [x["label"] for x in f["faces"]] == [name], f
            box = f["faces"][0]["box"]
            assert box[2] > box[0] and box[3] > box[1]
    assert frames[0]["time"] == 0.0 and frames[5]["time"] == pytest.approx(5 / FPS)
    json.dumps(events)  # JSON-ready
    cap = cv2.VideoCapture(str(out))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == N_FRAMES
    cap.release()
    assert not list(tmp_path.glob(".*part*"))  # no temp file left behind


def test_detection_every_frame_gives_same_identities(pipe, video, gallery):
    # index= takes the saved index directory too (as predict does), not only an index object
    events = list(pipe.predict_video(str(video), index=str(gallery[1]) + "/", every_n=1,
                                     max_frames=FRAMES_EACH + GAP))
    tracks = [e for e in events if e["event"] == "track"]
    assert [t["label"] for t in tracks] == PEOPLE[:1]
    assert events[-1]["frames_processed"] == FRAMES_EACH + GAP


def test_live_source_drops_frames_instead_of_queueing(video):
    reader = VideoReader(str(video), live=True, queue_size=1)  # a file played like a camera, at 10 fps
    got = 0
    with reader:
        for _ in reader:
            got += 1
            time.sleep(0.25)  # a consumer slower than the source
    assert reader.read == N_FRAMES
    assert reader.dropped > 0 and got + reader.dropped == N_FRAMES


@pytest.mark.parametrize("source, why", [
    ("missing.mp4", "no such video file"),
    ("not_a_video.mp4", "not a video"),
    ("rtsp://127.0.0.1:9/cam", "stream unreachable"),
    ("webcam:57", "camera not available"),
])
def test_bad_sources_name_the_source(tmp_path, monkeypatch, source, why):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "not_a_video.mp4").write_text("hello, not a video\n")
    with pytest.raises(InputError, match=why) as exc:
        VideoReader(source)
    assert source in str(exc.value)


def test_is_video_source():
    assert is_video_source("a/b.MP4") and is_video_source("rtsp://cam/1") and is_video_source("webcam:0")
    assert is_video_source("https://host/clip.webm?x=1") and is_video_source(0)
    assert not is_video_source("face.jpg") and not is_video_source("https://host/face.png")


def test_stream_drop_is_retried_then_reported(video, caplog):
    served = []

    class Once(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - serve the video once, then the stream is "down"
            if served:
                self.send_error(404)
                return
            served.append(self.path)
            super().do_GET()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Once, directory=str(video.parent)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        reader = VideoReader(f"http://127.0.0.1:{srv.server_address[1]}/{video.name}", max_retries=2, retry_delay=0.05)
        n = 0
        with caplog.at_level(logging.WARNING, logger="facefeat"), pytest.raises(InputError, match="after 2 retries"):
            for _ in reader:
                n += 1
        reader.close()
    finally:
        srv.shutdown()
        srv.server_close()
    assert n == N_FRAMES - reader.dropped and n > 0
    assert sum("reconnecting" in r.message for r in caplog.records) == 2


def test_cli_recognize_video(video, gallery, tmp_path, capsys):
    from facefeat.cli import main

    rc = main(["recognize", str(video), "--index", str(gallery[1]), "--every-n", "3", "--save-dir", str(tmp_path),
               "--json"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    events = [json.loads(line) for line in cap.out.splitlines()]
    assert sum(e["event"] == "frame" for e in events) == N_FRAMES
    assert [e["label"] for e in events if e["event"] == "track"] == PEOPLE
    assert "fps" in cap.err and (tmp_path / "people_res.mp4").is_file()
    assert main(["recognize", str(video), "--index", str(gallery[1]), "--every-n", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()  # human: one line per finished track, then the summary
    assert [ln.split(",")[0] for ln in lines[:-1]] == [f"track {t['track_id']}: {t['label']}"
                                                       for t in events if t["event"] == "track"]
    assert lines[-1].startswith("source ") and "frames_processed" in lines[-1]
    assert main(["recognize", str(tmp_path / "nope.mp4"), "--index", str(gallery[1])]) == 2
    assert "nope.mp4: no such video file" in capsys.readouterr().err
