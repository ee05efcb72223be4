from __future__ import annotations

import numpy as np
import pytest
import torch

from segrefiner.diffusion import DiscreteDiffusion, sample_loop, uniform_noise


def test_schedule_values() -> None:
    d = DiscreteDiffusion()
    np.testing.assert_allclose(d.fine_prob, [0.8, 0.64, 0.48, 0.32, 0.16, 0.0], atol=1e-15)
    np.testing.assert_allclose(d.fine_prob_prev, [1.0, 0.8, 0.64, 0.48, 0.32, 0.16], atol=1e-15)
    assert d.inference_steps == [5, 4, 3, 2, 1, 0]


def test_transition_and_accumulated_fine_prob_goldens() -> None:
    d = DiscreteDiffusion()
    one = torch.ones(1, dtype=torch.float64)
    expected_p = [0.16, 0.190476, 0.235294, 0.307692, 0.444444, 1.0]
    expected_acc = [0.16, 0.32, 0.48, 0.64, 0.80, 1.0]
    acc = torch.zeros(1, dtype=torch.float64)
    for t, p_want, acc_want in zip(d.inference_steps, expected_p, expected_acc, strict=True):
        p = d.transition_prob(one, t)
        acc = acc + (1 - acc) * p
        assert p.item() == pytest.approx(p_want, abs=1e-6)
        assert acc.item() == pytest.approx(acc_want, abs=1e-9)
    # zero confidence never moves a pixel
    assert d.transition_prob(torch.zeros(1), 3).item() == 0.0


def test_q_sample_statistics_and_endpoints() -> None:
    d = DiscreteDiffusion()
    fine = torch.ones(6, 1, 128, 128)
    coarse = torch.zeros(6, 1, 128, 128)
    t = torch.arange(6)
    gens = [torch.Generator().manual_seed(i) for i in range(6)]
    x = d.q_sample(fine, coarse, t, gens)
    frac = x.mean(dim=(1, 2, 3)).numpy()
    np.testing.assert_allclose(frac, d.fine_prob, atol=0.01)
    assert frac[5] == 0.0  # t = 5 is the coarse mask itself
    # agreeing pixels are never changed
    same = torch.ones(6, 1, 8, 8)
    assert torch.equal(d.q_sample(same, same, t), same)


def test_per_item_noise_is_batch_independent() -> None:
    a = uniform_noise((3, 1, 4, 4), [torch.Generator().manual_seed(s) for s in (1, 2, 3)], "cpu")
    b = uniform_noise((1, 1, 4, 4), [torch.Generator().manual_seed(2)], "cpu")
    assert torch.equal(a[1], b[0])
    with pytest.raises(ValueError, match="generators"):
        uniform_noise((2, 1, 4, 4), [torch.Generator()], "cpu")


def test_reverse_step_commit_and_revert() -> None:
    d = DiscreteDiffusion()
    logits = torch.full((1, 1, 2, 2), 30.0)  # confident foreground
    coarse = torch.zeros(1, 1, 2, 2)
    acc = torch.zeros(1, 1, 2, 2)
    x, acc = d.reverse_step(logits, 5, coarse, acc, torch.tensor([[[[0.0, 0.5], [0.1, 0.9]]]]))
    assert acc.flatten().tolist() == pytest.approx([0.16] * 4)
    # only pixels whose noise is below the accumulated fine probability commit to the prediction
    assert x.flatten().tolist() == [1.0, 0.0, 1.0, 0.0]
    prob, _ = d.reverse_step(logits, 0, coarse, acc, None)
    assert torch.allclose(prob, torch.sigmoid(logits))


def test_sample_loop_with_a_known_model() -> None:
    """A model that predicts a fixed mask: the loop must return its probabilities, and the
    accumulated fine probability reaches 1 with full confidence."""
    target = torch.zeros(2, 1, 32, 32)
    target[:, :, 8:24, 8:24] = 1
    seen_t: list[int] = []

    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert x.shape == (1, 4, 32, 32)  # the CPU: one item per call
        seen_t.append(int(t[0]))
        return (target[:1] - 0.5) * 100

    d = DiscreteDiffusion()
    prob, acc = sample_loop(
        model, d, torch.zeros(2, 3, 32, 32), torch.zeros(2, 1, 32, 32), d.inference_steps
    )
    assert seen_t == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0]
    assert torch.equal(prob >= 0.5, target.bool())
    assert torch.allclose(acc, torch.ones_like(acc))


