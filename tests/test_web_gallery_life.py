"""The web page's gallery care (issue 18, item 7) in headless Chromium against a live server: a
"not X" correction on a recognition and its undo, the health panel, the review of unknown faces
(name a group), export. Needs Debian's chromium and the playwright package (tools/install_browser.sh)."""

from __future__ import annotations

import httpx
import pytest

pytest.importorskip("fastapi")
from serving_fixtures import ThreadServer, b64_file, lfw_images  # noqa: E402
from test_web import CHROMIUM, CHROMIUM_ARGS, sync_playwright  # noqa: E402,F401

API_KEY = "web-care-key-0123456"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from facefeat.serving.app import create_app

    srv = ThreadServer(create_app(tmp_path_factory.mktemp("web-care"), infer_concurrency=1,
                                  api_keys=[API_KEY])).start()
    yield srv
    srv.stop()


def test_gallery_care_on_the_page(sync_playwright, server, lfw_dir, tmp_path):  # noqa: F811
    bush, blair = (lfw_images(lfw_dir, n, 4) for n in ("George_W_Bush", "Tony_Blair"))
    api = httpx.Client(base_url=server.url, timeout=120.0, headers={"X-API-Key": API_KEY})
    pairs = [{"image": b64_file(p), "label": "George_W_Bush"} for p in bush[:2]]
    key = api.post("/face-recognition-index-build", json={"imageLabelPairs": pairs, "quality": "off"}).json()["result"]["indexKey"]
    assert api.post("/face-recognition-sightings-config", json={"indexKey": key, "keepUnknown": True}).status_code == 200
    for p in blair[:3]:
        assert api.post("/face-recognition-infer", json={"image": b64_file(p), "indexKey": key}).status_code == 200
    profile = tmp_path / "profile"
    profile.mkdir()
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=True,
                                                    args=CHROMIUM_ARGS, viewport={"width": 1100, "height": 900},
                                                    accept_downloads=True)
        try:
            page = ctx.new_page()
            page.set_default_timeout(30_000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("dialog", lambda d: d.accept(API_KEY))
            page.add_init_script(f"localStorage.setItem('facefeat.indexKey', '{key}')")
            page.goto(server.url + "/")
            page.wait_for_selector("#health.ready")
            # a recognition, then "not George_W_Bush" on it, then undo
            page.set_input_files("#recog-file", str(bush[2]))
            page.click("#recog-btn")
            page.wait_for_selector("#recog-results li.known button.correct-not")
            page.click("#recog-results li.known button.correct-not")
            page.wait_for_selector("#recog-results li[data-corrected='not'] button.undo")
            listed = api.get("/face-recognition-corrections", params={"indexKey": key}).json()["result"]["corrections"]
            assert [(c["kind"], c["label"]) for c in listed] == [("not", "George_W_Bush")]
            page.click("#recog-results button.undo")
            page.wait_for_function("document.querySelector('.correction-note').textContent.includes('undone')")
            # the health panel
            page.click("#health-btn")
            page.wait_for_function("document.getElementById('care-summary').textContent.startsWith('Score')")
            assert "for 1 people" in page.inner_text("#care-summary")
            # the unknown faces: one group of Blair's three photos, named on the page
            page.click("#unknown-btn")
            page.wait_for_selector("#unknown-groups .group[data-size='3'] img[src^='blob:']")
            page.fill("#unknown-groups .group input", "Tony Blair")
            page.click("#unknown-groups .group button.name-group")
            page.wait_for_function("document.getElementById('care-status').textContent.includes('Named 3')")
            persons = api.get("/face-recognition-persons", params={"indexKey": key}).json()["result"]["persons"]
            assert sorted(p["label"] for p in persons) == ["George_W_Bush", "Tony Blair"]
            # export downloads the archive
            with page.expect_download() as dl:
                page.click("#export-btn")
            path = tmp_path / "g.tar"
            dl.value.save_as(path)
            assert path.stat().st_size > 10_000
            assert not errors, errors
        finally:
            ctx.close()
            api.close()
