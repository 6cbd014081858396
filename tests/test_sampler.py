"""LearnedSampler: probe + CNN + robust adaptive sampling, its supervision and its cost."""

from __future__ import annotations

import pytest
import torch

from conftest import CountingField, SphereField, make_rays
from learned_sampler import (
    SAMPLING_MODES,
    LearnedSampler,
    LearnedSamplerConfig,
    Proposal,
    p_hat_stratified_sample,
    render,
    robust_iid_sample,
    robust_stratified_sample,
)


def small_config(**overrides) -> LearnedSamplerConfig:
    values = dict(
        num_bins=16,
        probe_samples=32,
        downscale=2,
        cnn_width=8,
        patch_size=8,
        target_samples=32,
        budget=6,
    )
    values.update(overrides)
    return LearnedSamplerConfig(**values)


def make_sampler(seed: int = 0, **overrides) -> LearnedSampler:
    torch.manual_seed(seed)
    return LearnedSampler(small_config(**overrides), generator=torch.Generator().manual_seed(seed))


def test_default_config_is_the_papers_with_the_measured_additions():
    config = LearnedSamplerConfig()
    assert (config.num_bins, config.probe_samples, config.downscale, config.tau) == (192, 192, 4, 0.98)
    assert config.budget == "adaptive" and config.mean_budget == pytest.approx(17.6)
    assert config.probe_samples_per_ray == 12.0
    assert (config.cnn_probe_skip, config.cnn_probe_skip_depth_share, config.depth_margin) == (True, 0.5, 1)
    paper = LearnedSamplerConfig.paper()
    assert (paper.cnn_probe_skip, paper.cnn_probe_skip_depth_share, paper.depth_margin) == (False, 0.0, 0)
    assert paper.num_bins == config.num_bins and paper.tau == config.tau
    assert LearnedSamplerConfig.paper(num_bins=24, probe_samples=48).num_bins == 24
    assert small_config(budget=9).mean_budget == 9.0


def test_predict_shapes(sphere_field):
    sampler = make_sampler()
    rays = make_rays(2, 16, 16)
    proposal = sampler.predict(rays, sphere_field)
    assert isinstance(proposal, Proposal)
    assert proposal.logits.shape == (2, 16, 16, 16)
    distribution = proposal.distribution
    assert distribution.shape == (2, 16, 16, 16)  # (B, H, W, K), ray-major
    torch.testing.assert_close(distribution.sum(-1), torch.ones(2, 16, 16))
    assert proposal.probe.weights.shape == (2, 16, 8, 8)


@pytest.mark.parametrize("budget", [6, "adaptive"])
def test_sample_inside_near_far(sphere_field, budget):
    sampler = make_sampler(budget=budget)
    sampler.train()
    rays = make_rays(2, 16, 16)
    intervals = sampler.sample(rays, sphere_field)
    assert intervals.batch_shape == (2, 16, 16)
    nears, fars = rays.nears[..., None], rays.fars[..., None]
    for tensor in (intervals.t_starts, intervals.t_ends, intervals.t_samples):
        assert bool((tensor >= nears).all()) and bool((tensor <= fars).all())
    assert bool((intervals.t_samples.diff(dim=-1) >= 0).all())
    if budget == 6:
        assert intervals.num_samples == 6 and intervals.mask is None
    else:
        per_ray = intervals.samples_per_ray()
        assert set(per_ray.unique().tolist()) == {16.0, 32.0}
        # round(0.1 * 256) = 26 rays per image get 32 samples.
        assert [int((per_ray[b] == 32).sum()) for b in range(2)] == [26, 26]


