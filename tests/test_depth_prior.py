"""The depth-guided prior: median depth of probe rays, and the prior's modes between probe pixels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from learned_sampler import depth_guided_prior, probe_median_depth


def one_hot_weights(bins: torch.Tensor, num_bins: int, opacity: float = 1.0) -> torch.Tensor:
    """Probe weights ``(1, K, h, w)`` with all of each ray's mass in one bin."""
    return opacity * F.one_hot(bins, num_bins).permute(2, 0, 1)[None].float()


def test_median_depth_of_simple_rays():
    weights = torch.zeros(1, 8, 1, 4)
    weights[0, 3, 0, 0] = 1.0  # all in bin 3: the crossing is the bin's middle
    weights[0, 1, 0, 1], weights[0, 5, 0, 1] = 0.5, 0.5  # two surfaces: the first bin's end
    weights[0, 2, 0, 2] = 0.4  # semi-transparent: median of its own mass
    depth, opacity = probe_median_depth(weights)
    assert depth[0, 0].tolist() == pytest.approx([3.5, 2.0, 2.5, 0.0])
    assert opacity[0, 0].tolist() == pytest.approx([1.0, 1.0, 0.4, 0.0])


def test_prior_puts_mass_of_a_sloped_surface_between_probe_pixels():
    """A surface whose depth grows by 2 bins per probe pixel: the full-resolution pixels between two
    probe pixels get mass between the two depths from the interpolated depth, and only at the probe
    pixels' own depths from the upsampled weights."""
    num_bins, downscale = 32, 4
    weights = one_hot_weights(torch.tensor([[8, 10, 12, 14]]), num_bins)
    mixed = depth_guided_prior(weights, downscale, depth_share=0.5)
    without = depth_guided_prior(weights, downscale, depth_share=0.0)
    assert mixed.shape == (1, num_bins, 4, 16)
    torch.testing.assert_close(mixed.sum(dim=1), torch.ones(1, 4, 16))
    # Pixel 7's centre is at probe coordinate 1.375: depth 10.5 + 2 * 0.375 = 11.25 bins, in bin 11.
    column = 7
    assert set(without[0, :, 0, column].nonzero().flatten().tolist()) == {10, 12}
    assert mixed[0, 11, 0, column] > 0.08
    centres = torch.arange(num_bins) + 0.5
    gaussian_part = (mixed - 0.5 * without)[0, :, 0, column]
    assert float((gaussian_part * centres).sum() / gaussian_part.sum()) == pytest.approx(11.25, abs=0.05)


def test_depth_edges_keep_the_upsampled_weights():
    """Between a near and a far surface the interpolated depth lies in empty space: the prior
    trusts the upsampled weights there and puts (almost) nothing in between."""
    num_bins = 32
    weights = one_hot_weights(torch.tensor([[4, 4, 28, 28]]), num_bins)
    prior = depth_guided_prior(weights, 4, depth_share=1.0)
    between = prior[0, 8:24, 0, 6:10].sum(dim=0)  # pixels around the edge, bins between the surfaces
    assert bool((between < 1e-3).all())
    # Away from the edge the full share goes to the Gaussian around the (constant) depth.
    assert prior[0, 4, 0, 0] < 0.5 and prior[0, 3, 0, 0] > 0.1


def test_prior_without_depth_share_is_the_upsampled_probe_distribution():
    weights = torch.rand(2, 6, 3, 3, generator=torch.Generator().manual_seed(0))
    upsampled = F.interpolate(weights, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(
        depth_guided_prior(weights, 2, depth_share=0.0), upsampled / upsampled.sum(dim=1, keepdim=True)
    )


def test_empty_neighbours_neither_move_the_depth_nor_leave_nan():
    num_bins = 16
    weights = torch.zeros(1, num_bins, 1, 2)
    weights[0, 12, 0, 0] = 1.0  # a hit next to an empty probe ray
    prior = depth_guided_prior(weights, 2, depth_share=1.0, depth_sigma=0.5)
    assert torch.isfinite(prior).all()
    # Columns 0-2 interpolate with the hit, which keeps bin 12 however little of it they get;
    # column 3 sees only the empty ray.
    assert (prior[0, :, :, :3].argmax(dim=0) == 12).all()
    torch.testing.assert_close(prior[0, :, :, 3], torch.full((num_bins, 2), 1.0 / num_bins))
    empty = depth_guided_prior(torch.zeros(1, num_bins, 2, 2), 2)
    torch.testing.assert_close(empty, torch.full_like(empty, 1.0 / num_bins))


def test_depth_prior_validation():
    weights = torch.rand(1, 4, 2, 2)
    with pytest.raises(ValueError, match="probe_weights must have shape"):
        depth_guided_prior(weights[0], 2)
    with pytest.raises(ValueError, match="depth_share"):
        depth_guided_prior(weights, 2, depth_share=1.5)
    with pytest.raises(ValueError, match="depth_sigma"):
        depth_guided_prior(weights, 2, depth_sigma=0.0)
    with pytest.raises(ValueError, match="downscale"):
        depth_guided_prior(weights, 0)
    with pytest.raises(ValueError, match="weights must have shape"):
        probe_median_depth(weights[0])
