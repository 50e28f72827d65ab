"""PaddleX face-dataset files and LFW's pairs.txt.

PaddleX face_feature layout (``Global.dataset_dir``)::

    train/label.txt        "images/0001/a.jpg 0"          (path relative to train/, integer id)
    val/pair_label.txt     "images/x.jpg images/y.jpg 1"  (paths relative to val/, 1 = same person)

LFW's standard ``pairs.txt``: a header ``"<folds> <pairs per fold>"`` (e.g. ``10 300``), then per
fold that many matched lines ``name i j`` followed by that many mismatched lines
``name1 i name2 j``; an image is ``lfw/<name>/<name>_<i:04d>.jpg``. A one-number header
(``pairsDevTrain.txt``: ``1100``) means one fold.

Parsers come in two flavours: ``parse_*`` return ``(items, problems)`` and never raise on content
(for :func:`facefeat.data.check.check_dataset`, which reports everything); ``read_*`` raise
:class:`~facefeat.errors.DatasetError` listing the problems. Every problem names the file and the
1-based line number.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from facefeat.errors import DatasetError
from facefeat.utils import atomic_write_text

__all__ = [
    "Problem",
    "Sample",
    "Pair",
    "PairSet",
    "parse_label_file",
    "parse_pair_label_file",
    "parse_lfw_pairs",
    "parse_pairs",
    "read_label_file",
    "read_pairs",
    "detect_pairs_format",
    "lfw_image_path",
    "write_label_file",
    "write_pair_label_file",
]


@dataclass(frozen=True)
class Problem:
    """Something wrong in a dataset file; ``line`` is 1-based, None for the file as a whole."""

    file: str
    line: int | None
    message: str
    level: str = "error"  # "error" fails the check; "warning" is reported only

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.message}"

    def to_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "message": self.message}


@dataclass(frozen=True)
class Sample:
    """One training image: ``path`` joined with the split dir, ``rel`` as written, ``label``."""

    path: str
    label: int
    rel: str = ""
    line: int = 0


@dataclass(frozen=True)
class Pair:
    """One verification pair; ``left``/``right`` are joined with the root; label 1 = same person."""

    left: str
    right: str
    label: int
    line: int = 0


@dataclass
class PairSet:
    """Pairs read from a pair file, with the fold of each pair when the file defines folds."""

    pairs: list[Pair]
    fold_ids: np.ndarray | None
    format: str  # "paddlex" | "lfw"
    path: str
    root: str
    problems: list[Problem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[Pair]:
        return iter(self.pairs)

    def __getitem__(self, i):
        return self.pairs[i]

    @property
    def labels(self) -> np.ndarray:
        return np.array([p.label for p in self.pairs], dtype=np.int64)

    @property
    def images(self) -> list[str]:
        """Distinct image paths, in first-use order."""
        return list(dict.fromkeys(x for p in self.pairs for x in (p.left, p.right)))

    def index_arrays(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """``(images, left, right)``: the distinct images and each pair's two positions in them."""
        images = self.images
        pos = {p: i for i, p in enumerate(images)}
        left = np.fromiter((pos[p.left] for p in self.pairs), dtype=np.int64, count=len(self.pairs))
        right = np.fromiter((pos[p.right] for p in self.pairs), dtype=np.int64, count=len(self.pairs))
        return images, left, right


