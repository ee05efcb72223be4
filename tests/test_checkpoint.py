from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from segrefiner.checkpoint import (
    export_official,
    interpolate_checkpoints,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from segrefiner.errors import CheckpointError, InputError
from segrefiner.io import file_sha256
from segrefiner.model import DenoiseUNet, build_unet
from tests.conftest import ASSETS


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_preset_name_gives_random_model() -> None:
    model = load_model("tiny")
    assert isinstance(model, DenoiseUNet) and not model.training
    with torch.no_grad():
        out = model(torch.zeros(1, 4, 32, 32), torch.tensor([3]))
    assert out.shape == (1, 1, 32, 32)


def test_own_checkpoint_round_trip(tmp_path: Path) -> None:
    model = build_unet("tiny")
    path = tmp_path / "ckpt" / "model.pt"
    save_checkpoint(path, model, meta={"step": 12, "inference": {"model_size": 128}})
    loaded, meta = load_checkpoint(path)
    assert _same_weights(model, loaded)
    assert meta["format"] == "segrefiner" and meta["preset"] == "tiny" and meta["step"] == 12
    assert meta["inference"] == {"model_size": 128}
    assert not list(path.parent.glob(".*tmp*"))  # atomic write left no temporary file


def test_half_precision_files_load_as_float32_without_placeholders(tmp_path: Path) -> None:
    # Files may store their weights in half precision; the network is built without memory
    # (meta device) and takes the file's tensors: none may stay a placeholder or half.
    model = build_unet("tiny", seed=1)
    half = {k: v.half() for k, v in model.state_dict().items()}
    path = tmp_path / "half.pth"
    torch.save({"denoise_model." + k: v for k, v in half.items()}, path)
    loaded, meta = load_checkpoint(path)
    assert meta["preset"] == "tiny"
    tensors = [*loaded.parameters(), *loaded.buffers()]
    assert {(t.device.type, t.dtype) for t in tensors} == {("cpu", torch.float32)}
    assert all(p.requires_grad for p in loaded.parameters()) and not loaded.training
    state = loaded.state_dict()
    assert all(torch.equal(state[k], v.float()) for k, v in half.items())
    with torch.no_grad():
        out = loaded(torch.zeros(1, 4, 32, 32), torch.tensor([2]))
    assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())


def test_official_format_tiny_with_wrappers(tmp_path: Path) -> None:
    model = build_unet("tiny")
    official = tmp_path / "official.pth"
    export_official(official, model)
    raw = torch.load(official, weights_only=True)
    assert all(k.startswith(("denoise_model.", "loss_texture.sobel.")) for k in raw)
    assert raw["loss_texture.sobel.conv_x.weight"].flatten().tolist() == [
        0.25,
        0.0,
        -0.25,
        0.5,
        0.0,
        -0.5,
        0.25,
        0.0,
        -0.25,
    ]
    loaded, meta = load_checkpoint(official)
    assert meta == {"format": "official", "preset": "tiny", "config": model.config}
    assert _same_weights(model, loaded)
    # {'state_dict': ...} wrapper with DDP 'module.' prefixes
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in raw.items()}, "meta": {}}, wrapped)
    assert _same_weights(model, load_model(wrapped))


def test_official_preset_loads_released_format(tmp_path: Path, official_model) -> None:
    """A file laid out like the released checkpoints (bare dict, 455 tensors incl. Sobel) loads
    strictly into the official network and reproduces the golden logits."""
    path = tmp_path / "segrefiner_lr_latest.pth"
    export_official(path, official_model)
    raw = torch.load(path, weights_only=True, mmap=True)  # the names only: nothing read
    names = [
        row.split("\t")[0]
        for row in (ASSETS / "official_state_dict.tsv").read_text().splitlines()[1:]
    ]
    assert sorted(raw) == sorted(names)
    del raw
    model = load_model(path)
    golden = np.load(ASSETS / "unet_golden.npz")
    with torch.no_grad():
        logits = model(torch.from_numpy(golden["x"]), torch.from_numpy(golden["t"]))
    assert np.abs(logits.numpy() - golden["logits"]).max() <= 1e-4


def test_mismatch_lists_missing_unexpected_and_shapes(tmp_path: Path) -> None:
    state = build_unet("tiny").state_dict()
    state.pop("out.2.bias")
    state["extra.weight"] = torch.zeros(1)
    state["out.2.weight"] = torch.zeros(2, 16, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    text = str(err.value)
    assert "1 missing keys: out.2.bias" in text
    assert "1 unexpected keys: extra.weight" in text
    assert "out.2.weight: checkpoint (2, 16, 3, 3)" in text


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"hello, not a checkpoint\n", "not a readable PyTorch checkpoint"),
        (pickle.dumps([1, 2, 3]), "not a"),
    ],
)
def test_not_a_checkpoint_one_line(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "x.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match) as err:
        load_model(path)
    assert "\n" not in str(err.value)


class Payload:  # an arbitrary object that weights_only loading must refuse
    pass


def test_arbitrary_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "obj": Payload()}, path)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint") as err:
        load_model(path)
    assert "\n" not in str(err.value)


def test_missing_file_and_unknown_preset(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="not found"):
        load_model("huge")


def test_interpolated_checkpoint_is_the_weighted_mean(tmp_path: Path) -> None:
    start, end = build_unet("tiny", seed=1), build_unet("tiny", seed=2)
    save_checkpoint(tmp_path / "a.pt", start, meta={"step": 5})
    end_meta = {"step": 9, "inference": {"local_mask": "coarse"}, "score_calibration": {"x": 1}}
    save_checkpoint(tmp_path / "b.pt", end, meta=end_meta)
    interpolate_checkpoints(
        tmp_path / "a.pt", tmp_path / "b.pt", 0.25, tmp_path / "mix.pt", {"note": "x"}
    )
    mixed, meta = load_checkpoint(tmp_path / "mix.pt")
    sa, sb, sm = start.state_dict(), end.state_dict(), mixed.state_dict()
    for key in sm:
        torch.testing.assert_close(sm[key], 0.75 * sa[key] + 0.25 * sb[key], rtol=1e-6, atol=1e-7)
    assert meta["step"] == 9 and meta["inference"] == {"local_mask": "coarse"}
    assert meta["note"] == "x"
    assert "score_calibration" not in meta  # fitted to the end's weights, not the blend's
    record = meta["interpolation"]
    assert (record["start"], record["end"], record["alpha"]) == ("a.pt", "b.pt", 0.25)
    assert record["end_sha256"] == file_sha256(tmp_path / "b.pt")
    # the ends reproduce their files exactly
    interpolate_checkpoints(tmp_path / "a.pt", tmp_path / "b.pt", 1.0, tmp_path / "end.pt")
    assert _same_weights(load_checkpoint(tmp_path / "end.pt")[0], end)


def test_interpolation_refuses_bad_alpha_and_other_networks(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "a.pt", build_unet("tiny"))
    save_checkpoint(tmp_path / "c.pt", build_unet("small"))
    with pytest.raises(InputError, match=r"alpha must be in \[0, 1\], got 1.5"):
        interpolate_checkpoints(tmp_path / "a.pt", tmp_path / "a.pt", 1.5, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="different architectures"):
        interpolate_checkpoints(tmp_path / "a.pt", tmp_path / "c.pt", 0.5, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()
