"""Sampling primitives: uniform bins / intervals and inverse-CDF sampling."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from learned_sampler import normalize_distribution, sample_inverse_cdf, uniform_bin_edges, uniform_intervals


def _ranges(n: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    nears = torch.rand(n, generator=generator) * 3.0
    fars = nears + 1e-3 + torch.rand(n, generator=generator) * 5.0
    return nears, fars


# ---------------------------------------------------------------------------------------------
# uniform bins / intervals


@pytest.mark.parametrize("num_samples", [1, 7, 48])
@pytest.mark.parametrize("stratified", [False, True])
def test_uniform_intervals_tile_near_far_exactly(num_samples, stratified):
    nears, fars = _ranges(4000)
    intervals = uniform_intervals(nears, fars, num_samples, stratified, torch.Generator().manual_seed(1))
    assert intervals.t_starts.shape == (4000, num_samples)
    assert torch.equal(intervals.t_starts[:, 0], nears)
    assert torch.equal(intervals.t_ends[:, -1], fars)
    assert torch.equal(intervals.t_starts[:, 1:], intervals.t_ends[:, :-1])
    assert bool((intervals.deltas > 0).all())
    torch.testing.assert_close(intervals.deltas, ((fars - nears) / num_samples)[:, None].expand(-1, num_samples))
    assert bool((intervals.t_samples >= intervals.t_starts).all())
    assert bool((intervals.t_samples <= intervals.t_ends).all())
    assert intervals.mask is None


def test_uniform_intervals_midpoints_and_jitter():
    nears, fars = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 2.5])
    midpoints = uniform_intervals(nears, fars, 4, stratified=False)
    torch.testing.assert_close(midpoints.t_samples, torch.tensor([[1.25, 1.75, 2.25, 2.75], [2.0625, 2.1875, 2.3125, 2.4375]]))
    a = uniform_intervals(nears, fars, 4, generator=torch.Generator().manual_seed(3))
    b = uniform_intervals(nears, fars, 4, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a.t_samples, b.t_samples, rtol=0, atol=0)
    assert not torch.allclose(a.t_samples, midpoints.t_samples)
    # Jitter covers the whole interval: over many rays the relative position is ~U(0, 1).
    many_n, many_f = torch.zeros(20000), torch.ones(20000)
    jittered = uniform_intervals(many_n, many_f, 2, generator=torch.Generator().manual_seed(4))
    relative = (jittered.t_samples - jittered.t_starts) / jittered.deltas
    assert abs(float(relative.mean()) - 0.5) < 0.01
    assert float(relative.min()) < 0.01 and float(relative.max()) > 0.99


def test_uniform_bin_edges():
    edges = uniform_bin_edges(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 3.0]), 4)
    torch.testing.assert_close(edges, torch.tensor([[0.0, 0.25, 0.5, 0.75, 1.0], [1.0, 1.5, 2.0, 2.5, 3.0]]))
    with pytest.raises(ValueError, match="num_bins"):
        uniform_bin_edges(torch.zeros(1), torch.ones(1), 0)


def test_uniform_intervals_rejects_bad_count():
    with pytest.raises(ValueError, match="num_bins|num_samples"):
        uniform_intervals(torch.zeros(1), torch.ones(1), 0)


# ---------------------------------------------------------------------------------------------
# normalize_distribution


def test_normalize_distribution():
    weights = torch.tensor([[1.0, 3.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [float("nan"), 1.0, float("inf"), 1.0]])
    p = normalize_distribution(weights)
    torch.testing.assert_close(p, torch.tensor([[0.25, 0.75, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25], [0.0, 0.5, 0.0, 0.5]]))
    with pytest.raises(ValueError, match=">= 0"):
        normalize_distribution(torch.tensor([1.0, -0.1]))


@pytest.mark.parametrize("scale", [1e-20, 1e-35, 1e-44])
def test_normalize_distribution_tiny_mass_still_sums_to_one(scale):
    weights = torch.tensor([[0.0, 1.0, 3.0, 0.0]]) * scale
    p = normalize_distribution(weights)
    torch.testing.assert_close(p.sum(-1), torch.ones(1))
    assert p[0, 0] == 0 and p[0, 3] == 0 and float(p[0, 2]) > float(p[0, 1]) > 0


# ---------------------------------------------------------------------------------------------
# inverse CDF


def _cdf_at(t: torch.Tensor, edges: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The piecewise-linear CDF of the piecewise-constant pdf, in float64."""
    edges, weights, t = edges.double(), weights.double(), t.double()
    p = weights / weights.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(p[..., :1]), p.cumsum(-1)], dim=-1)
    index = (torch.searchsorted(edges.contiguous(), t.contiguous(), right=True) - 1).clamp(0, p.shape[-1] - 1)
    low, high = edges.gather(-1, index), edges.gather(-1, index + 1)
    fraction = ((t - low) / (high - low)).clamp(0, 1)
    return cdf.gather(-1, index) + fraction * p.gather(-1, index)