def test_noise_drawn_up_front_equals_step_by_step_noise() -> None:
    """sample_loop draws every step's noise at once; each item's numbers, and so the masks,
    must be those of drawing step by step from its generator."""
    from segrefiner.diffusion import noise_for_steps, uniform_noise

    def gens():
        return [torch.Generator().manual_seed(s) for s in (3, 4, 5)]

    shape = (3, 1, 37, 29)
    step_by_step = gens()
    expected = torch.stack([uniform_noise(shape, step_by_step, "cpu") for _ in range(5)])
    assert torch.equal(noise_for_steps(shape, 5, gens(), "cpu"), expected)

    # the whole loop against a reference loop that draws per step
    diffusion = DiscreteDiffusion()
    torch.manual_seed(0)
    weight = torch.randn(4)

    def model(x, t):
        return (x * weight.view(1, 4, 1, 1)).sum(1, keepdim=True) + 0.1 * t.view(-1, 1, 1, 1)

    image = torch.randn(3, 3, 37, 29)
    coarse = (torch.rand(3, 1, 37, 29) > 0.5).float()
    got, got_acc = sample_loop(model, diffusion, image, coarse, diffusion.inference_steps, gens())
    x, acc, ref_gens = coarse, torch.zeros_like(coarse), gens()
    for i, t in enumerate(diffusion.inference_steps):
        logits = model(torch.cat([image, x], 1), torch.full((3,), t))
        last = i == len(diffusion.inference_steps) - 1
        noise = None if last else uniform_noise(x.shape, ref_gens, "cpu")
        x, acc = diffusion.reverse_step(logits, t, coarse, acc, noise)
    assert torch.equal(got, x) and torch.equal(got_acc, acc)


def test_padded_batches_show_few_shapes_and_keep_outputs() -> None:
    from segrefiner.inference.runtime import PaddedBatches

    seen = []

    def model(x, t):
        seen.append(x.shape[0])
        return x[:, :1] * 2 + t.view(-1, 1, 1, 1)

    padded = PaddedBatches(model, (4, 8))
    for n in (1, 3, 4, 5, 8, 11):
        x, t = torch.randn(n, 4, 6, 6), torch.randint(0, 6, (n,))
        out = padded(x, t)
        assert out.shape == (n, 1, 6, 6) and torch.equal(out, x[:, :1] * 2 + t.view(-1, 1, 1, 1))
    assert seen == [4, 4, 4, 8, 8, 11]
    with pytest.raises(ValueError, match="positive"):
        PaddedBatches(model, (0, 4))


def test_noise_for_steps_needs_one_generator_per_item() -> None:
    from segrefiner.diffusion import noise_for_steps

    with pytest.raises(ValueError, match="2 generators for a batch of 3"):
        noise_for_steps((3, 1, 4, 4), 5, [torch.Generator(), torch.Generator()], "cpu")


def test_the_cpu_runs_the_network_one_item_per_call() -> None:
    """CPU kernels block by batch size, so a batched call could move an item's logits with its
    companions; on the CPU every call sees one item, and each item's result is its own."""
    from segrefiner.diffusion import sample_loop

    seen: list[int] = []

    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        # a logit that depends on the batch size: only a one-item call gives the same answer
        return 4.0 * (x[:, :1] - x[:, 3:4]) + 0.01 * x.shape[0]

    image = torch.rand((3, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    coarse = (torch.rand((3, 1, 8, 8), generator=torch.Generator().manual_seed(1)) > 0.5).float()
    diffusion = DiscreteDiffusion()
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    batched = sample_loop(model, diffusion, image, coarse, [5, 4, 3], gens)
    assert seen and set(seen) == {1}
    for i in range(3):
        alone = sample_loop(
            model, diffusion, image[i : i + 1], coarse[i : i + 1], [5, 4, 3],
            [torch.Generator().manual_seed(i)],
        )  # fmt: skip
        assert torch.equal(alone[0], batched[0][i : i + 1])
        assert torch.equal(alone[1], batched[1][i : i + 1])