def _read_lines(path: Path) -> tuple[list[str] | None, Problem | None]:
    if not path.exists():
        return None, Problem(str(path), None, "file not found")
    if path.is_dir():
        return None, Problem(str(path), None, "is a directory, expected a text file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, Problem(str(path), None, f"not UTF-8 text ({exc.reason} at byte {exc.start})")
    except OSError as exc:
        return None, Problem(str(path), None, f"cannot read ({exc.strerror or exc})")
    return text.splitlines(), None


def _join(root: Path, rel: str) -> str:
    return str(root / rel)


def _parse_int(tok: str) -> int | None:
    try:
        return int(tok)
    except ValueError:
        return None


def parse_label_file(path: str | os.PathLike, root: str | os.PathLike | None = None) -> tuple[list[Sample], list[Problem]]:
    """Parse ``train/label.txt``: ``<relative path> <integer id>`` per line (blank lines skipped).

    Checks: two whitespace-separated columns, an integer label >= 0, labels starting at 0 (error
    at the line of the smallest label otherwise) and no unused ids between 0 and the maximum
    (a warning: PaddleX accepts gaps, the classifier just gets classes without images). Image
    files are not opened here.
    """
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    lines, prob = _read_lines(path)
    if prob:
        return [], [prob]
    samples: list[Sample] = []
    problems: list[Problem] = []
    f = str(path)
    first_line_of: dict[int, int] = {}
    seen: dict[str, tuple[int, int]] = {}
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            continue
        cols = line.split()
        if len(cols) != 2:
            problems.append(
                Problem(f, n, f"expected 2 columns '<image path> <integer label>', got {len(cols)}: {line[:120]!r}"
                        + (" (paths must not contain spaces)" if len(cols) > 2 else ""))
            )
            continue
        rel, lab = cols
        label = _parse_int(lab)
        if label is None:
            problems.append(Problem(f, n, f"label {lab!r} is not an integer"))
            continue
        if label < 0:
            problems.append(Problem(f, n, f"label {label} is negative; labels are 0..num_classes-1"))
            continue
        if rel in seen:
            pl, pn = seen[rel]
            problems.append(
                Problem(f, n, f"image {rel!r} is listed again (first at line {pn}"
                        + (f" with label {pl}, here {label})" if pl != label else ")"),
                        level="error" if pl != label else "warning")
            )
        else:
            seen[rel] = (label, n)
        first_line_of.setdefault(label, n)
        samples.append(Sample(_join(root, rel), label, rel, n))
    if not samples and not problems:
        problems.append(Problem(f, None, "no samples: the file is empty"))
    if first_line_of:
        labels = sorted(first_line_of)
        if labels[0] != 0:
            problems.append(
                Problem(f, first_line_of[labels[0]], f"labels must start at 0; the smallest label is {labels[0]}")
            )
        present = np.zeros(labels[-1] + 1, dtype=bool)
        present[labels] = True
        missing = np.flatnonzero(~present[labels[0]:]) + labels[0]
        if missing.size:
            nxt = next(lab for lab in labels if lab > missing[0])
            shown = ", ".join(map(str, missing[:10].tolist())) + (" ..." if missing.size > 10 else "")
            problems.append(
                Problem(f, first_line_of[nxt],
                        f"labels have gaps: {missing.size} id(s) between {labels[0]} and {labels[-1]} have no image "
                        f"({shown}); num_classes will still be max label + 1 = {labels[-1] + 1}",
                        level="warning")
            )
    return samples, problems


def parse_pair_label_file(path: str | os.PathLike, root: str | os.PathLike | None = None) -> tuple[list[Pair], list[Problem]]:
    """Parse ``val/pair_label.txt``: ``<left> <right> <0|1>`` per line (paths relative to ``root``)."""
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    lines, prob = _read_lines(path)
    if prob:
        return [], [prob]
    pairs: list[Pair] = []
    problems: list[Problem] = []
    f = str(path)
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            continue
        cols = line.split()
        if len(cols) != 3:
            problems.append(
                Problem(f, n, f"expected 3 columns '<left image> <right image> <0|1>', got {len(cols)}: {line[:120]!r}")
            )
            continue
        label = _parse_int(cols[2])
        if label not in (0, 1):
            problems.append(Problem(f, n, f"pair label {cols[2]!r} must be 0 (different) or 1 (same person)"))
            continue
        pairs.append(Pair(_join(root, cols[0]), _join(root, cols[1]), label, n))
    if not pairs and not problems:
        problems.append(Problem(f, None, "no pairs: the file is empty"))
    return pairs, problems


def lfw_image_path(root: str | os.PathLike, name: str, index: int) -> str:
    """``<root>/lfw/<name>/<name>_<i:04d>.jpg`` when ``root/lfw`` exists, else ``<root>/<name>/...``."""
    root = Path(root)
    base = root / "lfw" if (root / "lfw").is_dir() else root
    return str(base / name / f"{name}_{index:04d}.jpg")


def parse_lfw_pairs(path: str | os.PathLike, root: str | os.PathLike | None = None) -> tuple[list[Pair], np.ndarray, list[Problem]]:
    """Parse LFW's ``pairs.txt``; returns (pairs, fold id per pair, problems).

    ``root`` is the folder holding ``lfw/`` (or the ``lfw`` folder itself); default: the pairs
    file's folder. Fold ids follow the file: fold k is lines ``1 + k*2n .. (k+1)*2n``.
    """
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    lines, prob = _read_lines(path)
    if prob:
        return [], np.zeros(0, dtype=np.int64), [prob]
    f = str(path)
    body = [(n, raw.split()) for n, raw in enumerate(lines, 1) if raw.strip()]
    if not body:
        return [], np.zeros(0, dtype=np.int64), [Problem(f, None, "no pairs: the file is empty")]
    hn, head = body[0]
    nums = [_parse_int(t) for t in head]
    if not (1 <= len(head) <= 2) or any(v is None or v <= 0 for v in nums):
        return [], np.zeros(0, dtype=np.int64), [
            Problem(f, hn, f"expected the LFW header '<folds> <pairs per fold>' (e.g. '10 300'), got {' '.join(head)!r}")
        ]
    n_folds, per = (1, nums[0]) if len(nums) == 1 else (nums[0], nums[1])
    problems: list[Problem] = []
    expected = n_folds * 2 * per
    if len(body) - 1 != expected:
        problems.append(
            Problem(f, None, f"header says {n_folds} fold(s) x {per} matched + {per} mismatched = {expected} pairs, "
                    f"but the file has {len(body) - 1} pair lines")
        )
    pairs: list[Pair] = []
    folds: list[int] = []
    for k, (n, toks) in enumerate(body[1:]):
        fold = min(k // (2 * per), n_folds - 1)
        matched_part = (k % (2 * per)) < per
        if len(toks) == 3:
            name, i, j = toks[0], _parse_int(toks[1]), _parse_int(toks[2])
            if i is None or j is None or i < 1 or j < 1:
                problems.append(Problem(f, n, f"image numbers must be positive integers: {' '.join(toks)!r}"))
                continue
            pair = Pair(lfw_image_path(root, name, i), lfw_image_path(root, name, j), 1, n)
        elif len(toks) == 4:
            a, i, b, j = toks[0], _parse_int(toks[1]), toks[2], _parse_int(toks[3])
            if i is None or j is None or i < 1 or j < 1:
                problems.append(Problem(f, n, f"image numbers must be positive integers: {' '.join(toks)!r}"))
                continue
            pair = Pair(lfw_image_path(root, a, i), lfw_image_path(root, b, j), 0, n)
        else:
            problems.append(
                Problem(f, n, f"expected 'name i j' (same person) or 'name1 i name2 j' (different), got {len(toks)} columns")
            )
            continue
        if (pair.label == 1) != matched_part and len(body) - 1 == expected:
            problems.append(
                Problem(f, n, f"a {'matched' if pair.label else 'mismatched'} pair where fold {fold} expects "
                        f"{'matched' if matched_part else 'mismatched'} pairs ({per} of each per fold)", level="warning")
            )
        pairs.append(pair)
        folds.append(fold)
    return pairs, np.asarray(folds, dtype=np.int64), problems


def detect_pairs_format(path: str | os.PathLike) -> str:
    """``"lfw"`` when the first non-blank line is an all-integer header, else ``"paddlex"``."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig") as fh:
            for raw in fh:
                toks = raw.split()
                if toks:
                    return "lfw" if 1 <= len(toks) <= 2 and all(_parse_int(t) is not None for t in toks) else "paddlex"
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from exc
    return "paddlex"


def parse_pairs(path: str | os.PathLike, root: str | os.PathLike | None = None, format: str | None = None) -> PairSet:
    """Parse a pair file of either format (auto-detected); problems are kept in ``.problems``."""
    path = Path(path)
    if not path.exists():
        return PairSet([], None, format or "paddlex", str(path), str(root or path.parent), [Problem(str(path), None, "file not found")])
    fmt = format or detect_pairs_format(path)
    r = Path(root) if root is not None else path.parent
    if fmt == "lfw":
        pairs, folds, problems = parse_lfw_pairs(path, r)
        return PairSet(pairs, folds, "lfw", str(path), str(r), problems)
    if fmt != "paddlex":
        raise DatasetError(f"{path}: unknown pair-file format {fmt!r}; use 'paddlex' or 'lfw'")
    pairs, problems = parse_pair_label_file(path, r)
    return PairSet(pairs, None, "paddlex", str(path), str(r), problems)


def _raise(problems: list[Problem], what: str, limit: int = 20) -> None:
    errors = [p for p in problems if p.level == "error"]
    if errors:
        shown = "\n  ".join(str(p) for p in errors[:limit])
        more = f"\n  ... and {len(errors) - limit} more" if len(errors) > limit else ""
        raise DatasetError(f"{what}: {len(errors)} problem(s):\n  {shown}{more}")


def read_label_file(path: str | os.PathLike, root: str | os.PathLike | None = None) -> list[Sample]:
    """:func:`parse_label_file`, raising DatasetError (file:line for each) if anything is wrong."""
    samples, problems = parse_label_file(path, root)
    _raise(problems, str(path))
    return samples


def read_pairs(path: str | os.PathLike, root: str | os.PathLike | None = None, format: str | None = None) -> PairSet:
    """Read PaddleX ``pair_label.txt`` or LFW ``pairs.txt`` (auto-detected) into a :class:`PairSet`.

    ``root``: where the relative image paths start; default the pair file's folder. For LFW the
    root may hold ``lfw/`` or be the ``lfw`` folder. Raises DatasetError naming file and line.
    """
    ps = parse_pairs(path, root, format)
    _raise(ps.problems, str(path))
    return ps


def write_label_file(path: str | os.PathLike, rows: list[tuple[str, int]]) -> None:
    atomic_write_text(path, "".join(f"{p} {int(lab)}\n" for p, lab in rows))


def write_pair_label_file(path: str | os.PathLike, rows: list[tuple[str, str, int]]) -> None:
    atomic_write_text(path, "".join(f"{a} {b} {int(lab)}\n" for a, b, lab in rows))
