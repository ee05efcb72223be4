"""The flows' refine parameters are the stage config's settings, declared with the same names
and defaults, so a new setting cannot be forgotten on one side."""

from __future__ import annotations

import dataclasses

from flows.params import RefineParams
from pipelines.refine import COMPILE_MODES, RefineConfig


def test_refine_params_mirror_the_stage_config() -> None:
    stage = {f.name: f.default for f in dataclasses.fields(RefineConfig) if f.name != "checkpoint"}
    params = RefineParams.model_fields
    assert set(stage) <= set(params)
    assert {name: params[name].default for name in stage} == stage


def test_every_setting_reaches_the_stage_config() -> None:
    changed = {
        "seed": 3, "device": "cuda:1", "batch_size": 7, "model_size": 128, "bf16": True,
        "channels_last": True, "compile": True, "compile_mode": COMPILE_MODES[-1],
        "write_store": False, "pack_images": 2, "guard": -0.01,
    }  # fmt: skip
    assert set(changed) == {f.name for f in dataclasses.fields(RefineConfig)} - {"checkpoint"}
    config = RefineParams(**changed).config("ckpt.pt")
    assert config == RefineConfig(checkpoint="ckpt.pt", **changed)
