from __future__ import annotations

import numpy as np
import pytest
import torch

from segrefiner.model import PRESETS, UNetConfig, build_unet
from tests.conftest import ASSETS


def _official_tsv() -> dict[str, tuple[int, ...]]:
    rows = (ASSETS / "official_state_dict.tsv").read_text().splitlines()[1:]
    out = {}
    for row in rows:
        name, shape = row.split("\t")
        out[name] = tuple(int(v) for v in shape.strip("()").split(",") if v.strip())
    return out


# The official network is built and run by the golden tests below (official_model).
@pytest.mark.parametrize("preset", sorted(set(PRESETS) - {"official"}))
def test_presets_build_and_run(preset: str) -> None:
    model = build_unet(preset).eval()
    x = torch.randn(2, 4, 64, 64)
    with torch.no_grad():
        out = model(x, torch.tensor([5, 0]))
    assert out.shape == (2, 1, 64, 64)
    assert torch.isfinite(out).all()


def test_documented_parameter_counts() -> None:
    counts = {
        name: sum(p.numel() for p in build_unet(name).parameters()) for name in ("small", "tiny")
    }
    assert counts == {"small": 7_437_537, "tiny": 1_262_737}


def test_official_names_shapes_and_count(official_model) -> None:
    expected = _official_tsv()
    assert len(expected) == 455
    sobel = {k for k in expected if k.startswith("loss_texture.")}
    assert sobel == {"loss_texture.sobel.conv_x.weight", "loss_texture.sobel.conv_y.weight"}
    want = {k.removeprefix("denoise_model."): v for k, v in expected.items() if k not in sobel}
    got = {k: tuple(v.shape) for k, v in official_model.state_dict().items()}
    assert got == want
    assert sum(p.numel() for p in official_model.parameters()) == 118_604_673

    # per-block counts from the spec
    def block(prefix: str) -> int:
        return sum(
            v.numel() for k, v in official_model.state_dict().items() if k.startswith(prefix)
        )

    assert block("input_blocks.13.") == 4_987_392
    assert block("middle_block.") == 11_020_288
    assert block("output_blocks.2.") == 11_280_896
    assert block("out.") == 1_409


def test_golden_fill_sums(golden_weights) -> None:
    sums = {
        "input_blocks.0.0.weight": 4.537341697923694,
        "time_embed.weight": 7.194886162469629,
        "out.2.bias": 0.01770319603383541,
        "middle_block.1.norm.weight": 509.0116937160492,
        "input_blocks.13.1.qkv.weight": -8.202667034746238,
    }
    for name, want in sums.items():
        assert golden_weights[name].double().sum().item() == pytest.approx(want, abs=1e-9)


def test_golden_parity(official_model) -> None:
    golden = np.load(ASSETS / "unet_golden.npz")
    with torch.no_grad():
        logits = official_model(torch.from_numpy(golden["x"]), torch.from_numpy(golden["t"]))
    diff = np.abs(logits.numpy() - golden["logits"]).max()
    assert diff <= 1e-4, diff


def test_attention_layout_matters(official_model) -> None:
    """Swapping the qkv head layout must break parity (the golden test can fail)."""
    golden = np.load(ASSETS / "unet_golden.npz")
    attn = official_model.middle_block[1]
    saved = attn.qkv.weight.detach().clone()
    c = attn.qkv.weight.shape[1]
    # channel-major layout: [q(all heads), k, v] instead of heads-major
    perm = (
        torch.arange(3 * c).view(attn.num_heads, 3, c // attn.num_heads).transpose(0, 1).reshape(-1)
    )
    try:
        with torch.no_grad():
            attn.qkv.weight.copy_(saved[perm])
            logits = official_model(torch.from_numpy(golden["x"]), torch.from_numpy(golden["t"]))
        assert np.abs(logits.numpy() - golden["logits"]).max() > 1e-3
    finally:
        with torch.no_grad():
            attn.qkv.weight.copy_(saved)


def test_input_size_must_be_multiple() -> None:
    model = build_unet("tiny")
    with pytest.raises(ValueError, match="multiple of 32"):
        model(torch.zeros(1, 4, 48, 48), torch.zeros(1, dtype=torch.long))


def test_config_validation_and_round_trip() -> None:
    with pytest.raises(ValueError, match="norm_groups"):
        UNetConfig(model_channels=20)
    cfg = PRESETS["tiny"]
    assert UNetConfig.from_dict(cfg.to_dict()) == cfg


def test_config_from_dict_names_unknown_keys_and_wrong_types() -> None:
    from segrefiner.errors import CheckpointError, InputError
    from segrefiner.inference import InferenceConfig

    values = PRESETS["tiny"].to_dict()
    with pytest.raises(CheckpointError, match=r"UNet config: unknown keys \['widht'\]"):
        UNetConfig.from_dict({**values, "widht": 3})
    with pytest.raises(CheckpointError, match=r"UNet config\.model_channels: expected an integer"):
        UNetConfig.from_dict({**values, "model_channels": "32"})
    assert InferenceConfig.from_dict({"model_size": 128}) == InferenceConfig(model_size=128)
    with pytest.raises(InputError, match=r"inference settings: unknown keys \['steps'\]"):
        InferenceConfig.from_dict({"steps": 6})
    with pytest.raises(InputError, match=r"inference settings\.batch_size: expected an integer"):
        InferenceConfig.from_dict({"batch_size": 2.5})