def test_eval_mode_is_deterministic(sphere_field):
    sampler = make_sampler()
    sampler.eval()
    rays = make_rays(2, 16, 16)
    a = sampler.sample(rays, sphere_field)
    sampler.generator.manual_seed(999)  # the generator must not matter in eval mode
    b = sampler.sample(rays, sphere_field)
    for name in ("t_starts", "t_ends", "t_samples"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=0, atol=0)
    torch.testing.assert_close(a.t_samples, 0.5 * (a.t_starts + a.t_ends))
    # Training mode jitters.
    sampler.train()
    c = sampler.sample(rays, sphere_field)
    assert not torch.equal(c.t_samples, a.t_samples)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_sampling_mode_picks_the_library_function(sphere_field, training):
    """``config.sampling`` routes to its function, with the sampler's tau, depth margin, budgets and
    jitter: stratified in training, deterministic in eval mode except for i.i.d. draws."""
    assert LearnedSamplerConfig().sampling == "robust_stratified"
    rays = make_rays(1, 8, 8)
    distribution = torch.softmax(2.0 * torch.randn(1, 8, 8, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    library = {
        "robust_stratified": lambda generator: robust_stratified_sample(
            distribution, rays.nears, rays.fars, 6, 0.9, training, generator, depth_margin=1
        ),
        "robust_iid": lambda generator: robust_iid_sample(
            distribution, rays.nears, rays.fars, 6, 0.9, generator, depth_margin=1
        ),
        "p_hat_stratified": lambda generator: p_hat_stratified_sample(
            distribution, rays.nears, rays.fars, 6, training, generator
        ),
    }
    assert set(library) == set(SAMPLING_MODES)
    results = {}
    for mode in SAMPLING_MODES:
        sampler = make_sampler(seed=1, sampling=mode, tau=0.9)
        sampler.train(training)
        ours = sampler.sample_from_distribution(rays, distribution)
        expected = library[mode](torch.Generator().manual_seed(1))
        for name in ("t_starts", "t_ends", "t_samples"):
            torch.testing.assert_close(getattr(ours, name), getattr(expected, name), rtol=0, atol=0)
        again = sampler.sample_from_distribution(rays, distribution)
        deterministic = not training and mode != "robust_iid"
        assert torch.equal(again.t_samples, ours.t_samples) == deterministic
        results[mode] = ours.t_samples
    assert not torch.equal(results["robust_stratified"], results["robust_iid"])
    assert not torch.equal(results["robust_stratified"], results["p_hat_stratified"])


def test_cost_promise_adaptive_budgets_render(sphere_field):
    # 10 x 10 images: exactly 10 rays per image get 32 samples, the other 90 get 16.
    sampler = make_sampler(budget="adaptive", num_bins=32, probe_samples=32, target_samples=32)
    rays = make_rays(2, 10, 10)
    counting = CountingField(sphere_field)
    intervals = sampler.sample(rays, counting)
    probe_points = counting.points
    assert probe_points == 2 * 5 * 5 * 32  # the probe: 32 samples on 5 x 5 rays per image
    counting.reset()
    result = render(rays, intervals, counting)
    assert intervals.num_samples == 32
    assert counting.points == int(intervals.samples_per_ray().sum()) == 3520  # 2 x 100 rays x 17.6
    assert counting.shapes == [(2, 1760, 3)]
    assert result.samples_per_ray == pytest.approx(17.6)
    assert sampler.config.mean_budget == pytest.approx(17.6)
    assert sampler.config.probe_samples_per_ray == 32 / 4


def test_supervision_loss_trains_only_the_cnn():
    field = SphereField()
    sampler = make_sampler()
    sampler.train()
    rays = make_rays(2, 16, 16)
    loss = sampler.supervision_loss(rays, field)
    assert loss.dim() == 0 and bool(torch.isfinite(loss))
    loss.backward()
    for name, parameter in sampler.proposal_network.named_parameters():
        assert parameter.grad is not None, name
        assert bool(torch.isfinite(parameter.grad).all()), name
    assert any(float(p.grad.abs().sum()) > 0 for p in sampler.proposal_network.parameters())
    for name, parameter in field.named_parameters():
        assert parameter.grad is None, name
    # The sampler's only parameters are the CNN's.
    assert {id(p) for p in sampler.parameters()} == {id(p) for p in sampler.proposal_network.parameters()}


def test_supervision_loss_reuses_a_proposal():
    field = SphereField()
    sampler = make_sampler()
    rays = make_rays(1, 16, 16)
    proposal = sampler.predict(rays, field)
    counting = CountingField(field)
    sampler.supervision_loss(rays, counting, proposal)
    # Only the dense target samples of one 8 x 8 patch are evaluated: no second probe.
    assert counting.points == 8 * 8 * 32


@pytest.mark.slow
def test_point_quadrature_keeps_the_samples_and_tiles_each_ray():
    """``quadrature="points"`` draws the same samples as ``"bins"`` and weighs the spans between
    them, so the intervals of every ray (adaptive budgets included) tile [near, far]."""
    rays = make_rays(1, 8, 8)
    distribution = torch.softmax(2.0 * torch.randn(1, 8, 8, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    budgets = torch.randint(2, 9, (1, 8, 8), generator=torch.Generator().manual_seed(1))
    bins = make_sampler(tau=1.0).eval().sample_from_distribution(rays, distribution, budgets)
    points = make_sampler(tau=1.0, quadrature="points").eval().sample_from_distribution(rays, distribution, budgets)
    assert torch.equal(points.mask, bins.mask)
    torch.testing.assert_close(points.t_samples[points.mask], bins.t_samples[bins.mask])
    torch.testing.assert_close(points.deltas.sum(-1), rays.fars - rays.nears)
    # Most rays have fewer samples than their 16 bins: "bins" leaves part of each ray unweighted.
    assert bool((bins.deltas.sum(-1) < rays.fars - rays.nears - 1e-4).any())
    volumetric = LearnedSamplerConfig.volumetric(num_bins=64)
    assert (volumetric.tau, volumetric.quadrature, volumetric.num_bins) == (1.0, "points", 64)
    with pytest.raises(ValueError, match="quadrature"):
        small_config(quadrature="midpoints")


def test_a_few_adam_steps_reduce_the_loss():
    field = SphereField()
    # Without the probe skip the CNN starts from a near-uniform prediction.
    sampler = make_sampler(seed=3, patch_size=16, cnn_width=16, cnn_probe_skip=False)
    sampler.train()
    rays = make_rays(2, 16, 16, seed=4)
    optimizer = torch.optim.Adam(sampler.parameters(), lr=1e-2)

    def evaluation_loss() -> float:
        sampler.generator.manual_seed(123)  # same probe jitter and target jitter every time
        with torch.no_grad():
            return float(sampler.supervision_loss(rays, field))

    before = evaluation_loss()
    for _ in range(40):
        optimizer.zero_grad()
        loss = sampler.supervision_loss(rays, field)
        loss.backward()
        optimizer.step()
    after = evaluation_loss()
    # From ~log(16) (a uniform prediction) down by a clear margin (to ~0.66x for this seed).
    assert after < 0.8 * before, (before, after)


def test_sample_from_distribution_on_ray_chunks(sphere_field):
    sampler = make_sampler(budget=5)
    sampler.eval()
    rays = make_rays(2, 8, 8)
    with torch.no_grad():
        distribution = sampler.predict(rays, sphere_field).distribution
    image_level = sampler.sample_from_distribution(rays, distribution)
    assert image_level.batch_shape == (2, 8, 8)

    flat_rays, flat_distribution = rays.flatten(), distribution.reshape(-1, 16)
    order = torch.randperm(128, generator=torch.Generator().manual_seed(0))
    starts = torch.empty(128, 5)
    ends = torch.empty(128, 5)
    samples = torch.empty(128, 5)
    for chunk in order.split(37):  # unordered chunks of uneven size, 1-D ray batches
        intervals = sampler.sample_from_distribution(flat_rays[chunk], flat_distribution[chunk])
        assert intervals.batch_shape == (len(chunk),)
        starts[chunk], ends[chunk], samples[chunk] = intervals.t_starts, intervals.t_ends, intervals.t_samples
    flat = image_level.reshape(128)
    torch.testing.assert_close(starts, flat.t_starts, rtol=0, atol=0)
    torch.testing.assert_close(ends, flat.t_ends, rtol=0, atol=0)
    torch.testing.assert_close(samples, flat.t_samples, rtol=0, atol=0)


def test_sample_from_distribution_adaptive_chunks_and_overrides(sphere_field):
    sampler = make_sampler(budget="adaptive")
    sampler.train()
    rays = make_rays(1, 8, 8).flatten()
    distribution = torch.softmax(torch.randn(64, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    intervals = sampler.sample_from_distribution(rays[:40], distribution[:40])
    per_ray = intervals.samples_per_ray()
    assert int((per_ray == 32).sum()) == 4 and int((per_ray == 16).sum()) == 36
    fixed = sampler.sample_from_distribution(rays, distribution, budgets=3)
    assert fixed.num_samples == 3 and fixed.mask is None
    per_ray_budgets = torch.arange(64) % 4 + 1
    custom = sampler.sample_from_distribution(rays, distribution, budgets=per_ray_budgets)
    torch.testing.assert_close(custom.samples_per_ray(), per_ray_budgets.float())
    with pytest.raises(ValueError, match="distribution"):
        sampler.sample_from_distribution(rays, distribution[:10])
    with pytest.raises(ValueError, match="bins"):
        sampler.sample_from_distribution(rays, distribution[:, :8])


def test_supervision_loss_needs_image_rays(sphere_field):
    sampler = make_sampler()
    with pytest.raises(ValueError, match="image rays"):
        sampler.supervision_loss(make_rays(1, 8, 8).flatten(), sphere_field)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(tau=0.0), "tau"),
        (dict(tau=1.5), "tau"),
        (dict(budget=0), "budget"),
        (dict(budget=2.5), "budget"),
        (dict(budget="many"), "budget"),
        (dict(num_bins=1, probe_samples=4, target_samples=4), "num_bins"),
        (dict(probe_samples=40), "probe_samples"),
        (dict(target_samples=40), "target_samples"),
        (dict(adaptive_fraction=1.5), "adaptive_fraction"),
        (dict(adaptive_low=32, adaptive_high=16), "adaptive_high"),
        (dict(adaptive_low=0), "adaptive_low"),
        (dict(downscale=0), "downscale"),
        (dict(patch_size=0), "patch_size"),
        (dict(target_blur_sigma=-1.0), "target_blur_sigma"),
        (dict(cnn_probe_skip_floor=0.0), "cnn_probe_skip_floor"),
        (dict(sampling="iid"), "sampling"),
    ],
)
def test_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        small_config(**overrides)


def test_non_power_of_two_downscale_is_rejected():
    with pytest.raises(ValueError, match="downscale"):
        LearnedSampler(small_config(downscale=3))


def test_hit_probability_follows_the_probe_and_steers_adaptive_budgets():
    sphere_field = SphereField(radius=0.1, beta=0.002)  # small and tight: empty space around it
    sampler = make_sampler(budget="adaptive", adaptive_low=2, adaptive_high=4, adaptive_fraction=0.1)
    sampler.eval()
    rays = make_rays(1, 16, 16)
    with torch.no_grad():
        proposal = sampler.predict(rays, sphere_field)
    hit = proposal.hit_probability
    assert hit.shape == (1, 16, 16)
    assert float(hit.min()) >= 0.0 and float(hit.max()) <= 1.0
    # Max-pooled probe opacity: at least the opacity of the probe pixel each ray falls in.
    probe_opacity = proposal.probe.opacity.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    assert bool((hit >= probe_opacity - 0.35).all())
    budgets = sampler.budgets_for(proposal.distribution, hit)
    # Rays that the probe saw as (nearly) empty never take the high budget.
    empty = hit < 0.01
    assert int(empty.sum()) > 20
    assert bool((budgets[empty] == 2).all())
    assert int((budgets == 4).sum()) == round(0.1 * 256)
    # sample() uses the same policy.
    with torch.no_grad():
        intervals = sampler.sample(rays, sphere_field)
    assert torch.equal(intervals.samples_per_ray().long(), budgets)
