"""PaddleX face-dataset formats, check_dataset (every broken case, with file:line), LFW demo."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from facefeat.data import check_dataset, parse_label_file, read_label_file, read_pairs
from facefeat.data.formats import detect_pairs_format, parse_pairs
from facefeat.errors import DatasetError


def _img(path: Path, seed: int, size=(112, 112)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def make_dataset(root: Path, ids: int = 3, per_id: int = 3) -> Path:
    """A valid PaddleX face dataset: train/label.txt + val/pair_label.txt with real images."""
    lines = []
    k = 0
    for i in range(ids):
        for j in range(per_id):
            rel = f"images/{i:03d}/{i:03d}_{j}.jpg"
            _img(root / "train" / rel, k, size=(112 + 8 * j, 112))
            lines.append(f"{rel} {i}")
            k += 1
    (root / "train" / "label.txt").write_text("\n".join(lines) + "\n")
    pairs = []
    for i in range(4):
        a, b, c = (f"images/p{i}/p{i}_{j}.jpg" for j in range(3))
        for rel in (a, b, c):
            _img(root / "val" / rel, 1000 + k)
            k += 1
        pairs += [f"{a} {b} 1", f"{a} {c} 0"]
    (root / "val" / "pair_label.txt").write_text("\n".join(pairs) + "\n")
    return root


def _errors(res: dict) -> list[tuple[str, int | None, str]]:
    return [(Path(e["file"]).name, e["line"], e["message"]) for e in res["errors"]]


# ---------------------------------------------------------------------------- formats


def test_label_file_parsing(tmp_path):
    root = make_dataset(tmp_path / "ds")
    samples = read_label_file(root / "train" / "label.txt")
    assert len(samples) == 9 and samples[0].label == 0 and samples[-1].label == 2
    assert samples[0].path == str(root / "train" / "images/000/000_0.jpg")
    assert samples[3].line == 4


def test_label_file_problems_have_line_numbers(tmp_path):
    f = tmp_path / "label.txt"
    f.write_text("a.jpg 1\nb.jpg\nc.jpg x\n\nd.jpg 1 2\ne.jpg -1\nf.jpg 3\n")
    samples, problems = parse_label_file(f)
    got = {(p.line, p.level): p.message for p in problems}
    assert "2 columns" in got[(2, "error")]
    assert "not an integer" in got[(3, "error")]
    assert "2 columns" in got[(5, "error")]
    assert "negative" in got[(6, "error")]
    assert "start at 0" in got[(1, "error")]  # smallest label 1 is first seen on line 1
    assert "gaps" in got[(7, "warning")]  # 2 missing between 1 and 3
    with pytest.raises(DatasetError) as e:
        read_label_file(f)
    assert f"{f}:2:" in str(e.value) and f"{f}:3:" in str(e.value)


def test_pair_files_autodetect(tmp_path):
    root = make_dataset(tmp_path / "ds")
    ps = read_pairs(root / "val" / "pair_label.txt")
    assert ps.format == "paddlex" and len(ps) == 8 and ps.fold_ids is None
    assert ps.labels.tolist() == [1, 0] * 4
    assert ps.pairs[0].left == str(root / "val" / "images/p0/p0_0.jpg")

    lfw = tmp_path / "pairs.txt"
    lfw.write_text("2\t2\nA\t1\t2\nB\t1\t3\nA\t1\tB\t2\nC\t4\tD\t1\n" "E\t1\t2\nF\t2\t3\nE\t1\tF\t1\nG\t1\tH\t1\n")
    assert detect_pairs_format(lfw) == "lfw"
    ps = read_pairs(lfw, root=tmp_path)
    assert ps.format == "lfw" and len(ps) == 8
    assert ps.labels.tolist() == [1, 1, 0, 0, 1, 1, 0, 0]
    assert ps.fold_ids.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert ps.pairs[2].left.endswith(str(Path("A") / "A_0001.jpg"))
    assert ps.pairs[2].right.endswith(str(Path("B") / "B_0002.jpg"))
    (tmp_path / "lfw").mkdir()  # root holding lfw/ -> lfw/<name>/...
    assert read_pairs(lfw, root=tmp_path).pairs[0].left == str(tmp_path / "lfw" / "A" / "A_0001.jpg")


def test_pair_file_problems(tmp_path):
    f = tmp_path / "pair_label.txt"
    f.write_text("a.jpg b.jpg 1\na.jpg b.jpg 2\na.jpg b.jpg\na.jpg b.jpg yes\n")
    ps = parse_pairs(f)
    lines = sorted(p.line for p in ps.problems)
    assert lines == [2, 3, 4]
    with pytest.raises(DatasetError, match=r"pair_label.txt:2: pair label '2' must be 0"):
        read_pairs(f)
    bad_lfw = tmp_path / "pairs.txt"
    bad_lfw.write_text("1 2\nA 1 2\nA one 2\nA 1 B\n")
    ps = parse_pairs(bad_lfw)
    assert ps.format == "lfw"
    msgs = {p.line: p.message for p in ps.problems}
    assert "positive integers" in msgs[3] and "positive integers" in msgs[4]
    assert "3 pair lines" in msgs[None]  # header 1 fold x (2 + 2) pairs, the file has 3
    with pytest.raises(DatasetError, match=r"pairs.txt:3:"):
        read_pairs(bad_lfw)


# ---------------------------------------------------------------------------- check_dataset


def test_check_valid_dataset(tmp_path):
    root = make_dataset(tmp_path / "ds")
    out = tmp_path / "output"
    res = check_dataset(root, out, sample_num=4)
    saved = json.loads((out / "check_dataset_result.json").read_text())
    assert saved == json.loads(json.dumps(res))
    assert res["done_flag"] is True and res["check_pass"] is True, res["errors"]
    a = res["attributes"]
    assert a["train_num_classes"] == 3 and a["train_samples"] == 9
    assert a["val_num_classes"] == 2 and a["val_samples"] == 8
    assert len(a["train_sample_paths"]) == 4 and len(a["val_sample_paths"]) == 4
    for p in a["train_sample_paths"] + a["val_sample_paths"]:
        assert p.startswith("check_dataset/demo_img/") and (out / p).is_file()
    # PaddleX: label files relative to <output>/check_dataset
    assert (out / "check_dataset" / a["train_label_file"]).resolve() == (root / "train" / "label.txt").resolve()
    assert res["show_type"] == "image" and res["dataset_type"] == "ClsDataset"
    assert res["dataset_path"] == str(root)
    an = res["analysis"]
    assert (out / an["histogram"]).is_file()
    assert an["images_per_identity"]["min"] == 3 and an["images_per_identity"]["identities"] == 3
    assert an["train_images"]["width"] == {"min": 112, "max": 128, "mean": 120.0, "median": 120.0}
    assert an["train_images"]["height"]["max"] == 112
    assert len(an["train_images"]["pixels"]["mean_rgb"]) == 3
    assert an["val_pairs"] == {"positive": 4, "negative": 4, "distinct_images": 12}
    # deterministic sample choice; full decode gives the same verdict
    res2 = check_dataset(root, tmp_path / "out2", sample_num=4, full_decode=True)
    assert res2["attributes"] == res["attributes"] | {
        "train_label_file": res2["attributes"]["train_label_file"],
        "val_label_file": res2["attributes"]["val_label_file"],
    }
    assert res2["check_pass"] is True


def test_check_reports_every_problem_with_file_and_line(tmp_path):
    root = make_dataset(tmp_path / "ds")
    train = root / "train" / "label.txt"
    lines = train.read_text().splitlines()
    lines[1] = "images/000/000_1.jpg"  # line 2: wrong column count
    lines[2] = "images/000/000_2.jpg zero"  # line 3: non-integer label
    lines[3] = "images/001/missing.jpg 1"  # line 4: missing image
    (root / "train" / "images/001/001_1.jpg").write_bytes(b"not an image at all")  # line 5: unreadable
    train.write_text("\n".join(lines) + "\n")
    val = root / "val" / "pair_label.txt"
    vl = val.read_text().splitlines()
    vl[0] = vl[0][:-1] + "2"  # line 1: pair label not 0/1
    vl[3] = "images/p1/p1_0.jpg images/p1/nope.jpg 0"  # line 4: missing right image
    val.write_text("\n".join(vl) + "\n")

    res = check_dataset(root, tmp_path / "out")
    assert res["done_flag"] is True and res["check_pass"] is False
    errs = _errors(res)
    assert res["num_errors"] == len(errs) == 6, errs
    by = {(f, ln): m for f, ln, m in errs}
    assert "2 columns" in by[("label.txt", 2)]
    assert "not an integer" in by[("label.txt", 3)]
    assert "not found" in by[("label.txt", 4)] and "missing.jpg" in by[("label.txt", 4)]
    assert "not an image" in by[("label.txt", 5)] or "unreadable" in by[("label.txt", 5)]
    assert "0 (different) or 1" in by[("pair_label.txt", 1)]
    assert "right image" in by[("pair_label.txt", 4)] and "nope.jpg" in by[("pair_label.txt", 4)]
    saved = json.loads((tmp_path / "out" / "check_dataset_result.json").read_text())
    assert saved["check_pass"] is False and len(saved["errors"]) == 6


def test_check_labels_not_from_zero_and_gaps(tmp_path):
    root = make_dataset(tmp_path / "ds", ids=3, per_id=2)
    train = root / "train" / "label.txt"
    # shift: labels 1, 3, 4 -> not from 0 (error), 2 missing (warning)
    mapping = {"0": "1", "1": "3", "2": "4"}
    train.write_text("".join(f"{p} {mapping[lab]}\n" for p, lab in (ln.split() for ln in train.read_text().splitlines())))
    res = check_dataset(root, tmp_path / "out")
    assert res["check_pass"] is False
    assert [(f, ln) for f, ln, m in _errors(res) if "start at 0" in m] == [("label.txt", 1)]
    warns = [(Path(w["file"]).name, w["line"], w["message"]) for w in res["warnings"]]
    assert any("gaps" in m and ln == 3 for _, ln, m in warns), warns
    assert res["attributes"]["train_num_classes"] == 5


def test_check_gaps_only_is_a_warning(tmp_path):
    root = make_dataset(tmp_path / "ds", ids=3, per_id=1)
    train = root / "train" / "label.txt"
    train.write_text(train.read_text().replace(" 2\n", " 5\n"))
    res = check_dataset(root, tmp_path / "out")
    assert res["check_pass"] is True and res["warnings"] and "gaps" in res["warnings"][0]["message"]


def test_check_missing_label_files_and_dir(tmp_path):
    root = make_dataset(tmp_path / "ds")
    (root / "val" / "pair_label.txt").unlink()
    res = check_dataset(root, tmp_path / "out")
    assert res["check_pass"] is False
    assert [(f, ln) for f, ln, _ in _errors(res)] == [("pair_label.txt", None)]
    assert "not found" in res["errors"][0]["message"]
    assert res["attributes"]["train_samples"] == 9  # the rest is still summarised

    res = check_dataset(tmp_path / "no_such_dir", tmp_path / "out2")
    assert res["check_pass"] is False and "not found" in res["errors"][0]["message"]
    assert (tmp_path / "out2" / "check_dataset_result.json").is_file()


def test_check_finds_nested_root(tmp_path):
    make_dataset(tmp_path / "wrap" / "face_rec_examples")
    res = check_dataset(tmp_path / "wrap", tmp_path / "out")
    assert res["check_pass"] is True and res["attributes"]["train_samples"] == 9


# ---------------------------------------------------------------------------- LFW demo


def test_lfw_demo_tiny_build(tmp_path, lfw_dir, lfw_pairs):
    from facefeat.data.lfw_demo import build_lfw_demo

    out = tmp_path / "lfw_demo"
    s = build_lfw_demo(lfw_dir, lfw_pairs, out, align="align", max_train_ids=20, max_pairs=40, workers=2,
                       max_images_per_id=3, progress=False)
    assert s["num_train_ids"] == 20 and s["num_val_pairs"] == 40 and s["num_train_images"] == 60
    assert s["num_val_positive"] == s["num_val_negative"] == 20
    assert s["val_folds"] == 10 and s["val_fold_sizes"] == [4] * 10
    assert s["faces"].get("align", 0) >= 0.9 * (s["num_train_images"] + s["num_val_images"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temp dir renamed away

    samples = read_label_file(out / "train" / "label.txt")
    assert sorted({x.label for x in samples}) == list(range(20))
    pairs = read_pairs(out / "val" / "pair_label.txt")
    assert len(pairs) == 40
    img = cv2.imread(samples[0].path)
    assert img.shape == (112, 112, 3)
    # train and val never share a person
    train_people = {Path(x.path).parent.name for x in samples}
    val_people = {Path(x).parent.name for x in pairs.images}
    assert not train_people & val_people
    assert all(len(list((lfw_dir / n).glob("*.jpg"))) >= 8 for n in train_people)
    # PaddleX's checker accepts it
    res = check_dataset(out, tmp_path / "out", sample_num=2)
    assert res["check_pass"] is True, res["errors"]
    assert res["attributes"]["train_num_classes"] == 20 and res["attributes"]["val_samples"] == 40

    # deterministic: the same subset and order, whatever the face mode / worker count
    out2 = tmp_path / "lfw_center"
    s2 = build_lfw_demo(lfw_dir, lfw_pairs, out2, align="center", max_train_ids=20, max_pairs=40, workers=1,
                        max_images_per_id=3, progress=False)
    assert s2["faces"] == {"center": s2["num_train_images"] + s2["num_val_images"]}
    assert (out2 / "train" / "label.txt").read_text() == (out / "train" / "label.txt").read_text()
    assert (out2 / "val" / "pair_label.txt").read_text() == (out / "val" / "pair_label.txt").read_text()
