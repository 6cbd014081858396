"""Robust stratified sampling: property tests of the kept set, the allocation and the intervals."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import CountingField, make_rays
from learned_sampler.robust import _allocate_samples
from learned_sampler import (
    adaptive_budgets,
    normalize_distribution,
    p_hat_stratified_sample,
    render,
    robust_distribution,
    robust_iid_sample,
    robust_stratified_sample,
    sample_inverse_cdf,
    uniform_bin_edges,
)

PROPERTY = settings(max_examples=50, deadline=None)

# Bin masses: exact zeros, tiny, ordinary and large values, so that ties, empty bins and
# very uneven distributions all occur. No subnormal floats: 1e-45 / 2 underflows to an exact 0
# in float32, so such a bin has no mass left to keep once normalised.
_mass = st.one_of(
    st.just(0.0),
    st.floats(2**-23, 2**-14, width=32),
    st.floats(0.0, 1.0, width=32, allow_subnormal=False),
    st.sampled_from([0.25, 0.5, 1.0]),
    st.floats(1.0, 100.0, width=32),
)


@st.composite
def p_hats(draw, max_rays: int = 5, max_bins: int = 24):
    num_rays = draw(st.integers(1, max_rays))
    num_bins = draw(st.integers(2, max_bins))
    rows = draw(st.lists(st.lists(_mass, min_size=num_bins, max_size=num_bins), min_size=num_rays, max_size=num_rays))
    return torch.tensor(rows, dtype=torch.float32)


_taus = st.one_of(st.floats(0.05, 1.0), st.sampled_from([0.5, 0.9, 0.98, 1.0]))


def _normalised(p_hat: torch.Tensor) -> torch.Tensor:
    p = p_hat.double()
    total = p.sum(-1, keepdim=True)
    return torch.where(total > 0, p / total.clamp_min(1e-300), torch.full_like(p, 1.0 / p.shape[-1]))


def _ranges(num_rays: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    nears = torch.rand(num_rays, generator=generator) * 3.0
    fars = nears + 0.1 + torch.rand(num_rays, generator=generator) * 4.0
    return nears, fars


# ---------------------------------------------------------------------------------------------
# robust_distribution


@PROPERTY
@given(p_hat=p_hats(), tau=_taus)
def test_robust_distribution_is_uniform_over_smallest_top_mass_set(p_hat, tau):
    q = robust_distribution(p_hat, tau)
    p = _normalised(p_hat)
    tol = 1e-5
    for row in range(p.shape[0]):
        kept = q[row] > 0
        count = int(kept.sum())
        assert count >= 1
        # Uniform over the kept set.
        torch.testing.assert_close(q[row][kept], torch.full((count,), 1.0 / count))
        # The kept bins are the largest ones.
        if count < p.shape[1]:
            assert float(p[row][kept].min()) >= float(p[row][~kept].max())
        # Their mass reaches tau, and no smaller set does (the best smaller set drops the least bin).
        kept_mass = float(p[row][kept].sum())
        assert kept_mass >= tau - tol
        assert kept_mass - float(p[row][kept].min()) < tau + tol


@PROPERTY
@given(p_hat=p_hats())
def test_tau_one_keeps_every_nonzero_bin(p_hat):
    q = robust_distribution(p_hat, 1.0)
    p = _normalised(p_hat)
    assert torch.equal(q > 0, p > 0)


def test_robust_distribution_hand_example():
    p_hat = torch.tensor([[0.05, 0.5, 0.3, 0.15, 0.0]])
    torch.testing.assert_close(robust_distribution(p_hat, 0.5), torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0]]))
    torch.testing.assert_close(robust_distribution(p_hat, 0.8), torch.tensor([[0.0, 0.5, 0.5, 0.0, 0.0]]))
    torch.testing.assert_close(robust_distribution(p_hat, 0.9), torch.tensor([[0.0, 1 / 3, 1 / 3, 1 / 3, 0.0]]))
    torch.testing.assert_close(robust_distribution(p_hat, 0.98), torch.tensor([[0.25, 0.25, 0.25, 0.25, 0.0]]))
    torch.testing.assert_close(robust_distribution(p_hat, 1.0), torch.tensor([[0.25, 0.25, 0.25, 0.25, 0.0]]))
    # Unnormalised input gives the same.
    torch.testing.assert_close(robust_distribution(7 * p_hat, 0.8), robust_distribution(p_hat, 0.8))


# ---------------------------------------------------------------------------------------------
# robust_stratified_sample


def _sample_bins(intervals, nears, fars, num_bins):
    """Bin index of every sample (from its interval's midpoint, robust to edge rounding)."""
    middle = 0.5 * (intervals.t_starts + intervals.t_ends)
    relative = (middle - nears[:, None]) / (fars - nears)[:, None]
    return (relative * num_bins).floor().long().clamp(0, num_bins - 1)


def _real(intervals):
    return intervals.mask if intervals.mask is not None else torch.ones_like(intervals.t_samples, dtype=torch.bool)


@PROPERTY
@given(
    p_hat=p_hats(max_rays=6),
    tau=_taus,
    budget_data=st.lists(st.integers(1, 40), min_size=6, max_size=6),
    per_ray=st.booleans(),
    stratified=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_robust_stratified_sample_properties(p_hat, tau, budget_data, per_ray, stratified, seed):
    num_rays, num_bins = p_hat.shape
    nears, fars = _ranges(num_rays, seed)
    budgets = torch.tensor(budget_data[:num_rays]) if per_ray else budget_data[0]
    budget_tensor = budgets if per_ray else torch.full((num_rays,), budgets)
    intervals = robust_stratified_sample(
        p_hat, nears, fars, budgets, tau, stratified, torch.Generator().manual_seed(seed)
    )
    width = int(budget_tensor.max())
    assert intervals.t_samples.shape == (num_rays, width)
    uniform_budget = bool((budget_tensor == width).all())
    assert (intervals.mask is None) == uniform_budget

    # Exactly `budget` samples per ray, real ones first.
    real = _real(intervals)
    assert torch.equal(real.sum(-1), budget_tensor)
    assert torch.equal(real, torch.arange(width).expand(num_rays, width) < budget_tensor[:, None])
    torch.testing.assert_close(intervals.samples_per_ray(), budget_tensor.float())

    # Sorted, inside their intervals, inside [near, far].
    t, starts, ends = intervals.t_samples, intervals.t_starts, intervals.t_ends
    assert bool((t.diff(dim=-1) >= 0).all())
    assert bool((starts <= t).all()) and bool((t <= ends).all())
    assert bool((starts >= nears[:, None]).all()) and bool((ends <= fars[:, None]).all())
    midpoints = 0.5 * (starts + ends)
    assert bool((midpoints.diff(dim=-1) >= 0).all())
    # Real intervals do not overlap (so the quadrature never counts a depth twice).
    real_pairs = real[:, 1:]
    assert bool((starts[:, 1:][real_pairs] >= ends[:, :-1][real_pairs] - 1e-5).all())
    # Padding samples have zero length at far.
    assert bool((intervals.deltas[~real] == 0).all())

    bin_width = ((fars - nears) / num_bins)[:, None].expand_as(t)
    depth_ulp = 4 * torch.finfo(torch.float32).eps * fars[:, None]
    if not stratified:
        torch.testing.assert_close(t, midpoints)

    keep, kept, _, counts, _ = _allocate_samples(p_hat, budget_tensor, tau)
    assert torch.equal(keep, robust_distribution(p_hat, tau) > 0)
    p = _normalised(p_hat)
    for row in range(num_rays):
        c, s = int(kept[row]), int(budget_tensor[row])
        row_real = real[row]
        if s >= c:
            # No interval wider than a bin (up to the float32 spacing of depths around far).
            assert bool((intervals.deltas[row] <= bin_width[row] + depth_ulp[row]).all())
            # The samples' own bins agree with the allocation.
            bins = _sample_bins(intervals, nears, fars, num_bins)[row]
            observed = torch.zeros(num_bins, dtype=torch.long).scatter_add_(0, bins, row_real.long())
            assert torch.equal(observed, counts[row])
            kept_counts = counts[row][keep[row]]
            kept_p = p[row][keep[row]]
            # Every kept bin gets floor(s / c), the s mod c largest one more; none outside.
            assert bool((counts[row][~keep[row]] == 0).all())
            assert bool((kept_counts >= 1).all())
            assert set(kept_counts.tolist()) <= {s // c, s // c + 1}
            assert int((kept_counts == s // c + 1).sum()) == s % c
            # Leftovers go to the largest p_hat: a strictly larger bin never gets fewer samples.
            larger = kept_p[:, None] > kept_p[None, :]
            assert bool((kept_counts[:, None] >= kept_counts[None, :])[larger].all())
            # A bin with n samples is split into n equal sub-intervals tiling it.
            for b in counts[row].nonzero().flatten().tolist():
                in_bin = row_real & (bins == b)
                torch.testing.assert_close(
                    intervals.deltas[row][in_bin].double().sum(), bin_width[row, 0].double(), atol=1e-5, rtol=1e-5
                )
        else:
            # Fewer samples than kept bins: sample j lies in one kept bin of stratum j (kept bins
            # ceil(j c / s) .. ceil((j + 1) c / s) - 1 in depth order), its interval that whole bin.
            _check_fewer_samples_than_kept_bins(intervals, row, nears, fars, keep[row], p[row], s, stratified)


def _stratum_bins(keep_row: torch.Tensor, s: int) -> list[list[int]]:
    """The kept bins of every stratum when s < c, in depth order."""
    kept_bins = keep_row.nonzero().flatten().tolist()
    c = len(kept_bins)
    return [kept_bins[-(-j * c // s) : -(-(j + 1) * c // s)] for j in range(s)]


def _check_fewer_samples_than_kept_bins(intervals, row, nears, fars, keep_row, p_row, s, stratified):
    num_bins = keep_row.numel()
    bin_width = float(fars[row] - nears[row]) / num_bins
    tol = 1e-4 * bin_width + 4 * torch.finfo(intervals.t_samples.dtype).eps * float(fars[row])
    bins = _sample_bins(intervals, nears, fars, num_bins)[row]
    for j, stratum in enumerate(_stratum_bins(keep_row, s)):
        assert stratum  # every stratum holds at least one kept bin
        b = int(bins[j])
        assert b in stratum
        start, end = float(intervals.t_starts[row, j]), float(intervals.t_ends[row, j])
        edge_low = float(nears[row]) + b * bin_width
        assert abs(start - edge_low) <= tol
        assert abs(end - min(edge_low + bin_width, float(fars[row]))) <= tol
        if not stratified:
            # Without jitter: the stratum's kept bin of largest p_hat (ties go to the nearer one).
            best = max(stratum, key=lambda k: (float(p_row[k]), -k))
            assert b == best


def test_allocation_hand_examples():
    p_hat = torch.tensor([[0.1, 0.4, 0.3, 0.2, 0.0]])
    # tau = 1 keeps the 4 non-empty bins.
    assert _allocate_samples(p_hat, 4, 1.0)[3].tolist() == [[1, 1, 1, 1, 0]]
    assert _allocate_samples(p_hat, 6, 1.0)[3].tolist() == [[1, 2, 2, 1, 0]]
    assert _allocate_samples(p_hat, 7, 1.0)[3].tolist() == [[1, 2, 2, 2, 0]]
    # tau = 0.6 keeps bins 1 and 2 (mass 0.7).
    assert _allocate_samples(p_hat, 5, 0.6)[3].tolist() == [[0, 3, 2, 0, 0]]


def test_fewer_samples_than_kept_bins_stay_inside_kept_bins():
    # Kept bins 0, 1, 3, 4, 5 (bins 2 and 6 empty); 2 samples -> strata {0, 1, 3} and {4, 5}.
    # Each sample's interval is one kept bin: the empty bin 2 between kept bins is never spanned.
    p_hat = torch.tensor([[0.1, 0.15, 0.0, 0.3, 0.2, 0.25, 0.0]])
    intervals = robust_stratified_sample(p_hat, torch.tensor([0.0]), torch.tensor([7.0]), 2, 1.0, stratified=False)
    # Without jitter: the midpoint of each stratum's most likely bin (3 and 5).
    torch.testing.assert_close(intervals.t_starts, torch.tensor([[3.0, 5.0]]))
    torch.testing.assert_close(intervals.t_ends, torch.tensor([[4.0, 6.0]]))
    torch.testing.assert_close(intervals.t_samples, torch.tensor([[3.5, 5.5]]))

    # With jitter: q restricted to each stratum, i.e. uniform over its kept bins.
    draws = 30000
    jittered = robust_stratified_sample(
        p_hat.expand(draws, 7), torch.zeros(draws), torch.full((draws,), 7.0), 2, 1.0,
        generator=torch.Generator().manual_seed(0),
    )
    torch.testing.assert_close(jittered.deltas, torch.ones(draws, 2))
    first = torch.bincount(jittered.t_samples[:, 0].floor().long(), minlength=7).double() / draws
    second = torch.bincount(jittered.t_samples[:, 1].floor().long(), minlength=7).double() / draws
    expected_first = torch.tensor([1 / 3, 1 / 3, 0, 1 / 3, 0, 0, 0], dtype=torch.float64)
    expected_second = torch.tensor([0, 0, 0, 0, 0.5, 0.5, 0], dtype=torch.float64)
    torch.testing.assert_close(first, expected_first, atol=0.015, rtol=0)
    torch.testing.assert_close(second, expected_second, atol=0.015, rtol=0)
    # Inside its bin the depth is uniform.
    within = jittered.t_samples - jittered.t_samples.floor()
    assert abs(float(within.mean()) - 0.5) < 0.01


@PROPERTY
@given(
    p_hat=p_hats(max_rays=6),
    tau=_taus,
    data=st.data(),
    stratified=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
    margin=st.integers(0, 2),
)
def test_samples_never_fall_where_q_is_zero(p_hat, tau, data, stratified, seed, margin):
    """For any budget 1..2c and depth margin: every sample and its whole interval lie in a bin
    with q > 0."""
    num_rays, num_bins = p_hat.shape
    q = robust_distribution(p_hat, tau, margin)
    kept = (q > 0).sum(-1)
    budgets = torch.tensor([data.draw(st.integers(1, 2 * int(c))) for c in kept])
    nears, fars = _ranges(num_rays, seed)
    intervals = robust_stratified_sample(
        p_hat, nears, fars, budgets, tau, stratified, torch.Generator().manual_seed(seed), depth_margin=margin
    )
    real = _real(intervals)
    assert torch.equal(real.sum(-1), budgets)
    t, starts, ends = intervals.t_samples, intervals.t_starts, intervals.t_ends
    assert bool((t.diff(dim=-1) >= 0).all())
    assert bool((starts <= t).all()) and bool((t <= ends).all())
    assert bool((starts >= nears[:, None]).all()) and bool((ends <= fars[:, None]).all())
    assert bool((t >= nears[:, None]).all()) and bool((t <= fars[:, None]).all())
    real_pairs = real[:, 1:]
    assert bool((starts[:, 1:][real_pairs] >= ends[:, :-1][real_pairs] - 1e-5).all())

    bin_width = ((fars - nears) / num_bins)[:, None]
    tol = 1e-4 * bin_width + 4 * torch.finfo(torch.float32).eps * fars[:, None]
    bins = _sample_bins(intervals, nears, fars, num_bins)
    edge_low = nears[:, None] + bins * bin_width
    edge_high = torch.minimum(edge_low + bin_width, fars[:, None])
    # The bin holding each interval has q > 0, and the interval (so the sample and its delta)
    # stays inside that bin: no q = 0 mass is sampled or weighted.
    assert bool((q.gather(-1, bins)[real] > 0).all())
    assert bool((starts >= edge_low - tol)[real].all()) and bool((ends <= edge_high + tol)[real].all())
    assert bool((intervals.deltas <= bin_width + tol).all())


@PROPERTY
@given(p_hat=p_hats(), tau=_taus, margin=st.integers(1, 3), data=st.data())
def test_depth_margin_widens_the_kept_set_and_allocation_covers_it(p_hat, tau, margin, data):
    """The kept set with a margin is the top-tau set plus ``margin`` bins on each side, on rays whose
    budget holds a sample per widened bin (others keep the top-tau set); the allocation gives every
    kept bin a sample where the budget allows and spends exactly the budget."""
    core = robust_distribution(p_hat, tau) > 0
    widened = robust_distribution(p_hat, tau, margin) > 0
    num_bins = p_hat.shape[-1]
    for ray in range(p_hat.shape[0]):
        expected = torch.zeros(num_bins, dtype=torch.bool)
        for index in core[ray].nonzero().flatten().tolist():
            expected[max(0, index - margin) : index + margin + 1] = True
        assert torch.equal(widened[ray], expected)
    widened_count = widened.sum(-1)
    budgets = torch.tensor([data.draw(st.integers(1, 3 * int(c))) for c in widened_count])
    keep, kept_count, _, counts, ranks = _allocate_samples(p_hat, budgets, tau, margin)
    fits = widened_count <= budgets
    assert torch.equal(keep, torch.where(fits[:, None], widened, core))
    assert torch.equal(kept_count, keep.sum(-1))
    assert torch.equal(counts.sum(-1), budgets)
    covered = keep & (kept_count <= budgets)[:, None]
    assert bool((counts[covered] >= 1).all()) and bool((counts[~keep] == 0).all())
    # Kept bins rank first, so the leftover samples go to kept bins of largest p_hat.
    assert bool((ranks[keep] < kept_count.repeat_interleave(kept_count)).all())


def test_samples_hand_example():
    p_hat = torch.tensor([[0.0, 0.7, 0.0, 0.3]])
    intervals = robust_stratified_sample(p_hat, torch.tensor([0.0]), torch.tensor([4.0]), 3, 1.0, stratified=False)
    torch.testing.assert_close(intervals.t_starts, torch.tensor([[1.0, 1.5, 3.0]]))
    torch.testing.assert_close(intervals.t_ends, torch.tensor([[1.5, 2.0, 4.0]]))
    torch.testing.assert_close(intervals.t_samples, torch.tensor([[1.25, 1.75, 3.5]]))
    assert intervals.mask is None


# ---------------------------------------------------------------------------------------------
# unbiasedness of the quadrature


def _piecewise_constant(t: torch.Tensor, breakpoints: torch.Tensor, values: torch.Tensor, kept_mask) -> torch.Tensor:
    """f(t) = values[j] on [breakpoints[j], breakpoints[j + 1]), times the kept-bin indicator."""
    index = (torch.searchsorted(breakpoints, t.contiguous(), right=True) - 1).clamp(0, values.numel() - 1)
    return values[index] * kept_mask(t)


def _integrand_on_kept_bins(generator: torch.Generator, kept_bins: torch.Tensor, near: float, far: float):
    """A random piecewise-constant integrand on a grid that does not align with the bins, zero
    outside the kept bins, and its exact integral over [near, far]: ``(f, exact)``."""
    bin_width = (far - near) / kept_bins.numel()

    def kept_mask(t):
        bins = ((t - near) / bin_width).floor().long().clamp(0, kept_bins.numel() - 1)
        return kept_bins[bins].to(t.dtype)

    inner = near + (far - near) * torch.rand(11, generator=generator, dtype=torch.float64)
    breakpoints = torch.cat([torch.tensor([near]), torch.sort(inner).values, torch.tensor([far])])
    values = torch.rand(12, generator=generator, dtype=torch.float64) * 4.0 - 1.0
    # Exact integral on the fine grid of all breakpoints and bin edges.
    edges = torch.unique(torch.cat([breakpoints, near + bin_width * torch.arange(kept_bins.numel() + 1, dtype=torch.float64)]))
    mids = 0.5 * (edges[1:] + edges[:-1])
    exact = float((_piecewise_constant(mids, breakpoints, values, kept_mask) * edges.diff()).sum())
    return (lambda t: _piecewise_constant(t, breakpoints, values, kept_mask)), exact, kept_mask


def _jittered_draws(p_hat, near: float, far: float, budget: int, tau: float, draws: int, generator: torch.Generator):
    """``draws`` independent stratified samplings of one ray with distribution ``p_hat``."""
    return robust_stratified_sample(
        p_hat.expand(draws, p_hat.numel()),
        torch.full((draws,), near, dtype=torch.float64),
        torch.full((draws,), far, dtype=torch.float64),
        budget,
        tau,
        stratified=True,
        generator=generator,
    )


@pytest.mark.parametrize("budget", [5, 6, 13])
def test_quadrature_is_unbiased_over_jitter(budget):
    generator = torch.Generator().manual_seed(budget)
    near, far = 1.0, 3.0
    p_hat = torch.tensor([0.02, 0.3, 0.0, 0.25, 0.2, 0.01, 0.22, 0.0], dtype=torch.float64)
    tau = 0.98  # keeps the 5 largest bins (mass 0.99; the top 4 hold only 0.97)
    kept_bins = robust_distribution(p_hat[None], tau)[0] > 0
    assert int(kept_bins.sum()) == 5 <= budget
    f, exact, _ = _integrand_on_kept_bins(generator, kept_bins, near, far)

    draws = 20000
    intervals = _jittered_draws(p_hat, near, far, budget, tau, draws, generator)
    estimates = (f(intervals.t_samples) * intervals.deltas).sum(-1)
    mean, std = float(estimates.mean()), float(estimates.std())
    assert std > 1e-3  # the estimator is random: the test is not trivially exact
    assert abs(mean - exact) < 4.0 * std / math.sqrt(draws) + 1e-9
    # The midpoint rule on the same intervals is deterministic and (here) biased.
    midpoint = robust_stratified_sample(
        p_hat[None], torch.tensor([near], dtype=torch.float64), torch.tensor([far], dtype=torch.float64), budget, tau, stratified=False
    )
    midpoint_estimate = float((f(midpoint.t_samples) * midpoint.deltas).sum())
    assert abs(midpoint_estimate - exact) > 4.0 * std / math.sqrt(draws)


@pytest.mark.parametrize("budget", [1, 2, 3, 4])
def test_fewer_samples_than_kept_bins_draw_from_q_in_each_stratum(budget):
    """s < c: weighting each sample by its stratum's kept bin count makes the quadrature unbiased,
    so each sample is distributed as q restricted to its stratum (the plain deltas, one bin each,
    carry the bias the paper accepts for s < c)."""
    generator = torch.Generator().manual_seed(10 + budget)
    num_bins, near, far = 8, 1.0, 3.0
    p_hat = torch.tensor([0.02, 0.3, 0.0, 0.25, 0.2, 0.01, 0.22, 0.0], dtype=torch.float64)
    tau = 0.98
    kept_bins = robust_distribution(p_hat[None], tau)[0] > 0
    c = int(kept_bins.sum())
    assert budget < c == 5
    bin_width = (far - near) / num_bins
    strata_sizes = torch.tensor([len(stratum) for stratum in _stratum_bins(kept_bins, budget)], dtype=torch.float64)

    f, exact, kept_mask = _integrand_on_kept_bins(generator, kept_bins, near, far)

    draws = 20000
    intervals = _jittered_draws(p_hat, near, far, budget, tau, draws, generator)
    torch.testing.assert_close(intervals.deltas, torch.full((draws, budget), bin_width, dtype=torch.float64))
    assert bool((kept_mask(intervals.t_samples) == 1).all())
    estimates = (f(intervals.t_samples) * intervals.deltas * strata_sizes).sum(-1)
    mean, std = float(estimates.mean()), float(estimates.std())
    assert std > 1e-3
    assert abs(mean - exact) < 4.0 * std / math.sqrt(draws) + 1e-9


# ---------------------------------------------------------------------------------------------
# the ablation modes: i.i.d. draws from q, stratified draws from p_hat


def _draw(mode: str, p_hat, nears, fars, budgets, tau, stratified, generator):
    if mode == "robust_iid":
        return robust_iid_sample(p_hat, nears, fars, budgets, tau, generator)
    return p_hat_stratified_sample(p_hat, nears, fars, budgets, stratified, generator)


@PROPERTY
@given(
    mode=st.sampled_from(["robust_iid", "p_hat_stratified"]),
    p_hat=p_hats(max_rays=6),
    tau=_taus,
    budget_data=st.lists(st.integers(1, 40), min_size=6, max_size=6),
    per_ray=st.booleans(),
    stratified=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_ablation_modes_sample_only_where_their_distribution_has_mass(
    mode, p_hat, tau, budget_data, per_ray, stratified, seed
):
    """Budgets and padding as the default mode; every sample and its interval inside one bin of
    positive mass (q for i.i.d., p_hat for the p_hat mode); the samples of a bin tile it."""
    num_rays, num_bins = p_hat.shape
    nears, fars = _ranges(num_rays, seed)
    budgets = torch.tensor(budget_data[:num_rays]) if per_ray else budget_data[0]
    budget_tensor = budgets if per_ray else torch.full((num_rays,), budgets)
    intervals = _draw(mode, p_hat, nears, fars, budgets, tau, stratified, torch.Generator().manual_seed(seed))
    width = int(budget_tensor.max())
    assert intervals.t_samples.shape == (num_rays, width)
    assert (intervals.mask is None) == bool((budget_tensor == width).all())
    real = _real(intervals)
    assert torch.equal(real, torch.arange(width).expand(num_rays, width) < budget_tensor[:, None])
    assert bool((intervals.deltas[~real] == 0).all())
    assert bool((intervals.t_samples[~real] == fars[:, None].expand_as(real)[~real]).all())

    t, starts, ends = intervals.t_samples, intervals.t_starts, intervals.t_ends
    assert bool((t.diff(dim=-1) >= 0).all())
    assert bool((starts <= t).all()) and bool((t <= ends).all())
    assert bool((starts >= nears[:, None]).all()) and bool((ends <= fars[:, None]).all())
    real_pairs = real[:, 1:]
    assert bool((starts[:, 1:][real_pairs] >= ends[:, :-1][real_pairs]).all())

    support = robust_distribution(p_hat, tau) > 0 if mode == "robust_iid" else normalize_distribution(p_hat) > 0
    bin_width = ((fars - nears) / num_bins)[:, None]
    tol = 1e-4 * bin_width + 4 * torch.finfo(torch.float32).eps * fars[:, None]
    bins = _sample_bins(intervals, nears, fars, num_bins)
    edge_low = nears[:, None] + bins * bin_width
    edge_high = torch.minimum(edge_low + bin_width, fars[:, None])
    assert bool(support.gather(-1, bins)[real].all())
    assert bool((starts >= edge_low - tol)[real].all()) and bool((ends <= edge_high + tol)[real].all())
    assert bool((t >= edge_low - tol)[real].all()) and bool((t <= edge_high + tol)[real].all())
    for row in range(num_rays):
        for b in bins[row][real[row]].unique().tolist():
            in_bin = real[row] & (bins[row] == b)
            torch.testing.assert_close(
                intervals.deltas[row][in_bin].double().sum(), bin_width[row, 0].double(), atol=1e-5, rtol=1e-5
            )


def _one_ray_draws(sample, p_hat, near: float, far: float, draws: int, **kwargs):
    """``draws`` independent samplings of one ray (float64)."""
    return sample(
        p_hat.expand(draws, p_hat.numel()),
        torch.full((draws,), near, dtype=torch.float64),
        torch.full((draws,), far, dtype=torch.float64),
        **kwargs,
    )


_P_HAT = torch.tensor([0.02, 0.3, 0.0, 0.25, 0.2, 0.01, 0.22, 0.0], dtype=torch.float64)


def test_iid_draws_cover_q_and_are_independent():
    """Each sample picks a kept bin uniformly and a uniform depth in it, independently of the
    others: per-bin counts are binomial (stratified sampling would fix them at floor or ceil)."""
    near, far, budget, draws = 1.0, 3.0, 7, 20000
    q = robust_distribution(_P_HAT[None], 0.98)[0]
    c = int((q > 0).sum())
    assert c == 5
    intervals = _one_ray_draws(
        robust_iid_sample, _P_HAT, near, far, draws, budgets=budget, tau=0.98, generator=torch.Generator().manual_seed(0)
    )
    bin_width = (far - near) / 8
    position = (intervals.t_samples - near) / bin_width
    bins = position.floor().long().clamp(0, 7)
    counts = torch.zeros(draws, 8, dtype=torch.float64).scatter_add_(1, bins, torch.ones_like(position))
    assert bool((counts[:, q == 0] == 0).all())
    mean, variance = counts.mean(0), counts.var(0)
    probability = 1.0 / c
    binomial_std = math.sqrt(budget * probability * (1 - probability))
    # Mean counts s / c; the variance of a binomial count, not the (near) zero of stratification.
    torch.testing.assert_close(mean[q > 0], torch.full((c,), budget * probability, dtype=torch.float64), atol=4 * binomial_std / math.sqrt(draws), rtol=0)
    torch.testing.assert_close(variance[q > 0], torch.full((c,), binomial_std**2, dtype=torch.float64), atol=0.05, rtol=0)
    # Any kept bin can hold several samples or none in one draw.
    assert bool((counts[:, q > 0] == 0).any(0).all()) and bool((counts[:, q > 0] >= 3).any(0).all())
    # Uniform inside the bin.
    within = position - position.floor()
    assert abs(float(within.mean()) - 0.5) < 0.01 and abs(float(within.var()) - 1 / 12) < 0.005


def test_iid_draws_are_unbiased():
    """A Monte-Carlo estimate of the integral of a function over q's support, f(t) / q(t) averaged
    over the draws, converges to the exact integral; the interval quadrature converges with s."""
    generator = torch.Generator().manual_seed(3)
    near, far, budget, draws = 1.0, 3.0, 6, 20000
    kept_bins = robust_distribution(_P_HAT[None], 0.98)[0] > 0
    c, bin_width = int(kept_bins.sum()), (far - near) / 8
    f, exact, kept_mask = _integrand_on_kept_bins(generator, kept_bins, near, far)
    intervals = _one_ray_draws(robust_iid_sample, _P_HAT, near, far, draws, budgets=budget, tau=0.98, generator=generator)
    assert bool((kept_mask(intervals.t_samples) == 1).all())
    q_density = 1.0 / (c * bin_width)
    edges = near + bin_width * torch.arange(9, dtype=torch.float64)
    # A step function off the bin grid, and a smooth one: (t - near)^2 on the kept bins.
    integrands = [
        (f, exact),
        (lambda t: (t - near) ** 2, float((((edges[1:] - near) ** 3 - (edges[:-1] - near) ** 3) / 3)[kept_bins].sum())),
    ]
    for integrand, integral in integrands:
        estimates = (integrand(intervals.t_samples) / q_density).mean(-1)
        mean, std = float(estimates.mean()), float(estimates.std())
        assert std > 1e-3
        assert abs(mean - integral) < 4.0 * std / math.sqrt(draws)

    errors = []
    for many in (50, 5000):
        dense = _one_ray_draws(robust_iid_sample, _P_HAT, near, far, 64, budgets=many, tau=0.98, generator=generator)
        errors.append(float(((f(dense.t_samples) * dense.deltas).sum(-1) - exact).abs().mean()))
    assert errors[1] < 0.2 * errors[0] and errors[1] < 0.01


@pytest.mark.parametrize("stratified", [True, False])
def test_p_hat_sampling_is_tau_free_inverse_cdf_sampling(stratified):
    """The samples are the paper's Eq. 3 on p_hat (``sample_inverse_cdf``), with the same jitter."""
    p_hat = torch.softmax(2.0 * torch.randn(5, 12, generator=torch.Generator().manual_seed(1)), dim=-1)
    p_hat[:, 4] = 0.0
    nears, fars = _ranges(5, 2)
    for budget in (3, 12, 30):
        ours = p_hat_stratified_sample(p_hat, nears, fars, budget, stratified, torch.Generator().manual_seed(budget))
        reference = sample_inverse_cdf(
            uniform_bin_edges(nears, fars, 12), p_hat, budget, stratified, torch.Generator().manual_seed(budget)
        )
        torch.testing.assert_close(ours.t_samples, reference, atol=2e-6, rtol=0)


def test_p_hat_draws_reach_every_bin_with_mass_in_proportion():
    """Mean samples per bin are s p_hat: every bin with p_hat > 0 is reached (the 0.01 bin too,
    which tau = 0.98 would drop), none with p_hat = 0; the kept set of q would flatten them."""
    near, far, budget, draws = 1.0, 3.0, 6, 20000
    intervals = _one_ray_draws(
        p_hat_stratified_sample, _P_HAT, near, far, draws, budgets=budget, generator=torch.Generator().manual_seed(5)
    )
    bins = ((intervals.t_samples - near) / ((far - near) / 8)).floor().long().clamp(0, 7)
    counts = torch.zeros(draws, 8, dtype=torch.float64).scatter_add_(1, bins, torch.ones_like(intervals.t_samples))
    mean, std = counts.mean(0), counts.std(0)
    assert bool((counts.sum(0)[_P_HAT > 0] > 0).all()) and bool((counts.sum(0)[_P_HAT == 0] == 0).all())
    assert bool(((mean - budget * _P_HAT).abs() <= 4 * std / math.sqrt(draws) + 1e-12).all())
    assert int(counts.sum(0)[5]) > 0 and not bool(robust_distribution(_P_HAT[None], 0.98)[0, 5] > 0)


def test_ablation_modes_hand_examples():
    p_hat = torch.tensor([[0.0, 0.7, 0.0, 0.3]])
    nears, fars = torch.tensor([0.0]), torch.tensor([4.0])
    # Stratum centres 0.1, 0.3, 0.5, 0.7, 0.9 through p_hat's CDF: four in bin 1, one at bin 3's start.
    centres = p_hat_stratified_sample(p_hat, nears, fars, 5, stratified=False)
    torch.testing.assert_close(centres.t_samples, torch.tensor([[1 + 1 / 7, 1 + 3 / 7, 1 + 5 / 7, 3.0, 3 + 2 / 3]]))
    torch.testing.assert_close(centres.t_starts, torch.tensor([[1.0, 1 + 2 / 7, 1 + 4 / 7, 3.0, 3 + 1 / 3]]))
    torch.testing.assert_close(centres.t_ends, torch.tensor([[1 + 2 / 7, 1 + 4 / 7, 2.0, 3 + 1 / 3, 4.0]]))
    # tau = 1 keeps bins 1 and 3 with q = 1/2 each, whatever their p_hat.
    draws = robust_iid_sample(p_hat.expand(4000, 4), torch.zeros(4000), torch.full((4000,), 4.0), 1, 1.0,
                              torch.Generator().manual_seed(0))
    in_bin_3 = float((draws.t_samples >= 3.0).double().mean())
    assert abs(in_bin_3 - 0.5) < 0.03
    torch.testing.assert_close(draws.deltas, torch.ones(4000, 1))


def test_ablation_modes_degenerate_rows_and_validation():
    p_hat = torch.tensor([[0.0] * 6, [float("nan")] * 6, [float("inf"), 0.0, 2.0, 0.0, 0.0, 0.0]])
    nears, fars = torch.full((3,), 1.0), torch.full((3,), 4.0)
    for mode in ("robust_iid", "p_hat_stratified"):
        intervals = _draw(mode, p_hat, nears, fars, 9, 0.98, True, torch.Generator().manual_seed(0))
        for tensor in (intervals.t_starts, intervals.t_ends, intervals.t_samples):
            assert bool(torch.isfinite(tensor).all())
        assert bool((_sample_bins(intervals, nears, fars, 6)[2] == 2).all())  # inf counts as zero
        assert _draw(mode, torch.zeros(0, 4), torch.zeros(0), torch.ones(0), 3, 0.98, True, None).t_samples.shape[0] == 0

    p_hat = torch.rand(3, 5, generator=torch.Generator().manual_seed(0))
    nears, fars = torch.zeros(3), torch.ones(3)
    for sample in (
        lambda *args: robust_iid_sample(*args),
        lambda *args: p_hat_stratified_sample(*args[:4]),
    ):
        for bad in (0, 2.5, torch.tensor([1, 0, 2]), torch.tensor([1, 2])):
            with pytest.raises(ValueError, match="budgets"):
                sample(p_hat, nears, fars, bad)
        with pytest.raises(ValueError, match="num_bins"):
            sample(torch.ones(3, 1), nears, fars, 4)
        with pytest.raises(ValueError, match="p_hat"):
            sample(p_hat.long(), nears, fars, 4)
        with pytest.raises(ValueError, match="nears"):
            sample(p_hat, torch.zeros(4), fars, 4)
        with pytest.raises(ValueError, match="near.*far"):
            sample(p_hat, fars, nears, 4)
        with pytest.raises(ValueError, match=">= 0"):
            sample(-p_hat, nears, fars, 4)
    with pytest.raises(ValueError, match="tau"):
        robust_iid_sample(p_hat, nears, fars, 4, 1.5)


# ---------------------------------------------------------------------------------------------
# degenerate inputs


def test_degenerate_distributions_give_finite_samples():
    num_bins = 6
    p_hat = torch.tensor(
        [
            [0.0] * num_bins,
            [0.0, 0.0, 0.0, 1.0, 0.0, 0.0],
            [float("nan")] * num_bins,
            [float("nan"), 1.0, 0.0, 0.0, 0.0, 0.0],
            [float("inf"), 0.0, 2.0, 0.0, 0.0, 0.0],
        ]
    )
    nears, fars = torch.full((5,), 1.0), torch.full((5,), 4.0)
    intervals = robust_stratified_sample(p_hat, nears, fars, 12, 0.98, generator=torch.Generator().manual_seed(0))
    for tensor in (intervals.t_starts, intervals.t_ends, intervals.t_samples):
        assert bool(torch.isfinite(tensor).all())
    bins = _sample_bins(intervals, nears, fars, num_bins)
    # All-zero and NaN rows: uniform, every bin gets 12 / 6 samples.
    for row in (0, 2):
        assert torch.bincount(bins[row], minlength=num_bins).tolist() == [2] * num_bins
    # One-hot rows: every sample in the hot bin, sub-intervals tiling it.
    assert bool((bins[1] == 3).all()) and bool((bins[3] == 1).all())
    torch.testing.assert_close(intervals.deltas[1], torch.full((12,), 0.5 / 12))
    # Infinite entries count as zero, like NaN.
    assert bool((bins[4] == 2).all())


def test_empty_batch():
    intervals = robust_stratified_sample(torch.zeros(0, 4), torch.zeros(0), torch.ones(0), 3)
    assert intervals.t_samples.shape[0] == 0


# ---------------------------------------------------------------------------------------------
# validation


def test_robust_sampling_validation():
    p_hat = torch.rand(3, 5, generator=torch.Generator().manual_seed(0))
    nears, fars = torch.zeros(3), torch.ones(3)
    for bad in (0, -2, torch.tensor([1, 0, 2]), torch.tensor([2, -1, 2])):
        with pytest.raises(ValueError, match="budgets"):
            robust_stratified_sample(p_hat, nears, fars, bad)
    for bad in (2.5, 3.0, torch.tensor([1.0, 2.0, 3.0]), torch.tensor([True, True, True]), True):
        with pytest.raises(ValueError, match="budgets"):
            robust_stratified_sample(p_hat, nears, fars, bad)
    with pytest.raises(ValueError, match="budgets"):
        robust_stratified_sample(p_hat, nears, fars, torch.tensor([1, 2]))
    for tau in (0.0, -0.1, 1.01, float("nan"), True, "0.9"):
        with pytest.raises(ValueError, match="tau"):
            robust_stratified_sample(p_hat, nears, fars, 4, tau)
        with pytest.raises(ValueError, match="tau"):
            robust_distribution(p_hat, tau)
    with pytest.raises(ValueError, match="num_bins"):
        robust_stratified_sample(torch.ones(3, 1), nears, fars, 4)
    with pytest.raises(ValueError, match="num_bins"):
        robust_distribution(torch.ones(3, 1))
    with pytest.raises(ValueError, match="nears"):
        robust_stratified_sample(p_hat, torch.zeros(4), fars, 4)
    with pytest.raises(ValueError, match="near.*far"):
        robust_stratified_sample(p_hat, fars, nears, 4)
    with pytest.raises(ValueError, match="fars"):
        robust_stratified_sample(p_hat, nears, torch.tensor([1.0, float("nan"), 1.0]), 4)
    with pytest.raises(ValueError, match="p_hat"):
        robust_stratified_sample(p_hat.long(), nears, fars, 4)
    with pytest.raises(ValueError, match=">= 0"):
        robust_stratified_sample(-p_hat, nears, fars, 4)


# ---------------------------------------------------------------------------------------------
# the cost promise


def test_render_cost_follows_adaptive_budgets(sphere_field):
    rays = make_rays(2, 10, 10)
    p_hat = torch.softmax(3.0 * torch.randn(2, 100, 24, generator=torch.Generator().manual_seed(0)), dim=-1)
    budgets = adaptive_budgets(p_hat, 16, 32, 0.1).reshape(2, 10, 10)
    assert float(budgets.float().mean()) == pytest.approx(17.6)
    intervals = robust_stratified_sample(
        p_hat.reshape(2, 10, 10, 24), rays.nears, rays.fars, budgets, generator=torch.Generator().manual_seed(1)
    )
    assert intervals.num_samples == 32
    counting = CountingField(sphere_field)
    result = render(rays, intervals, counting)
    assert counting.points == int(budgets.sum()) == 3520  # 17.6 per ray, not 32
    assert counting.points / rays.origins[..., 0].numel() == pytest.approx(17.6)
    assert result.samples_per_ray == pytest.approx(17.6)
