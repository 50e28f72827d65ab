"""PaddleX gallery files: which images make up a gallery, and their labels.

A PaddleX gallery is a root directory of images plus a label file (``gallery.txt``), one entry a
line::

    images/Alice/001.jpg Alice
    images/Bob/001.jpg\tBob Smith

The path is everything before the first run of whitespace (spaces or tabs) and the label the rest
of the line, stripped at both ends - so labels may contain inner spaces (PaddleX also keeps
everything after the first delimiter as the label). Paths are relative to the root directory
(absolute paths are used as they are). Blank lines are skipped; a UTF-8 BOM is ignored.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from facefeat.errors import InputError

DEFAULT_LABEL_FILE = "gallery.txt"
_SPLIT = re.compile(r"\s+")
_MAX_REPORTED = 10


def _report(problems: list[str], what: str) -> None:
    if problems:
        more = f"\n  ... and {len(problems) - _MAX_REPORTED} more" if len(problems) > _MAX_REPORTED else ""
        raise InputError(f"{what}:\n  " + "\n  ".join(problems[:_MAX_REPORTED]) + more)


def parse_gallery_file(
    label_file: str | os.PathLike, root: str | os.PathLike | None = None, check_files: bool = True
) -> list[tuple[str, str]]:
    """Parse a label file into ``[(image path, label)]``; paths resolved against ``root``
    (default: the label file's directory). Bad lines and missing images raise InputError naming
    ``file:line``."""
    lf = Path(label_file)
    if not lf.is_file():
        raise InputError(f"{lf}: gallery label file not found" + (" (it is a directory)" if lf.is_dir() else ""))
    root_dir = Path(root) if root is not None else lf.parent
    if not root_dir.is_dir():
        raise InputError(f"{root_dir}: gallery image root is not a directory")
    try:
        text = lf.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{lf}: gallery label file is not UTF-8 text ({exc})") from exc
    except OSError as exc:
        raise InputError(f"{lf}: cannot read the gallery label file ({exc.strerror or exc})") from exc
    entries: list[tuple[str, str]] = []
    problems: list[str] = []
    for no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = _SPLIT.split(line, maxsplit=1)
        if len(parts) < 2 or not parts[1].strip():
            problems.append(f"{lf}:{no}: expected '<image path> <label>', got {raw.strip()[:80]!r}")
            continue
        rel, label = parts[0], parts[1].strip()
        path = root_dir / rel
        if check_files and not path.is_file():
            problems.append(f"{lf}:{no}: image {rel!r} not found (looked for {path})")
            continue
        entries.append((str(path), label))
    _report(problems, f"{lf}: {len(problems)} bad gallery line(s)")
    if not entries:
        raise InputError(f"{lf}: gallery label file lists no images")
    return entries


def load_gallery(
    gallery_imgs: Any, gallery_label: Any = None, check_files: bool = True
) -> list[tuple[Any, str]]:
    """The gallery as ``[(image, label)]``, from either

    (a) ``gallery_imgs`` = root directory and ``gallery_label`` = label file path (PaddleX's
        ``build_index(gallery_imgs=root, gallery_label="gallery.txt")``; a relative label file
        path that does not exist as given is looked up inside the root, and ``None`` means
        ``<root>/gallery.txt``), or
    (b) ``gallery_imgs`` = list of images (paths, or arrays/PIL images, which pass through as they
        are) and ``gallery_label`` = list of labels of the same length.
    """
    if isinstance(gallery_imgs, (str, os.PathLike)):
        root = Path(gallery_imgs)
        if not root.is_dir():
            raise InputError(f"{root}: gallery image root is not a directory (or pass lists of images and labels)")
        if gallery_label is None:
            gallery_label = root / DEFAULT_LABEL_FILE
        if not isinstance(gallery_label, (str, os.PathLike)):
            raise InputError(
                "gallery_label: with a gallery root directory, pass the label file's path (e.g. gallery.txt), "
                f"not {type(gallery_label).__name__}"
            )
        lf = Path(gallery_label)
        if not lf.exists() and not lf.is_absolute() and (root / lf).exists():
            lf = root / lf
        return parse_gallery_file(lf, root, check_files)
    if gallery_imgs is None and isinstance(gallery_label, (str, os.PathLike)):
        return parse_gallery_file(gallery_label, None, check_files)
    if isinstance(gallery_imgs, (list, tuple)):
        if isinstance(gallery_label, (str, os.PathLike)) or not isinstance(gallery_label, (list, tuple, np.ndarray)):
            raise InputError("gallery_label: with a list of gallery images, pass a list of labels of the same length")
        labels = list(gallery_label)
        if len(labels) != len(gallery_imgs):
            raise InputError(f"gallery: {len(gallery_imgs)} images but {len(labels)} labels; they must pair up")
        if not gallery_imgs:
            raise InputError("gallery: the image list is empty")
        problems = []
        out: list[tuple[Any, str]] = []
        for i, (img, lab) in enumerate(zip(gallery_imgs, labels)):
            lab = str(lab).strip() if isinstance(lab, (str, int, np.integer)) else None
            if not lab:
                problems.append(f"item {i}: label {labels[i]!r} is not a non-empty string")
                continue
            if isinstance(img, (str, os.PathLike)):
                s = os.fspath(img)
                if check_files and not s.lower().startswith(("http://", "https://")) and not Path(s).is_file():
                    problems.append(f"item {i}: image {s!r} not found")
                    continue
                img = str(s)
            out.append((img, lab))
        _report(problems, f"gallery: {len(problems)} bad item(s)")
        return out
    raise InputError(
        f"gallery_imgs: expected a root directory (with gallery_label = label file) or a list of images, "
        f"got {type(gallery_imgs).__name__}"
    )


__all__ = ["DEFAULT_LABEL_FILE", "load_gallery", "parse_gallery_file"]
