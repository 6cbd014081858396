"""Adaptive per-ray budgets: the hardest fraction of each group gets the high budget."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from learned_sampler import adaptive_budgets


def _leftover_mass(p_hat: torch.Tensor, top_k: int) -> torch.Tensor:
    p = p_hat / p_hat.sum(-1, keepdim=True)
    return 1.0 - torch.topk(p, min(top_k, p.shape[-1]), dim=-1).values.sum(-1)


@settings(max_examples=50, deadline=None)
@given(
    groups=st.integers(1, 3),
    num_rays=st.integers(1, 60),
    num_bins=st.integers(2, 40),
    fraction=st.floats(0.0, 1.0),
    low=st.integers(1, 20),
    extra=st.integers(0, 20),
    top_k=st.one_of(st.none(), st.integers(1, 40)),
    seed=st.integers(0, 2**31 - 1),
)
def test_hardest_fraction_gets_the_high_budget(groups, num_rays, num_bins, fraction, low, extra, top_k, seed):
    high = low + extra
    generator = torch.Generator().manual_seed(seed)
    p_hat = torch.softmax(4.0 * torch.randn(groups, num_rays, num_bins, generator=generator), dim=-1)
    budgets = adaptive_budgets(p_hat, low, high, fraction, top_k)
    assert budgets.shape == (groups, num_rays) and budgets.dtype == torch.long
    assert set(budgets.unique().tolist()) <= {low, high}
    if high == low:
        assert bool((budgets == low).all())
        return
    num_high = round(fraction * num_rays)
    leftover = _leftover_mass(p_hat, low if top_k is None else top_k)
    for g in range(groups):
        is_high = budgets[g] == high
        assert int(is_high.sum()) == num_high
        if 0 < num_high < num_rays:
            # The high-budget rays are those with the most mass outside their top-k bins.
            assert float(leftover[g][is_high].min()) >= float(leftover[g][~is_high].max()) - 1e-6


def test_paper_setting_mean_budget():
    p_hat = torch.softmax(torch.randn(4, 1000, 192, generator=torch.Generator().manual_seed(0)), dim=-1)
    budgets = adaptive_budgets(p_hat)  # 16 / 32 / 10 %, top_k = 16
    assert float(budgets.float().mean()) == pytest.approx(17.6)
    assert [int((b == 32).sum()) for b in budgets] == [100] * 4


def test_multimodal_rays_are_the_hard_ones():
    num_bins = 32
    unimodal = torch.zeros(num_bins)
    unimodal[10] = 1.0
    bimodal = torch.zeros(num_bins)
    bimodal[5], bimodal[25] = 0.5, 0.5
    spread = torch.ones(num_bins)
    p_hat = torch.stack([unimodal, spread, unimodal, bimodal, unimodal, unimodal, unimodal, unimodal, unimodal, unimodal])
    # top_k = 1: the bimodal and spread rays leave mass outside their largest bin.
    budgets = adaptive_budgets(p_hat[None], low=4, high=8, fraction=0.2, top_k=1)[0]
    assert budgets.tolist() == [4, 8, 4, 8, 4, 4, 4, 4, 4, 4]
    # With top_k = 2 the bimodal ray is covered; only the spread ray stays hard.
    budgets = adaptive_budgets(p_hat[None], low=4, high=8, fraction=0.1, top_k=2)[0]
    assert budgets.tolist() == [4, 8, 4, 4, 4, 4, 4, 4, 4, 4]


def test_fraction_edges_and_unnormalised_input():
    p_hat = torch.rand(2, 10, 8, generator=torch.Generator().manual_seed(0)) * 5.0
    assert bool((adaptive_budgets(p_hat, 16, 32, 0.0) == 16).all())
    assert bool((adaptive_budgets(p_hat, 16, 32, 1.0) == 32).all())
    normalised = p_hat / p_hat.sum(-1, keepdim=True)
    assert torch.equal(adaptive_budgets(p_hat, 2, 5, 0.3, top_k=2), adaptive_budgets(normalised, 2, 5, 0.3, top_k=2))


def test_adaptive_budgets_validation():
    p_hat = torch.rand(10, 8, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="high"):
        adaptive_budgets(p_hat, low=16, high=8)
    for fraction in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="fraction"):
            adaptive_budgets(p_hat, fraction=fraction)
    with pytest.raises(ValueError, match="low"):
        adaptive_budgets(p_hat, low=0, high=4)
    with pytest.raises(ValueError, match="top_k"):
        adaptive_budgets(p_hat, top_k=0)
    with pytest.raises(ValueError, match="p_hat"):
        adaptive_budgets(torch.rand(8))
    with pytest.raises(ValueError, match="p_hat"):
        adaptive_budgets(torch.rand(10, 1))
    with pytest.raises(ValueError, match="p_hat"):
        adaptive_budgets(torch.ones(10, 8, dtype=torch.long))


def test_hit_probability_keeps_empty_rays_from_the_high_budget():
    # Ray 0 is flat (the most leftover mass) but hits nothing; rays 1 and 2 are bimodal hits.
    p_hat = torch.tensor([[[0.25, 0.25, 0.25, 0.25], [0.5, 0.0, 0.0, 0.5], [0.9, 0.1, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]])
    assert adaptive_budgets(p_hat, 1, 4, 0.25).tolist() == [[4, 1, 1, 1]]
    hit = torch.tensor([[0.0, 1.0, 1.0, 1.0]])
    assert adaptive_budgets(p_hat, 1, 4, 0.25, hit_probability=hit).tolist() == [[1, 4, 1, 1]]
    # Where every ray hits (the paper's data) the weighting changes nothing.
    assert torch.equal(
        adaptive_budgets(p_hat, 1, 4, 0.5, hit_probability=torch.ones(1, 4)), adaptive_budgets(p_hat, 1, 4, 0.5)
    )
    with pytest.raises(ValueError, match="hit_probability"):
        adaptive_budgets(p_hat, 1, 4, 0.25, hit_probability=torch.ones(4))
