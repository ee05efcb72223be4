from __future__ import annotations

import numpy as np
import pytest
import torch

from segrefiner.diffusion import DiscreteDiffusion, sample_loop
from segrefiner.inference import InferenceConfig, item_generator
from segrefiner.inference.instance import finish_instances, prepare_instances, refine_instances
from segrefiner.inference.packing import CropQueue
from tests.conftest import blob_mask

CFG = InferenceConfig(model_size=32, area_thr=50)


def _model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    # per item, depends on image, mask and step: a batch-independent stand-in for the network
    return x[:, :1] + 0.5 * x[:, 3:4] - 0.25 + 0.05 * t.view(-1, 1, 1, 1)


def _images(counts: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    out = []
    for k, n in enumerate(counts):
        image = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
        masks = np.stack(
            [blob_mask((60, 80), (20 + 9 * j, 30), 12, seed=k * 10 + j) for j in range(n)]
            + [np.pad(np.ones((3, 3), bool), ((0, 57), (0, 77)))]  # tiny: passed through
        )
        out.append((image, masks))
    return out


def _gens(k: int, prepared) -> list[torch.Generator]:
    return [item_generator(9, "img", k, int(i)) for i in prepared.todo]


@pytest.mark.parametrize("batch", [1, 3, 7])
def test_full_batches_across_images_match_one_image_at_a_time(
    batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import segrefiner.inference.instance as instance

    diffusion = DiscreteDiffusion()
    images = _images([2, 0, 5, 1, 3])
    sizes: list[int] = []  # the batches the queue hands the sampling loop

    def spy(model, diffusion, image, *args, **kwargs):
        sizes.append(image.shape[0])
        return sample_loop(model, diffusion, image, *args, **kwargs)

    monkeypatch.setattr(instance, "sample_loop", spy)
    done: list[tuple[int, np.ndarray]] = []
    queue = CropQueue(
        _model,
        diffusion,
        batch,
        on_done=lambda k, prepared, res: done.append((k, finish_instances(prepared, res).masks)),
        on_failed=lambda *a: pytest.fail(f"unexpected failure {a}"),
    )
    for k, (image, masks) in enumerate(images):
        prepared = prepare_instances(image, masks, CFG)
        queue.add(k, prepared, _gens(k, prepared))
    queue.flush()
    assert [k for k, _ in done] == list(range(len(images)))  # handed back in order
    total = 2 + 5 + 1 + 3
    assert sum(sizes) == total and all(s == batch for s in sizes[:-1])  # full but the last
    monkeypatch.undo()
    for k, (image, masks) in enumerate(images):
        gens = [item_generator(9, "img", k, i) for i in range(len(masks))]
        alone = refine_instances(_model, diffusion, image, masks, gens, CFG).masks
        assert (alone != masks).any() or k == 1  # the network changed something
        assert np.array_equal(done[k][1], alone), k


def test_out_of_memory_halves_the_batch_then_fails_only_the_image_that_does_not_fit() -> None:
    diffusion = DiscreteDiffusion()
    images = _images([3, 4, 2])
    victim = prepare_instances(*images[1], CFG).crops[2]  # image 1's third crop never fits

    def tight(x, t):
        if x.shape[0] > 2 or any(torch.equal(c, victim) for c in x[:, :3]):
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return _model(x, t)

    done, failed = {}, {}
    queue = CropQueue(
        tight,
        diffusion,
        8,
        on_done=lambda k, prepared, res: done.__setitem__(k, finish_instances(prepared, res).masks),
        on_failed=lambda k, prepared, reason: failed.__setitem__(k, reason),
    )
    for k, (image, masks) in enumerate(images):
        prepared = prepare_instances(image, masks, CFG)
        queue.add(k, prepared, _gens(k, prepared))
    queue.flush()
    assert queue.batch_size == 1
    assert failed == {1: "out of memory at batch size 1"}
    for k in (0, 2):
        image, masks = images[k]
        gens = [item_generator(9, "img", k, i) for i in range(len(masks))]
        alone = refine_instances(_model, diffusion, image, masks, gens, CFG).masks
        assert np.array_equal(done[k], alone)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile imports torch.jit
def test_compiled_setup_pads_batches() -> None:
    from pipelines.refine import RefineConfig, inference_setup
    from segrefiner.inference.runtime import AutocastDenoiser, PaddedBatches

    # "meta" stands for any device that runs batches whole (CUDA); nothing runs here
    denoiser = inference_setup(
        RefineConfig("tiny", compile=True, bf16=True, batch_size=16, pack_images=2, device="meta")
    ).denoiser
    assert isinstance(denoiser, AutocastDenoiser)
    assert isinstance(denoiser.model, PaddedBatches) and denoiser.model.sizes == [2, 16]
    # the CPU runs one item per network call: nothing to pad
    cpu = inference_setup(RefineConfig("tiny", compile=True, batch_size=16, pack_images=2))
    assert not isinstance(cpu.denoiser, PaddedBatches)


def test_queue_rejects_bad_arguments() -> None:
    diffusion = DiscreteDiffusion()
    with pytest.raises(ValueError, match="at least 1"):
        CropQueue(_model, diffusion, 0, on_done=print, on_failed=print)
    queue = CropQueue(_model, diffusion, 4, on_done=print, on_failed=print)
    image, masks = _images([2])[0]
    prepared = prepare_instances(image, masks, CFG)
    with pytest.raises(ValueError, match="1 generators for 2 crops"):
        queue.add(0, prepared, _gens(0, prepared)[:1])


def test_unknown_compile_mode_is_an_input_error() -> None:
    from pipelines.config import RefineConfig
    from segrefiner.errors import InputError

    # refused by the config itself, before any model is loaded
    with pytest.raises(InputError, match=r"compile_mode: must be one of .*, got 'fastest'"):
        RefineConfig("tiny", compile=True, compile_mode="fastest")
