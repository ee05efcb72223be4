"""The stages' configs, declared once (:mod:`pipelines.settings`): the CLI options, the flows'
parameters and the checks are generated from them. A light module (no torch), so the CLI can
build its options without loading the stage code."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.settings import REQUIRED, check_settings, setting

__all__ = ["COMPILE_MODES", "GALLERY_SORTS", "EvaluateConfig", "RefineConfig"]

# torch.compile's modes; "reduce-overhead" replays CUDA graphs (the padded batches keep their
# shapes fixed), "max-autotune" also benchmarks kernel choices while compiling.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class RefineConfig:
    """How a refinement stage runs (shared by refine-coco and the HR stages).

    Each setting is declared here once, with its help and limits (:mod:`pipelines.settings`):
    the CLI options, the flows' parameters and the check at construction are generated from it.
    Names, types, defaults and order are part of the stages' fingerprints and the flows' cached
    work: add settings, never rename or reorder them.
    """

    checkpoint: str = setting(REQUIRED, "checkpoint file or preset name")
    seed: int = setting(0, "sampling seed", minimum=0)
    device: str = setting("cpu", "cpu, cuda or cuda:N")
    batch_size: int | None = setting(
        None, "network batch; None: the checkpoint's setting (32)", minimum=1
    )
    model_size: int | None = setting(
        None, "network input side; None: the checkpoint's setting (256)", minimum=8
    )
    bf16: bool = setting(
        False, "bfloat16 autocast (meant for CUDA; CPU autocast works too, slowly)"
    )
    channels_last: bool = setting(False, "NHWC memory format (faster convolutions on tensor cores)")
    compile: bool = setting(
        False, "torch.compile the network (the first batches pay the compilation)"
    )
    compile_mode: str | None = setting(
        None,
        "torch.compile mode, with compile: reduce-overhead replays CUDA graphs, max-autotune "
        "also benchmarks kernels; None: torch's default",
        choices=COMPILE_MODES,
    )
    write_store: bool = setting(True, "also keep the refined masks in the zarr store")
    pack_images: int = setting(
        4, "HR: images whose global passes and patches share batches", minimum=1
    )
    guard: float | None = setting(
        None,
        "not official: keep the coarse mask where the refinement score (predicted IoU change) "
        "is below this, e.g. 0; None: off (see segrefiner.inference.score)",
        minimum=-1.0,
        maximum=1.0,
    )

    def __post_init__(self) -> None:
        check_settings(self)  # the declared limits, before any work starts


GALLERY_SORTS = ("changed", "score")


@dataclass(frozen=True)
class EvaluateConfig:
    """How the evaluation stages draw the report (:mod:`pipelines.evaluate_stage`); the scores
    do not depend on it."""

    gallery_size: int = setting(8, "most changed items shown in the gallery", minimum=0)
    gallery_sort: str = setting(
        "changed",
        "gallery order: changed (most changed first) or score (lowest refinement score first: "
        "the refinements least likely to help)",
        choices=GALLERY_SORTS,
    )

    def __post_init__(self) -> None:
        check_settings(self)
