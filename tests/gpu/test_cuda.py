"""CUDA checks of the inference paths (skipped without a GPU; `benchmarks/gpu_check.sh` runs
them first on a GPU machine). The noise comes from CPU generators on every device, so CUDA
results match CPU results up to floating-point differences near the 0.5 threshold."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import blob_mask

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

DEMO_CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "demo_lr_tiny.pt"


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _masks(path: Path) -> list[np.ndarray]:
    from segrefiner import rle

    return [
        rle.decode(e["segmentation"], *e["segmentation"]["size"])
        for e in json.loads(path.read_text())
    ]


def test_instance_path_on_cuda_matches_cpu(photo) -> None:
    from segrefiner import Refiner

    masks = np.stack(
        [blob_mask(photo.shape[:2], (200, 190), 80), blob_mask(photo.shape[:2], (90, 100), 40)]
    )
    cpu = Refiner.from_checkpoint(str(DEMO_CHECKPOINT), seed=0).refine_instances(photo, masks)
    gpu = Refiner.from_checkpoint(str(DEMO_CHECKPOINT), device="cuda", seed=0).refine_instances(
        photo, masks
    )
    assert all(_iou(a, b) > 0.99 for a, b in zip(cpu, gpu, strict=True))


def test_semantic_group_on_cuda_matches_one_at_a_time(photo) -> None:
    from segrefiner.diffusion import DiscreteDiffusion
    from segrefiner.inference import InferenceConfig, item_generator
    from segrefiner.inference.semantic import SemanticItem, refine_semantic_group
    from segrefiner.model import build_unet

    torch.manual_seed(0)
    model = build_unet("tiny").eval().cuda()
    cfg = InferenceConfig(model_size=64, patch_size=64, batch_size=3)
    inputs = [
        (photo, blob_mask(photo.shape[:2], (200, 190), 100)),
        (photo[:200, :300].copy(), blob_mask((200, 300), (150, 100), 60, seed=2)),
    ]

    def items():
        return [SemanticItem(i, m, item_generator(7, k)) for k, (i, m) in enumerate(inputs)]

    diffusion = DiscreteDiffusion()
    packed = refine_semantic_group(model, diffusion, items(), cfg, "cuda")
    alone = [refine_semantic_group(model, diffusion, [it], cfg, "cuda")[0] for it in items()]
    assert all(_iou(a.mask, b.mask) > 0.999 for a, b in zip(packed, alone, strict=True))


@pytest.mark.parametrize("options", [{"bf16": True}, {"compile": True, "channels_last": True}])
def test_fast_paths_agree_with_float32_on_the_demo_set(demo_ci: Path, tmp_path, options) -> None:
    """bfloat16 autocast, channels_last and torch.compile (with padded batches) against
    float32 eager on CUDA, through the refine-coco stage."""
    from pipelines.config import RefineConfig
    from pipelines.refine_coco import refine_coco

    def run(name: str, **extra) -> list[np.ndarray]:
        out = tmp_path / f"{name}.json"
        config = RefineConfig(str(DEMO_CHECKPOINT), device="cuda", write_store=False, **extra)
        refine_coco(
            demo_ci / "results/segmentor_val.segm.json",
            demo_ci / "coco/annotations/instances_val2017.json",
            demo_ci / "coco/val2017",
            out,
            config,
        )
        return _masks(out)

    ious = [_iou(a, b) for a, b in zip(run("fp32"), run("fast", **options), strict=True)]
    assert np.mean(ious) >= 0.99, (np.mean(ious), np.min(ious))
