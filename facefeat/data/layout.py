"""Where a PaddleX face dataset's files are: one rule for check_dataset, train and evaluate.

    layout = DatasetLayout.find("dataset/lfw_demo")
    layout.train_file   # <root>/train/label.txt
    layout.val_file     # <root>/val/pair_label.txt
    layout.pairs_file() # the pair list evaluate reads (PaddleX's, or LFW's pairs.txt)

The root is the folder itself when it holds ``train/`` or ``val/``; otherwise its only sub-folder
that does (PaddleX dataset zips often unpack into one folder); otherwise the folder itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from facefeat.errors import DatasetError

__all__ = ["DatasetLayout", "PAIR_FILES"]

TRAIN_FILE = Path("train") / "label.txt"
VAL_FILE = Path("val") / "pair_label.txt"
#: pair lists evaluate looks for under the root, in order
PAIR_FILES = ("val/pair_label.txt", "pair_label.txt", "pairs.txt", "lfw_pairs.txt")


def _has_split(d: Path) -> bool:
    return (d / "train").is_dir() or (d / "val").is_dir()


@dataclass(frozen=True)
class DatasetLayout:
    """A dataset's root and the paths of its label files (which need not exist)."""

    root: Path
    given: str

    @classmethod
    def find(cls, dataset_dir: str | os.PathLike, what: str = "Global.dataset_dir") -> "DatasetLayout":
        """The layout of ``dataset_dir``; DatasetError when it is not a directory."""
        d = Path(dataset_dir)
        if not d.is_dir():
            raise DatasetError(f"{what} {str(dataset_dir)!r} "
                               + ("does not exist" if not d.exists() else "is not a directory"))
        if not _has_split(d):
            subs = [p for p in sorted(d.iterdir()) if p.is_dir() and _has_split(p)]
            if len(subs) == 1:
                d = subs[0]
        return cls(d, str(dataset_dir))

    @property
    def train_file(self) -> Path:
        return self.root / TRAIN_FILE

    @property
    def val_file(self) -> Path:
        return self.root / VAL_FILE

    def pairs_file(self) -> Path:
        """The first of :data:`PAIR_FILES` under the root; DatasetError naming them when none is."""
        for rel in PAIR_FILES:
            if (self.root / rel).is_file():
                return self.root / rel
        raise DatasetError(
            f"{self.root}: no pair list found (looked for {', '.join(PAIR_FILES)}); "
            "pass the pair file itself as Global.dataset_dir"
        )
