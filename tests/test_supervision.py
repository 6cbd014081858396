"""Supervision targets (blur, suppress, normalise) and the cross-entropy loss."""

from __future__ import annotations

import math

import pytest
import torch

from learned_sampler import gaussian_blur_bins, proposal_loss, proposal_targets


def _manual_blur(binned: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    k = binned.shape[-1]
    out = torch.zeros_like(binned, dtype=torch.float64)
    for i in range(k):
        for o, w in zip(offsets.long().tolist(), kernel.tolist()):
            if 0 <= i + o < k:
                out[..., i] += w * binned[..., i + o].double()
    return out.to(binned.dtype)


def test_gaussian_blur_bins():
    weights = torch.zeros(2, 11)
    weights[0, 5] = 1.0
    weights[1, 0] = 0.5
    blurred = gaussian_blur_bins(weights, 1.0)
    torch.testing.assert_close(blurred, _manual_blur(weights, 1.0))
    # Mass is kept away from the ends; the blur is symmetric.
    torch.testing.assert_close(blurred[0].sum(), torch.tensor(1.0))
    torch.testing.assert_close(blurred[0], blurred[0].flip(0))
    assert torch.equal(gaussian_blur_bins(weights, 0.0), weights)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_blur_bins(weights, -1.0)


def test_targets_blur_suppress_normalise():
    num_bins, per_bin = 16, 4
    dense = torch.zeros(3, num_bins * per_bin)
    dense[0, 20:24] = 0.2  # a surface in bin 5 (weight 0.8)
    dense[0, 50] = 0.1  # a faint second hit in bin 12
    dense[1, 5] = 1.0  # fully opaque at bin 1
    dense[2] = 0.05 / dense.shape[-1]  # a faint volume spread over every bin (0.003 per bin)
    targets = proposal_targets(dense, num_bins)
    assert targets.shape == (3, num_bins)
    torch.testing.assert_close(targets.sum(-1), torch.ones(3))
    assert bool((targets >= 0).all())

    binned = dense.reshape(3, num_bins, per_bin).sum(-1)
    blurred = _manual_blur(binned, 1.0)
    for row in (0, 1):
        suppressed = torch.where(blurred[row] >= 5e-3, blurred[row], torch.zeros_like(blurred[row]))
        torch.testing.assert_close(targets[row], suppressed / suppressed.sum())
        # Entries under the threshold after the blur are exactly zero; others are not.
        assert bool((targets[row][blurred[row] < 5e-3] == 0).all())
        assert bool((targets[row][blurred[row] >= 5e-3] > 0).all())
    # The blur spreads the peak to its neighbours, the tails beyond are suppressed.
    assert int(targets[0].argmax()) == 5 and float(targets[0, 4]) > 0 and float(targets[0, 6]) > 0
    assert float(targets[0, 0]) == 0.0 and float(targets[0, 12]) > 0
    # Faint spread ray: every blurred entry is under the threshold; it keeps its blurred weights.
    assert bool((blurred[2] < 5e-3).all())
    torch.testing.assert_close(targets[2], blurred[2] / blurred[2].sum())
    assert bool((targets[2] > 0).all())


@pytest.mark.parametrize("empty_target", ["far", "uniform"])
def test_ray_hitting_nothing_gets_the_empty_target(empty_target):
    dense = torch.zeros(2, 3, 24)
    dense[0, 0, 7] = 0.5
    targets = proposal_targets(dense, 8, empty_target=empty_target)
    if empty_target == "uniform":
        expected = torch.full((8,), 1 / 8)
    else:
        expected = torch.zeros(8)
        expected[-1] = 1.0
    torch.testing.assert_close(targets[1], expected.expand(3, 8))
    torch.testing.assert_close(targets[0, 1:], expected.expand(2, 8))
    assert float(targets[0, 0, 2]) > 0.3
    with pytest.raises(ValueError, match="empty_target"):
        proposal_targets(dense, 8, empty_target="nearest")


def test_targets_are_robust_to_bad_weights_and_detached():
    dense = torch.rand(2, 16, generator=torch.Generator().manual_seed(0)) * 0.1
    dense[0, 3] = float("nan")
    dense[1, 4] = float("inf")
    dense[1, 5] = -0.5
    dense.requires_grad_(True)
    targets = proposal_targets(dense, 4)
    assert not targets.requires_grad
    assert bool(torch.isfinite(targets).all())
    torch.testing.assert_close(targets.sum(-1), torch.ones(2))


def test_targets_validation():
    with pytest.raises(ValueError, match="num_bins"):
        proposal_targets(torch.rand(2, 10), 4)
    with pytest.raises(ValueError, match="num_bins"):
        proposal_targets(torch.rand(2, 10), 1)
    with pytest.raises(ValueError, match="suppress_below"):
        proposal_targets(torch.rand(2, 8), 4, suppress_below=-1.0)
    with pytest.raises(ValueError, match="dense_weights"):
        proposal_targets(torch.ones(2, 8, dtype=torch.long), 4)


def test_loss_equals_manual_cross_entropy():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 7, generator=generator)
    targets = torch.softmax(torch.randn(2, 3, 7, generator=generator), dim=-1)
    p_hat = torch.exp(logits) / torch.exp(logits).sum(-1, keepdim=True)
    manual = -(targets * torch.log(p_hat)).sum(-1).mean()
    torch.testing.assert_close(proposal_loss(logits, targets), manual)
    # Stable for extreme logits where the naive log(softmax) is -inf.
    extreme = torch.tensor([[1000.0, 0.0, -1000.0]])
    loss = proposal_loss(extreme, torch.tensor([[0.0, 0.0, 1.0]]))
    torch.testing.assert_close(loss, torch.tensor(2000.0))


def test_loss_is_minimised_at_the_targets():
    generator = torch.Generator().manual_seed(1)
    targets = torch.softmax(torch.randn(4, 9, generator=generator), dim=-1)
    logits = torch.log(targets).requires_grad_(True)
    loss = proposal_loss(logits, targets)
    loss.backward()
    torch.testing.assert_close(logits.grad, torch.zeros_like(logits), atol=1e-7, rtol=0)
    # The minimum is the entropy of the targets; any other prediction does worse.
    entropy = -(targets * torch.log(targets)).sum(-1).mean()
    torch.testing.assert_close(loss.detach(), entropy)
    for _ in range(20):
        other = logits.detach() + 0.5 * torch.randn(4, 9, generator=generator)
        assert float(proposal_loss(other, targets)) > float(loss.detach())
    # Adding a constant to the logits does not change the distribution or the loss.
    torch.testing.assert_close(proposal_loss(logits.detach() + 3.0, targets), loss.detach())


def test_loss_validation():
    with pytest.raises(ValueError, match="logits.*targets"):
        proposal_loss(torch.zeros(2, 4), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="logits"):
        proposal_loss(torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 4))
