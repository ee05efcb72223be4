"""Each refinement setting is declared once (:mod:`pipelines.settings`): the CLI options, the
flows' parameters and the checks are generated from RefineConfig's fields, so they agree, and a
new setting reaches every entry point from its one declaration."""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing

import pytest
from pydantic import BaseModel, ValidationError, create_model

from flows.params import RefineParams, ReportParams
from pipelines.config import RefineConfig
from pipelines.settings import (
    REQUIRED,
    add_options,
    check_settings,
    from_args,
    pydantic_fields,
    setting,
    settings_of,
)
from segrefiner.cli import build_parser, main
from segrefiner.errors import InputError

# (setting, a value it refuses): one per kind of limit
BAD = [
    ("seed", -1),
    ("batch_size", 0),
    ("model_size", 4),
    ("pack_images", 0),
    ("compile_mode", "fastest"),
    ("guard", 1.5),
    ("guard", -2),
]


def _parser(cls: type = RefineConfig, **kwargs: typing.Any) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_options(parser, cls, **kwargs)
    return parser


def test_generated_options_parse_to_the_python_config() -> None:
    argv = [
        "--checkpoint", "tiny", "--seed", "3", "--device", "cuda:1", "--batch-size", "8",
        "--model-size", "64", "--bf16", "--channels-last", "--compile",
        "--compile-mode", "reduce-overhead", "--no-write-store", "--pack-images", "2",
        "--guard", "-0.01",
    ]  # fmt: skip
    expected = RefineConfig(
        "tiny", seed=3, device="cuda:1", batch_size=8, model_size=64, bf16=True,
        channels_last=True, compile=True, compile_mode="reduce-overhead", write_store=False,
        pack_images=2, guard=-0.01,
    )  # fmt: skip
    assert from_args(RefineConfig, _parser().parse_args(argv)) == expected
    # nothing given: the declared defaults, as the Python API has them
    assert from_args(RefineConfig, _parser().parse_args(["--checkpoint", "x"])) == RefineConfig("x")


def test_the_cli_builds_the_same_config() -> None:
    from pipelines.cli import _config

    argv = ["refine-dataset", "--kind", "big", "--data-root", "d", "-o", "o", "--checkpoint"]
    args = build_parser().parse_args([*argv, "tiny", "--batch-size", "8", "--no-write-store"])
    assert _config(args) == RefineConfig("tiny", batch_size=8, write_store=False)
    # --pack-images on refine-coco too; --checkpoint is required on both commands
    argv = ["refine-coco", "--results", "r.json", "--images", "i", "-o", "o.json"]
    args = build_parser().parse_args([*argv, "--checkpoint", "tiny", "--pack-images", "2"])
    assert _config(args).pack_images == 2
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)


def test_help_shows_the_declaration() -> None:
    help = " ".join(_parser().format_help().split())  # unwrapped
    assert "--write-store, --no-write-store" in help
    assert "HR: images whose global passes and patches share batches (default: 4)" in help
    parser = _parser(exclude={"checkpoint", "guard"})
    parser.set_defaults(batch_size=32)  # a caller's own default is the one shown
    assert "(default: 32)" in parser.format_help()
    assert "--guard" not in parser.format_help()
    assert "--checkpoint" not in parser.format_help()


@pytest.mark.parametrize(("name", "value"), BAD)
def test_the_config_refuses_a_bad_value(name: str, value: typing.Any) -> None:
    with pytest.raises(InputError, match=rf"^{name}: .*got {value!r}$"):
        RefineConfig("tiny", **{name: value})


def test_the_config_refuses_values_that_are_not_numbers() -> None:
    with pytest.raises(InputError, match="guard: must be in"):
        RefineConfig("tiny", guard=math.nan)
    with pytest.raises(InputError, match="guard: expected a number, got True"):
        RefineConfig("tiny", guard=True)
    with pytest.raises(InputError, match="batch_size: expected a number, got '8'"):
        RefineConfig("tiny", batch_size="8")  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "value"), BAD)
