"""resolve_checkpoint / load_for_inference: the one place that decides what a checkpoint
argument names, and the Refiner, the stages and the command line all going through it."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import pytest
import torch

from segrefiner.checkpoint import (
    CHECKPOINTS_ENV,
    load_for_inference,
    resolve_checkpoint,
    save_checkpoint,
)
from segrefiner.errors import CheckpointError, CheckpointNotFoundError, InputError
from segrefiner.inference import InferenceConfig
from segrefiner.model import PRESET_SEED, build_unet


def _saved(path: Path, **meta) -> Path:
    save_checkpoint(path, build_unet("tiny", seed=3), meta=meta)
    return path


def test_preset_file_default_and_missing(tmp_path, monkeypatch) -> None:
    preset = resolve_checkpoint("tiny")
    assert (preset.kind, preset.path, preset.ident, preset.sha256) == (
        "preset", "tiny", "preset:tiny", None,
    )  # fmt: skip

    path = _saved(tmp_path / "m.pt")
    source = resolve_checkpoint(str(path))
    want = hashlib.sha256(path.read_bytes()).hexdigest()
    assert source.kind == "file" and source.path == str(path.resolve())
    assert source.ident == f"sha256:{want}" and source.sha256 == want and not source.default
    assert resolve_checkpoint(source) is source

    monkeypatch.setenv(CHECKPOINTS_ENV, str(tmp_path))
    (tmp_path / "segrefiner_lr_real.pt").write_bytes(path.read_bytes())
    default = resolve_checkpoint(None, "lr")
    assert default.default and default.ident == source.ident
    with pytest.raises(CheckpointError, match="no shipped HR model"):
        resolve_checkpoint(None, "hr")
    with pytest.raises(InputError, match="no checkpoint given"):
        resolve_checkpoint(None)

    with pytest.raises(CheckpointNotFoundError, match=r"nope\.pt: checkpoint file not found") as e:
        resolve_checkpoint(tmp_path / "nope.pt")
    assert isinstance(e.value, FileNotFoundError) and "tiny" in str(e.value)
    with pytest.raises(InputError, match="got 3"):
        resolve_checkpoint(3)  # type: ignore[arg-type]


def test_a_file_named_like_a_preset_wins(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _saved(tmp_path / "tiny")
    source = resolve_checkpoint("tiny")
    assert source.kind == "file" and source.path == str(tmp_path / "tiny")


def test_the_hash_follows_the_file_content(tmp_path) -> None:
    path = _saved(tmp_path / "m.pt")
    first = resolve_checkpoint(path).ident
    _saved(path, note="changed")
    stat = path.stat()  # same second on coarse clocks: move mtime so the cache key changes
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert resolve_checkpoint(path).ident != first


def test_load_for_inference_brings_settings_and_calibrations(tmp_path) -> None:
    saved = InferenceConfig(model_size=128)
    path = _saved(tmp_path / "m.pt", inference=dataclasses.asdict(saved))
    loaded = load_for_inference(path)
    assert loaded.inference == saved and loaded.source == resolve_checkpoint(path)
    assert not loaded.model.training and set(loaded.calibrations) == {"instance", "semantic"}
    preset = load_for_inference("tiny")
    reference = build_unet("tiny", seed=PRESET_SEED).state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in preset.model.state_dict().items())
    assert preset.inference == InferenceConfig()


def test_refiner_and_stage_cache_share_the_identity(tmp_path) -> None:
    from pipelines.models import checkpoint_id, load_cached_model
    from segrefiner.refiner import Refiner

    path = _saved(tmp_path / "m.pt")
    refiner = Refiner.from_checkpoint(str(path), seed=0)
    assert refiner.source == resolve_checkpoint(path)
    assert checkpoint_id(path) == refiner.source.ident
    model, config, _ = load_cached_model(str(path), "cpu")
    assert model is load_cached_model(str(path), "cpu")[0] and config == refiner.config
