"""The documentation site: ``mkdocs build --strict`` succeeds, and the generated parts follow the code.

The build runs the hooks under ``docs/hooks/``: the HTTP reference must list every route of the
app's OpenAPI document, the model table every registry model, and the Python API reference must
render. The benchmark plot script draws every figure from the recorded results. The README keeps
the test command that ``.ci/run`` runs. Skips without mkdocs (``pip install -e ".[docs]"``), except
under CI=true.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

#: building the site takes seconds; .ci/run builds it again with --strict after the tests
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _need_mkdocs() -> None:
    try:
        import material  # noqa: F401
        import mkdocs  # noqa: F401
        import mkdocstrings  # noqa: F401
    except ImportError as exc:
        reason = f"needs the docs extra (pip install -e '.[docs]'): {exc}"
        if IN_CI:
            pytest.fail(reason + " (CI=true: it must be installed)")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    _need_mkdocs()
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "NO_MKDOCS_2_WARNING": "1"}
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out


def _text(html_file: Path) -> str:
    return re.sub(r"<[^>]+>", " ", html_file.read_text(encoding="utf-8"))


def test_site_builds_strict_with_every_page(site):
    nav = re.findall(r":\s*([\w/-]+\.md)\s*$", (REPO / "mkdocs.yml").read_text(encoding="utf-8"), re.M)
    assert len(nav) >= 20, nav
    for page in nav:
        built = site / (page[:-3] + "/index.html" if page != "index.md" else "index.html")
        assert built.is_file(), page
    assert (site / "img" / "web-desktop.png").is_file() and (site / "img" / "web-phone.png").is_file()


def test_http_reference_lists_every_route(site):
    from facefeat.serving.app import create_app

    with tempfile.TemporaryDirectory() as storage:
        spec = create_app(storage).openapi()
    text = _text(site / "reference" / "http" / "index.html")
    for path, item in spec["paths"].items():
        for method in item:
            assert f"{method.upper()} {path}" in text, (method, path)
    # fields and error statuses come from the schemas, not from hand-written text
    assert "indexName" in text and "imageLabelPairs" in text and "413" in text


def test_model_table_is_the_registry(site):
    from facefeat.registry import get_spec, list_models

    html = (site / "reference" / "model-zoo" / "index.html").read_text(encoding="utf-8")
    assert "facefeat:model-table" not in html and "facefeat:thresholds" not in html
    for name in list_models():
        spec = get_spec(name)
        assert f"<strong>{name}</strong>" in html, name
        assert spec.weights.filename in html, name
    sface = get_spec("SFace").thresholds["verification"]["far=1e-3"]["threshold"]
    assert f"{sface:.3f}" in html


def test_python_reference_renders_docstrings(site):
    text = _text(site / "reference" / "python" / "index.html")
    for name in ("create_model", "create_pipeline", "FaceRecognitionPipeline", "People", "embed_dataset", "Settings"):
        assert name in text, name
    assert ":class:" not in text and ":meth:" not in text


def test_plot_script_draws_every_figure(tmp_path):
    pytest.importorskip("matplotlib")
    r = subprocess.run([sys.executable, str(REPO / "bench" / "plot_results.py"), "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["bench-clustering.png", "bench-embed-dataset.png", "bench-verification.png", "bench-video.png"]
    for name in pngs:  # the committed figures are the ones the script draws
        assert (REPO / "docs" / "img" / name).is_file(), name
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_readme_keeps_the_ci_test_command():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "\npython3 -m pytest -q tests\n" in readme and "\npython3 -m pytest -q tests\n" in ci
    assert "mkdocs build --strict" in ci
    assert 'pip install -e ".[serve]"' in readme and "download.pytorch.org/whl/cpu" in readme
    assert len(readme.encode()) < 14_000  # a short README; the rest lives on the site
    for link in re.findall(r"\]\(((?:docs/|CONTRIBUTING)[^)#]*)", readme):
        assert (REPO / link).exists(), link