def test_the_cli_refuses_a_bad_value(name: str, value: typing.Any, capsys) -> None:
    flag = "--" + name.replace("_", "-")
    argv = ["refine-dataset", "--kind", "big", "--data-root", "d", "-o", "o"]
    with pytest.raises(SystemExit) as refused:  # argparse: usage and one line, before any work
        main([*argv, "--checkpoint", "tiny", flag, str(value)])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: " in err and str(value) in err


@pytest.mark.parametrize(("name", "value"), BAD)
def test_the_flow_parameters_refuse_a_bad_value(name: str, value: typing.Any) -> None:
    with pytest.raises(ValidationError) as refused:
        RefineParams(**{name: value})
    assert name in str(refused.value) and str(value) in str(refused.value)


def test_refine_params_follow_the_declaration() -> None:
    fields = RefineParams.model_fields
    declared = [d for d in settings_of(RefineConfig) if d.name != "checkpoint"]
    assert list(fields) == ["checkpoint", "fallback_checkpoint", *(d.name for d in declared)]
    for d in declared:
        assert fields[d.name].default == d.default, d.name
        assert fields[d.name].description == d.spec.help, d.name
        assert fields[d.name].is_required() is False


def test_report_params_follow_the_evaluation_declaration() -> None:
    from pipelines.config import EvaluateConfig

    fields = ReportParams.model_fields
    declared = settings_of(EvaluateConfig)
    assert list(fields) == ["track", *(d.name for d in declared)]
    for d in declared:
        assert fields[d.name].default == d.default and fields[d.name].description == d.spec.help
    report = ReportParams(gallery_size=3, gallery_sort="score")
    assert EvaluateConfig(**report.model_dump(exclude={"track"})) == EvaluateConfig(3, "score")
    with pytest.raises(ValidationError):
        ReportParams(gallery_sort="random")
    with pytest.raises(InputError, match="gallery_size: must be >= 0"):
        EvaluateConfig(gallery_size=-1)


# --------------------------------------------------------------------------- a new setting


@dataclasses.dataclass(frozen=True)
class _Toy:
    """A settings dataclass as RefineConfig is one, with a setting RefineConfig lacks."""

    name: str = setting(REQUIRED, "what it is called")
    width: int = setting(3, "how wide", minimum=1)
    colour: str | None = setting(None, "its colour; None: none", choices=("red", "blue"))

    def __post_init__(self) -> None:
        check_settings(self)


def test_a_new_setting_reaches_the_parser_and_the_flow_parameters() -> None:
    # One field above is all it takes (the "two files" being the declaration and its use).
    args = _parser(_Toy).parse_args(["--name", "a", "--colour", "red"])
    assert from_args(_Toy, args) == _Toy("a", colour="red")
    assert from_args(_Toy, args, width=5) == _Toy("a", width=5, colour="red")  # overrides win
    with pytest.raises(argparse.ArgumentError, match=r"must be one of \[.red., .blue.\]"):
        _parser(_Toy).parse_args(["--name", "a", "--colour", "green"])

    model = create_model("ToyParams", __base__=BaseModel, **pydantic_fields(_Toy))
    assert list(model.model_fields) == ["name", "width", "colour"]
    assert model.model_fields["name"].is_required()
    colour = model.model_fields["colour"]
    assert colour.description == "its colour; None: none" and colour.default is None
    assert model(name="a", colour="blue").colour == "blue"
    with pytest.raises(ValidationError):
        model(name="a", colour="green")
    with pytest.raises(ValidationError):
        model(name="a", width=0)
    with pytest.raises(InputError, match="width: must be >= 1, got 0"):
        _Toy("a", width=0)


def test_every_field_must_be_declared() -> None:
    @dataclasses.dataclass
    class Undeclared:
        width: int = 3

    with pytest.raises(TypeError, match=r"Undeclared\.width: not declared with setting"):
        settings_of(Undeclared)
