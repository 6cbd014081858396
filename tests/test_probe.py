"""The low-resolution probe."""

from __future__ import annotations

import pytest
import torch

from conftest import CountingField, SphereField, make_rays
from learned_sampler import downsample_rays, render, render_probe, uniform_intervals


@pytest.mark.parametrize("downscale", [1, 2, 4])
def test_probe_shapes_and_cost(downscale, sphere_field):
    rays = make_rays(2, 16, 16)
    probe = render_probe(rays, sphere_field, downscale, 32, 8, generator=torch.Generator().manual_seed(0))
    h = w = 16 // downscale
    assert probe.rgb.shape == (2, 3, h, w)
    assert probe.weights.shape == (2, 8, h, w)
    assert probe.opacity.shape == (2, h, w)
    assert probe.rays.batch_shape == (2, h, w)
    assert probe.samples_per_ray == 32 / downscale**2
    assert probe.sample_outputs["sdf"].shape == (2, h, w, 32)
    assert probe.sample_outputs["rgb"].shape == (2, h, w, 32, 3)


def test_probe_weights_sum_to_opacity_and_bin_the_render(sphere_field):
    rays = make_rays(2, 16, 16)
    probe = render_probe(rays, sphere_field, 4, 48, 12, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(probe.weights.sum(1), probe.opacity)
    assert bool((probe.weights >= 0).all())
    # The same render done by hand: uniform samples on the downsampled rays, binned in 4s.
    probe_rays = downsample_rays(rays, 4)
    intervals = uniform_intervals(probe_rays.nears, probe_rays.fars, 48, generator=torch.Generator().manual_seed(5))
    result = render(probe_rays, intervals, sphere_field)
    binned = result.weights.reshape(2, 4, 4, 12, 4).sum(-1).permute(0, 3, 1, 2)
    torch.testing.assert_close(probe.weights, binned)
    torch.testing.assert_close(probe.rgb, result.rgb.permute(0, 3, 1, 2))
    # The sphere covers the centre of the probe image: its weight sits in the bins around t = 2.5.
    centre = probe.weights[:, :, 1:3, 1:3]
    assert bool((probe.opacity[:, 1:3, 1:3] > 0.99).all())
    surface_bin = int((2.5 - 2.25) / ((3.3 - 2.25) / 12))
    assert bool((centre.argmax(1) - surface_bin).abs().le(1).all())


def test_probe_evaluates_only_its_uniform_samples(sphere_field):
    rays = make_rays(2, 16, 16)
    counting = CountingField(sphere_field)
    render_probe(rays, counting, 4, 32, 8)
    assert counting.points == 2 * 4 * 4 * 32


def test_probe_sample_outputs_keep_gradients():
    field = SphereField()
    rays = make_rays(1, 8, 8)
    probe = render_probe(rays, field, 2, 16, 4)
    sdf = probe.sample_outputs["sdf"]
    assert sdf.requires_grad
    # sdf = |x| - radius, so d(sum sdf) / d radius = -(number of samples).
    sdf.sum().backward()
    torch.testing.assert_close(field.radius.grad, torch.tensor(-float(sdf.numel())))
    # The weights carry gradients to the field too.
    field.zero_grad()
    probe = render_probe(rays, field, 2, 16, 4)
    probe.weights.sum().backward()
    assert field.radius.grad is not None and float(field.radius.grad.abs()) > 0


def test_probe_deterministic_without_stratification(sphere_field):
    rays = make_rays(1, 8, 8)
    a = render_probe(rays, sphere_field, 2, 16, 4, stratified=False)
    b = render_probe(rays, sphere_field, 2, 16, 4, stratified=False)
    torch.testing.assert_close(a.weights, b.weights, rtol=0, atol=0)


def test_probe_validation(sphere_field):
    rays = make_rays(1, 8, 8)
    with pytest.raises(ValueError, match="num_samples.*num_bins"):
        render_probe(rays, sphere_field, 2, 30, 8)
    with pytest.raises(ValueError, match="num_bins"):
        render_probe(rays, sphere_field, 2, 16, 1)
    with pytest.raises(ValueError, match="downscale"):
        render_probe(rays, sphere_field, 0, 16, 4)
    with pytest.raises(ValueError, match="factor"):
        render_probe(rays, sphere_field, 3, 16, 4)
    with pytest.raises(ValueError, match="num_samples"):
        render_probe(rays, sphere_field, 2, 0, 4)
