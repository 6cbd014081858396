"""Baseline samplers: uniform and EG3D's two-pass importance sampling."""

from __future__ import annotations

import pytest
import torch

from conftest import CountingField, SphereField, make_rays
from learned_sampler import ImportanceSampler, UniformSampler, render, smooth_weights_eg3d


def test_uniform_sampler(small_rays):
    sampler = UniformSampler(24, generator=torch.Generator().manual_seed(0))
    intervals = sampler.sample(small_rays)
    assert intervals.t_samples.shape == (2, 16, 16, 24)
    assert torch.equal(intervals.t_starts[..., 0], small_rays.nears)
    assert torch.equal(intervals.t_ends[..., -1], small_rays.fars)
    midpoints = UniformSampler(24, stratified=False).sample(small_rays)
    torch.testing.assert_close(midpoints.t_samples, 0.5 * (midpoints.t_starts + midpoints.t_ends))
    with pytest.raises(ValueError, match="num_samples"):
        UniformSampler(0)


def test_smooth_weights_eg3d_hand_example():
    weights = torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.5]])
    # max over (pad, w0), (w0, w1), ..., (w4, pad) -> [0, 1, 1, 0, 0.5, 0.5]; mean of neighbours.
    expected = torch.tensor([[0.5, 1.0, 0.5, 0.25, 0.5]]) + 0.01
    torch.testing.assert_close(smooth_weights_eg3d(weights), expected)
    torch.testing.assert_close(smooth_weights_eg3d(weights, padding=0.0), expected - 0.01)
    batch = torch.rand(2, 3, 4, 7, generator=torch.Generator().manual_seed(0))
    smoothed = smooth_weights_eg3d(batch)
    assert smoothed.shape == batch.shape
    torch.testing.assert_close(smoothed[1, 2, 3], smooth_weights_eg3d(batch[1, 2, 3][None])[0])


def test_importance_sampler_defaults_and_samples(sphere_field, small_rays):
    sampler = ImportanceSampler(generator=torch.Generator().manual_seed(0))
    assert (sampler.num_coarse, sampler.num_fine) == (48, 48)
    intervals = sampler.sample(small_rays, sphere_field)
    assert intervals.t_samples.shape == (2, 16, 16, 96)
    t = intervals.t_samples
    assert bool((t.diff(dim=-1) >= 0).all())
    assert bool((t >= small_rays.nears[..., None]).all()) and bool((t <= small_rays.fars[..., None]).all())
    # The intervals tile [near, far] around the sorted points.
    assert torch.equal(intervals.t_starts[..., 0], small_rays.nears)
    assert torch.equal(intervals.t_ends[..., -1], small_rays.fars)
    torch.testing.assert_close(intervals.t_starts[..., 1:], intervals.t_ends[..., :-1])
    assert bool((intervals.t_starts <= t).all()) and bool((t <= intervals.t_ends).all())
    assert intervals.evaluated is not None and bool((intervals.evaluated.sum(-1) == 48).all())


def test_importance_sampler_concentrates_fine_samples_at_the_surface(sphere_field):
    rays = make_rays(1, 4, 4)
    sampler = ImportanceSampler(32, 32, generator=torch.Generator().manual_seed(0))
    intervals = sampler.sample(rays, sphere_field)
    centre = intervals.t_samples[0, 1:3, 1:3]  # rays through the sphere (front surface near t = 2.5)
    near_surface = ((centre > 2.4) & (centre < 2.6)).sum(-1)
    # Uniform coarse samples put ~6 of 32 there; the fine pass adds most of its 32.
    assert bool((near_surface >= 25).all())


@pytest.mark.parametrize("reuse_coarse", [True, False])
def test_importance_sampler_field_evaluations(sphere_field, small_rays, reuse_coarse):
    counting = CountingField(sphere_field)
    sampler = ImportanceSampler(48, 48, reuse_coarse=reuse_coarse, generator=torch.Generator().manual_seed(0))
    intervals = sampler.sample(small_rays, counting)
    num_rays = 2 * 16 * 16
    assert counting.points == 48 * num_rays
    counting.reset()
    render(small_rays, intervals, counting)
    per_ray = 48 if reuse_coarse else 96
    assert counting.points == per_ray * num_rays
    assert counting.calls == 1


def test_reuse_coarse_gives_the_same_render(small_rays):
    field = SphereField()
    results = {}
    for reuse in (True, False):
        sampler = ImportanceSampler(24, 24, reuse_coarse=reuse, generator=torch.Generator().manual_seed(42))
        intervals = sampler.sample(small_rays, field)
        results[reuse] = (intervals, render(small_rays, intervals, field))
    (iv_a, a), (iv_b, b) = results[True], results[False]
    torch.testing.assert_close(iv_a.t_samples, iv_b.t_samples, rtol=0, atol=0)
    for name in ("rgb", "depth", "opacity", "weights"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=1e-6, rtol=1e-5)
    for key in ("beta", "sdf"):
        torch.testing.assert_close(a.extras[key], b.extras[key], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(a.sample_outputs[key], b.sample_outputs[key], atol=1e-6, rtol=1e-5)


def test_reuse_coarse_keeps_gradients_of_coarse_samples(small_rays):
    field = SphereField()
    sampler = ImportanceSampler(16, 16, generator=torch.Generator().manual_seed(0))
    intervals = sampler.sample(small_rays, field)
    assert intervals.field_outputs["density"].requires_grad
    result = render(small_rays, intervals, field)
    # Only the coarse samples' density contributes: the gradient still reaches the field.
    coarse_only = (result.sample_outputs["density"] * intervals.evaluated).sum()
    coarse_only.backward()
    assert field.radius.grad is not None and float(field.radius.grad.abs()) > 0


def test_importance_sampler_validation():
    with pytest.raises(ValueError, match="num_coarse"):
        ImportanceSampler(num_coarse=1)
    with pytest.raises(ValueError, match="num_fine"):
        ImportanceSampler(num_fine=0)
    with pytest.raises(ValueError, match="weight_padding"):
        ImportanceSampler(weight_padding=-0.1)
