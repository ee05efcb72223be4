"""Inbox drops, the ledger and content keys: identity by content, not by path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.fingerprint import content_key, folder_sha256
from pipelines.inbox import Ledger, drop_records, find_drops
from segrefiner.errors import InputError


def _mask(path: Path, value: int = 255) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)


def test_drops_are_identified_by_content(tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "coco/a").mkdir(parents=True)
    (inbox / "coco/a/r.json").write_text("[]")
    (inbox / "coco/b").mkdir(parents=True)
    (inbox / "coco/b/renamed.json").write_text("[]")
    (inbox / "coco/b/.partial.json").write_text("[1")
    _mask(inbox / "big/deeplab/x_seg.png")
    _mask(inbox / "dis/isnet/DIS-VD/y.png")
    drops = find_drops(inbox)
    assert [d.label for d in drops] == [
        "coco/a/r.json", "coco/b/renamed.json", "big/deeplab", "dis/isnet",
    ]  # fmt: skip
    assert drops[0].content == drops[1].content
    assert find_drops(tmp_path / "absent") == []


def test_folder_hash_follows_names_and_bytes(tmp_path):
    _mask(tmp_path / "a/DIS-VD/y.png")
    _mask(tmp_path / "b/DIS-VD/y.png")
    assert folder_sha256(tmp_path / "a") == folder_sha256(tmp_path / "b")
    _mask(tmp_path / "b/DIS-VD/y.png", value=0)
    assert folder_sha256(tmp_path / "a") != folder_sha256(tmp_path / "b")


def test_content_key_ignores_paths_not_bytes(tmp_path):
    (tmp_path / "one.json").write_text("[1]")
    (tmp_path / "two.json").write_text("[1]")
    key = content_key(files={"results": tmp_path / "one.json"}, checkpoint="tiny", config={"a": 1})
    assert key == content_key(files={"results": tmp_path / "two.json"}, checkpoint="tiny",
                              config={"a": 1})  # fmt: skip
    (tmp_path / "two.json").write_text("[2]")
    assert key != content_key(files={"results": tmp_path / "two.json"}, checkpoint="tiny",
                              config={"a": 1})  # fmt: skip
    assert key != content_key(files={"results": tmp_path / "one.json"}, checkpoint="small",
                              config={"a": 1})  # fmt: skip


def test_ledger_round_trip(tmp_path):
    (tmp_path / "inbox/coco/s").mkdir(parents=True)
    (tmp_path / "inbox/coco/s/r.json").write_text("[]")
    drop = find_drops(tmp_path / "inbox")[0]
    ledger = Ledger(tmp_path / "ledger.json")
    ledger.record(drop, "sha256:abc", "failed", error="bad")
    again = Ledger(tmp_path / "ledger.json")
    assert again.get(drop.content, "sha256:abc")["error"] == "bad"
    assert again.get(drop.content, "sha256:other") is None
    assert json.loads((tmp_path / "ledger.json").read_text())["version"] == 1
    # a failure is evaluated again only when failures are retried; a success never is
    assert again.done(drop.content, "sha256:abc")["status"] == "failed"
    assert again.done(drop.content, "sha256:abc", retry_failed=True) is None
    assert again.done(drop.content, "sha256:other") is None
    again.record(drop, "sha256:abc", "ok")
    assert again.done(drop.content, "sha256:abc", retry_failed=True)["status"] == "ok"


def test_mask_drop_without_dataset_images_is_malformed(tmp_path):
    _mask(tmp_path / "inbox/big/seg/missing_seg.png")
    (tmp_path / "data/big/test").mkdir(parents=True)
    drop = find_drops(tmp_path / "inbox")[0]
    with pytest.raises(InputError, match=r"missing_seg\.png"):
        drop_records(drop, tmp_path / "data")


def test_run_folder_is_named_by_the_key_and_latest_follows(tmp_path):
    from pipelines.fingerprint import run_folder

    first = run_folder(tmp_path, "a" * 64)
    second = run_folder(tmp_path, "b" * 64)
    assert first == tmp_path / ("a" * 16) and second == tmp_path / ("b" * 16)
    assert first.is_dir() and second.is_dir()
    assert (tmp_path / "latest").resolve() == second.resolve()
    assert run_folder(tmp_path, "a" * 64) == first and (tmp_path / "latest").resolve() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a" * 16, "b" * 16, "latest"]
