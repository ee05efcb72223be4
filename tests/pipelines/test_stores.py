"""The mask store layout: round trips, attrs, index, completion records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

import segrefiner
from pipelines.stores import LAYOUT_VERSION, MASK_COMPRESSOR, MaskStore, mask_key
from segrefiner.errors import InputError
from tests.pipelines.shapes import random_object

IDS = ["dis/DIS-TR/1#Bag#2 x", "thin_object/train/wire", "big/test/a_1"]


def make_store(path: Path) -> MaskStore:
    return MaskStore.create(
        path,
        layout="test-layout",
        kinds=["coarse", "refined"],
        sample_ids=IDS,
        columns={"height": np.array([5, 6, 7], np.int32), "image": ["a.jpg", "b c.jpg", "é.jpg"]},
        attrs={"seed": 3, "generator": {"iou_target": 0.8}},
    )


def test_round_trip_bit_exact(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s.zarr")
    rng = np.random.default_rng(0)
    masks = {
        IDS[0]: random_object(301, 457, rng),
        IDS[1]: rng.random((17, 1)) > 0.5,  # odd sizes, one column
        IDS[2]: rng.random((3, 40, 30)) > 0.5,  # (N, H, W): per-instance masks of one image
    }
    for sid, mask in masks.items():
        store.write_mask("coarse", sid, mask, attrs={"image": f"{sid}.jpg"})
    store.write_mask("refined", IDS[0], masks[IDS[0]].astype(np.uint8) * 255)
    reader = MaskStore.open(tmp_path / "s.zarr")
    for sid, mask in masks.items():
        back = reader.read_mask("coarse", sid)
        assert back.dtype == bool and back.shape == mask.shape
        assert np.array_equal(back, mask)
        assert reader.mask_attrs("coarse", sid) == {
            "sample_id": sid,
            "kind": "coarse",
            "image": f"{sid}.jpg",
        }
    assert np.array_equal(reader.read_mask("refined", IDS[0]), masks[IDS[0]])
    assert not reader.has_mask("refined", IDS[1])
    with pytest.raises(InputError, match=r"no refined mask for sample 'thin_object/train/wire'"):
        reader.read_mask("refined", IDS[1])
    with pytest.raises(InputError, match="unknown mask kind 'other'"):
        reader.read_mask("other", IDS[0])


def test_one_chunk_per_mask_and_compression(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s.zarr")
    mask = random_object(600, 800, np.random.default_rng(1))
    store.write_mask("coarse", IDS[0], mask)
    array = zarr.open_array(tmp_path / "s.zarr", path=f"masks/coarse/{mask_key(IDS[0])}", mode="r")
    assert array.chunks == array.shape == (600, 800) and array.nchunks == 1
    assert [c.to_dict() for c in array.compressors] == [MASK_COMPRESSOR.to_dict()]
    assert MASK_COMPRESSOR.to_dict()["configuration"]["shuffle"] == "bitshuffle"
    chunk_files = list((tmp_path / "s.zarr/masks/coarse" / mask_key(IDS[0])).rglob("c/*/*"))
    assert len(chunk_files) == 1
    assert chunk_files[0].stat().st_size * 50 < mask.size  # a mask compresses far below 1 bit/px


def test_attrs_and_index(tmp_path: Path) -> None:
    make_store(tmp_path / "s.zarr")
    store = MaskStore.open(tmp_path / "s.zarr")
    attrs = store.attrs
    assert attrs["layout"] == "test-layout" and attrs["layout_version"] == LAYOUT_VERSION
    assert attrs["producer"] == {"name": "segrefiner", "version": segrefiner.__version__}
    assert attrs["kinds"] == ["coarse", "refined"] and attrs["num_samples"] == 3
    assert attrs["seed"] == 3 and attrs["generator"] == {"iou_target": 0.8}
    assert store.sample_ids == IDS
    assert store.columns() == ["height", "image", "sample_id"]
    assert store.read_column("height").tolist() == [5, 6, 7]
    assert [str(v) for v in store.read_column("image")] == ["a.jpg", "b c.jpg", "é.jpg"]
    with pytest.raises(InputError, match="no index column 'nope'"):
        store.read_column("nope")
    with pytest.raises(ValueError, match="expected 3 values"):
        MaskStore.open(tmp_path / "s.zarr", "r+").write_column("bad", [1, 2])


def test_keys_are_safe_and_unique() -> None:
    keys = {mask_key(s) for s in ["a/b", "a_b", "a.b", "a#b", "a b", "__x", "..", "a/" * 200]}
    assert len(keys) == 8
    for key in keys:
        assert all(c.isalnum() or c in "._-" for c in key), key
        assert not key.startswith(("_", ".")) and len(key) < 100
    assert mask_key("dis/DIS-TR/1#Bag#2") == mask_key("dis/DIS-TR/1#Bag#2")


def test_completion_records(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s.zarr")
    assert store.completed_units() == [] and store.completion_record("00001") is None
    store.mark_complete("00001", {"start": 1, "stop": 2, "samples": [{"sample_id": IDS[1]}]})
    reader = MaskStore.open(tmp_path / "s.zarr")
    assert reader.completed_units() == ["00001"]
    assert reader.completion_record("00001")["samples"] == [{"sample_id": IDS[1]}]
    store.clear_completion("00001")
    assert reader.completed_units() == []


def test_delete_mask(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s.zarr")
    store.write_mask("coarse", IDS[0], np.ones((3, 3), bool))
    store.delete_mask("coarse", IDS[0])
    store.delete_mask("coarse", IDS[0])  # absent: no error
    assert not store.has_mask("coarse", IDS[0])
    assert not list((tmp_path / "s.zarr/masks/coarse").rglob("c/*")), "chunk files left behind"


def test_create_and_open_errors(tmp_path: Path) -> None:
    make_store(tmp_path / "s.zarr")
    with pytest.raises(InputError, match="a store already exists"):
        make_store(tmp_path / "s.zarr")
    MaskStore.create(tmp_path / "s.zarr", layout="x", kinds=["k"], sample_ids=[], overwrite=True)
    assert MaskStore.open(tmp_path / "s.zarr").sample_ids == []
    with pytest.raises(InputError, match="no mask store here"):
        MaskStore.open(tmp_path / "missing.zarr")
    with pytest.raises(InputError, match="duplicate sample ids"):
        MaskStore.create(tmp_path / "d.zarr", layout="x", kinds=["k"], sample_ids=["a", "a"])
    zarr.create_group(tmp_path / "other.zarr")
    with pytest.raises(InputError, match="not a mask store"):
        MaskStore.open(tmp_path / "other.zarr")
    with pytest.raises(InputError, match=r"must be \(H, W\) or \(N, H, W\)"):
        MaskStore.open(tmp_path / "s.zarr", "r+").write_mask("k", "a", np.ones(4, bool))
