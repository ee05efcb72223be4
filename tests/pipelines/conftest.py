"""Shared fixtures: a tiny HR data root with good and broken samples, and store snapshots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines.coarse import KINDS, read_manifest
from pipelines.stores import MaskStore
from tests.pipelines.shapes import make_hr_root, save_image, save_mask

BROKEN = {
    # sample id -> what the manifest's reason must mention
    "dis/DIS-TR/bad_image": "unreadable image",
    "dis/DIS-TR/size_mismatch": "differs from the image size",
    "dis/DIS-TR/no_image": "image file not found",
    "thin_object/train/listed_only": "ground-truth mask file not found",
}


@pytest.fixture(scope="session")
def hr_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """9 good samples (5 DIS-TR, 4 ThinObject) and the 4 broken ones of BROKEN."""
    root = tmp_path_factory.mktemp("hr_data")
    good = make_hr_root(root, n_dis=5, n_thin=4)
    rng = np.random.default_rng(1)
    (root / "dis/DIS-TR/im/bad_image.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    save_mask(root / "dis/DIS-TR/gt/bad_image.png", np.ones((30, 30), bool))
    save_image(root / "dis/DIS-TR/im/size_mismatch.jpg", 40, 50, rng)
    save_mask(root / "dis/DIS-TR/gt/size_mismatch.png", np.ones((41, 50), bool))
    save_mask(root / "dis/DIS-TR/gt/no_image.png", np.ones((30, 30), bool))
    with open(root / "thin_object/list/train.txt", "a") as fh:
        fh.write("listed_only.png\n")
    return root, good


def snapshot(store_path: Path) -> dict[str, Any]:
    """Everything a reader can see: every mask (bytes + attrs), the manifest, the attrs."""
    store = MaskStore.open(store_path)
    masks = {}
    for row in read_manifest(store_path):
        for kind in KINDS:
            if row["status"] == "ok":
                mask = store.read_mask(kind, row["sample_id"])
                masks[(kind, row["sample_id"])] = (
                    mask.shape,
                    mask.dtype.str,
                    mask.tobytes(),
                    store.mask_attrs(kind, row["sample_id"]),
                )
            else:
                assert not store.has_mask(kind, row["sample_id"])
    attrs = store.attrs
    attrs.pop("num_shards")
    return {"masks": masks, "manifest": read_manifest(store_path), "attrs": attrs}


def files(store_path: Path, skip: str = "\0") -> dict[str, bytes]:
    """Every file of a local store, by relative path (those under ``skip`` left out)."""
    return {
        p.relative_to(store_path).as_posix(): p.read_bytes()
        for p in sorted(store_path.rglob("*"))
        if p.is_file() and not p.relative_to(store_path).as_posix().startswith(skip)
    }