@settings(max_examples=50, deadline=None)
@given(
    num_bins=st.integers(1, 20),
    num_samples=st.integers(1, 40),
    seed=st.integers(0, 2**31 - 1),
    stratified=st.booleans(),
)
def test_inverse_cdf_one_sample_per_equal_mass_stratum(num_bins, num_samples, seed, stratified):
    generator = torch.Generator().manual_seed(seed)
    rays = 8
    widths = torch.rand(rays, num_bins, generator=generator) + 0.05
    edges = torch.cat([torch.zeros(rays, 1), widths.cumsum(-1)], dim=-1) + torch.rand(rays, 1, generator=generator)
    weights = torch.rand(rays, num_bins, generator=generator) + 0.01  # strictly positive: CDF invertible
    t = sample_inverse_cdf(edges, weights, num_samples, stratified, generator)
    assert t.shape == (rays, num_samples)
    assert bool((t.diff(dim=-1) >= 0).all())
    assert bool((t >= edges[:, :1]).all()) and bool((t <= edges[:, -1:]).all())
    cdf = _cdf_at(t, edges, weights)
    strata = torch.arange(num_samples, dtype=torch.float64)
    # CDF(t_i) lies in the i-th stratum [i / n, (i + 1) / n] (at its centre without stratification).
    assert bool((cdf >= strata / num_samples - 1e-5).all())
    assert bool((cdf <= (strata + 1) / num_samples + 1e-5).all())
    if not stratified:
        torch.testing.assert_close(cdf, ((strata + 0.5) / num_samples).expand_as(cdf), atol=1e-5, rtol=0)


def test_inverse_cdf_skips_empty_bins_and_hits_peaks():
    edges = torch.linspace(0.0, 4.0, 5).expand(1, 5)
    weights = torch.tensor([[0.0, 1.0, 0.0, 1.0]])
    t = sample_inverse_cdf(edges, weights, 1000, generator=torch.Generator().manual_seed(0))
    in_bin = (t.floor()).long()
    assert set(in_bin.unique().tolist()) == {1, 3}
    assert int((in_bin == 1).sum()) == 500


@pytest.mark.parametrize(
    "weights",
    [torch.zeros(3, 5), torch.full((3, 5), float("nan")), torch.tensor([[float("inf"), 0.0, 0.0, 0.0, 0.0]] * 3)],
)
def test_inverse_cdf_uniform_fallback(weights):
    edges = torch.linspace(1.0, 2.0, 6).expand(3, 6)
    t = sample_inverse_cdf(edges, weights, 10, stratified=False)
    assert bool(torch.isfinite(t).all())
    torch.testing.assert_close(t, (1.0 + (torch.arange(10) + 0.5) / 10).expand(3, 10))
    jittered = sample_inverse_cdf(edges, weights, 10, generator=torch.Generator().manual_seed(0))
    assert bool(torch.isfinite(jittered).all())
    assert bool((jittered >= 1.0).all()) and bool((jittered <= 2.0).all())


def test_inverse_cdf_batch_shapes():
    edges = torch.linspace(0.0, 1.0, 9).expand(2, 3, 9)
    weights = torch.rand(2, 3, 8, generator=torch.Generator().manual_seed(0))
    assert sample_inverse_cdf(edges, weights, 5).shape == (2, 3, 5)


def test_inverse_cdf_rejects_bad_input():
    edges = torch.linspace(0.0, 1.0, 5).expand(2, 5)
    with pytest.raises(ValueError, match="bin_edges"):
        sample_inverse_cdf(edges, torch.ones(2, 5), 4)
    with pytest.raises(ValueError, match="bin_edges"):
        sample_inverse_cdf(edges, torch.ones(3, 4), 4)
    with pytest.raises(ValueError, match="num_samples"):
        sample_inverse_cdf(edges, torch.ones(2, 4), 0)
    with pytest.raises(ValueError, match="bin_weights"):
        sample_inverse_cdf(edges, torch.ones(2, 4, dtype=torch.long), 4)
    nan_edges = edges.clone()
    nan_edges[0, 1] = float("nan")
    with pytest.raises(ValueError, match="bin_edges"):
        sample_inverse_cdf(nan_edges, torch.ones(2, 4), 4)
    with pytest.raises(ValueError, match=">= 0"):
        sample_inverse_cdf(edges, -torch.ones(2, 4), 4)
