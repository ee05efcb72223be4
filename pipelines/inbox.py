"""The inbox of segmentor outputs and the ledger of what was evaluated.

Layout (``<inbox>`` is ``data/inbox`` by default)::

    <inbox>/coco/<segmentor>/<anything>.json      a COCO results file (each file one drop)
    <inbox>/big/<segmentor>/<name>_seg.png         BIG coarse masks (the folder is one drop)
    <inbox>/dis/<segmentor>/<set>/<name>.png       DIS-5K coarse masks (the folder is one drop)

Names starting with ``.`` are ignored, so a drop can be written under a hidden name and renamed
into place when complete. A drop is identified by its content (SHA-256 of the file, or of the
folder's relative mask names and contents): renaming it, moving it to another segmentor folder
or dropping it again does not make it new. The ledger (a small JSON file, written atomically
after every drop) maps ``<content hash>:<checkpoint hash>`` to the outcome, so each output is
evaluated once per checkpoint; a new champion checkpoint evaluates every output again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.fingerprint import folder_sha256
from pipelines.models import file_sha256
from segrefiner.data.folders import SampleRecord
from segrefiner.errors import InputError
from segrefiner.io import read_json, write_json

__all__ = ["DATASETS", "Drop", "Ledger", "drop_records", "find_drops"]

DATASETS = ("coco", "big", "dis")
LEDGER_VERSION = 1


@dataclass(frozen=True)
class Drop:
    """One segmentor output found in the inbox."""

    dataset: str  # coco | big | dis
    segmentor: str
    path: str  # the results file (coco) or the segmentor's folder (big, dis)
    relative: str  # path under the inbox, for messages and tags
    content: str  # SHA-256 (see the module docstring)

    @property
    def label(self) -> str:
        """``coco/<segmentor>/<file>`` or ``<big|dis>/<segmentor>``."""
        if self.dataset == "coco":
            return f"{self.dataset}/{self.segmentor}/{Path(self.relative).name}"
        return f"{self.dataset}/{self.segmentor}"


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def find_drops(inbox: str | os.PathLike) -> list[Drop]:
    """Every drop in ``inbox`` (sorted by dataset, segmentor, path); an absent inbox is empty."""
    root = Path(inbox)
    drops: list[Drop] = []
    for dataset in DATASETS:
        base = root / dataset
        if not base.is_dir():
            continue
        for folder in sorted(p for p in base.iterdir() if p.is_dir() and _visible(p, root)):
            if dataset == "coco":
                for path in sorted(folder.rglob("*.json")):
                    if path.is_file() and _visible(path, root):
                        drops.append(
                            Drop(
                                dataset,
                                folder.name,
                                str(path),
                                path.relative_to(root).as_posix(),
                                file_sha256(path),
                            )
                        )
            elif any(p.is_file() and _visible(p, root) for p in folder.rglob("*.png")):
                drops.append(
                    Drop(
                        dataset,
                        folder.name,
                        str(folder),
                        folder.relative_to(root).as_posix(),
                        folder_sha256(folder),
                    )
                )
    return drops


def drop_records(
    drop: Drop, data_root: str | os.PathLike, big_folder: str = "big/test"
) -> list[SampleRecord]:
    """The samples of a BIG or DIS drop: each coarse mask paired with its dataset image and
    ground truth. A mask without an image, or a drop without masks, is an :class:`InputError`
    naming them."""
    root, folder = Path(data_root), Path(drop.path)
    records, problems = [], []
    if drop.dataset == "big":
        base = root / big_folder
        for mask in sorted(folder.glob("*_seg.png")):
            name = mask.name.removesuffix("_seg.png")
            image, gt = base / f"{name}_im.jpg", base / f"{name}_gt.png"
            if not image.is_file() or not gt.is_file():
                problems.append(f"{mask.name}: no {image.name} / {gt.name} in {base}")
                continue
            records.append(SampleRecord(f"big/test/{name}", "big", "test", name, image, gt, mask))
        stray = sorted(p.name for p in folder.glob("*.png") if not p.name.endswith("_seg.png"))
        if stray:
            problems.append(f"not named <name>_seg.png: {', '.join(stray[:5])}")
    elif drop.dataset == "dis":
        for mask in sorted(folder.glob("*/*.png")):
            split, name = mask.parent.name, mask.stem
            image = root / "dis" / split / "im" / f"{name}.jpg"
            gt = root / "dis" / split / "gt" / f"{name}.png"
            if not image.is_file() or not gt.is_file():
                problems.append(f"{split}/{mask.name}: no image / ground truth under {root}/dis")
                continue
            records.append(SampleRecord(f"dis/{split}/{name}", "dis", split, name, image, gt, mask))
    else:
        raise InputError(f"{drop.label}: not a mask-folder dataset")
    if problems:
        shown = "; ".join(problems[:5])
        raise InputError(f"{drop.relative}: {len(problems)} problem(s): {shown}")
    if not records:
        raise InputError(f"{drop.relative}: no coarse masks found")
    return records


class Ledger:
    """``<content>:<checkpoint>`` -> outcome, in a JSON file rewritten atomically."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            data = read_json(self.path)
            if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
                raise InputError(f"{self.path}: not a ledger file")
            self.entries = data["entries"]

    @staticmethod
    def key(content: str, checkpoint: str) -> str:
        return f"{content}:{checkpoint}"

    def get(self, content: str, checkpoint: str) -> dict[str, Any] | None:
        return self.entries.get(self.key(content, checkpoint))

    def done(
        self, content: str, checkpoint: str, *, retry_failed: bool = False
    ) -> dict[str, Any] | None:
        """The entry of a drop that needs no new evaluation with ``checkpoint``: it succeeded
        before, or failed and failures are not retried; None when it is to be evaluated."""
        seen = self.get(content, checkpoint)
        if seen and (seen["status"] == "ok" or not retry_failed):
            return seen
        return None

    def record(self, drop: Drop, checkpoint: str, status: str, **details: Any) -> None:
        """Note the outcome of ``drop`` with ``checkpoint`` and save the ledger."""
        self.entries[self.key(drop.content, checkpoint)] = {
            "status": status,
            "dataset": drop.dataset,
            "segmentor": drop.segmentor,
            "path": drop.relative,
            "checkpoint": checkpoint,
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            **details,
        }
        write_json(self.path, {"version": LEDGER_VERSION, "entries": self.entries}, indent=1)
