"""The flows' refine parameters are generated from the stage config's declaration
(:mod:`pipelines.settings`), so a new setting cannot be forgotten on one side; they must still
work as Prefect parameters (nested in the flows' models, in the deployment forms, shipped to
workers)."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
from prefect.utilities.callables import parameter_schema
from pydantic import ValidationError

from flows.params import DEMO_CHECKPOINT, RefineCocoParams, RefineParams
from pipelines.config import COMPILE_MODES, RefineConfig


def test_refine_params_mirror_the_stage_config() -> None:
    stage = {f.name: f.default for f in dataclasses.fields(RefineConfig) if f.name != "checkpoint"}
    params = RefineParams.model_fields
    assert set(stage) <= set(params)
    assert {name: params[name].default for name in stage} == stage
    # the flows' own: a default checkpoint, and a file for when the registry has none
    assert list(params)[:2] == ["checkpoint", "fallback_checkpoint"]
    assert params["checkpoint"].default == DEMO_CHECKPOINT
    assert params["checkpoint"].description == "checkpoint file, preset, or models:/<name>@<alias>"


def test_every_setting_reaches_the_stage_config() -> None:
    changed = {
        "seed": 3, "device": "cuda:1", "batch_size": 7, "model_size": 128, "bf16": True,
        "channels_last": True, "compile": True, "compile_mode": COMPILE_MODES[-1],
        "write_store": False, "pack_images": 2, "guard": -0.01,
    }  # fmt: skip
    assert set(changed) == {f.name for f in dataclasses.fields(RefineConfig)} - {"checkpoint"}
    config = RefineParams(**changed).config("ckpt.pt")
    assert config == RefineConfig(checkpoint="ckpt.pt", **changed)


def test_refine_params_are_frozen_strict_and_picklable() -> None:
    params = RefineParams(checkpoint="tiny", model_size=64, batch_size=8)
    assert pickle.loads(pickle.dumps(params)) == params  # Dask and Prefect ship them
    with pytest.raises(ValidationError):
        params.seed = 1  # type: ignore[misc]
    with pytest.raises(ValidationError, match="modelsize"):
        RefineParams(modelsize=64)  # a misspelt key is an error, never ignored


def test_refine_params_nest_in_the_flow_parameters() -> None:
    params = RefineCocoParams.model_validate({"refine": {"checkpoint": "tiny", "model_size": 64}})
    assert isinstance(params.refine, RefineParams)
    assert params.refine.config("tiny").model_size == 64
    with pytest.raises(ValidationError, match=r"refine\.pack_images"):
        RefineCocoParams.model_validate({"refine": {"pack_images": 0}})


def test_flow_parameter_schemas_build() -> None:
    from flows.refine import refine_big, refine_coco, refine_dis

    for flow in (refine_coco, refine_big, refine_dis):
        schema = parameter_schema(flow.fn).model_dump()
        refine = schema["definitions"]["RefineParams"]["properties"]
        assert refine["pack_images"]["minimum"] == 1
        assert refine["guard"]["anyOf"][0] == {"type": "number", "minimum": -1.0, "maximum": 1.0}
        assert refine["compile_mode"]["anyOf"][0]["enum"] == list(COMPILE_MODES)
