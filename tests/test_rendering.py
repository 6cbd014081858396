"""Volume rendering: weights, compositing, masked field evaluation and output validation."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import CountingField, SphereField, make_rays
from learned_sampler import (
    RayIntervals,
    Rays,
    accumulate_along_rays,
    evaluate_field,
    render,
    render_transmittance_from_density,
    render_weights_from_density,
    robust_stratified_sample,
    uniform_intervals,
)

# ---------------------------------------------------------------------------------------------
# weights and transmittance


def test_weights_match_hand_computed_example():
    deltas = torch.tensor([1.0, 1.0, 2.0, 1.0])
    densities = torch.tensor([0.0, math.log(2.0), math.log(2.0) / 2, 1.0])
    # alpha = [0, 1/2, 1/2, 1 - e^-1], T = [1, 1, 1/2, 1/4]
    transmittance, alphas = render_transmittance_from_density(deltas, densities)
    torch.testing.assert_close(transmittance, torch.tensor([1.0, 1.0, 0.5, 0.25]))
    torch.testing.assert_close(alphas, torch.tensor([0.0, 0.5, 0.5, 1 - math.exp(-1)]))
    weights = render_weights_from_density(deltas, densities)
    torch.testing.assert_close(weights, torch.tensor([0.0, 0.5, 0.25, 0.25 * (1 - math.exp(-1))]))


def test_fully_opaque_first_sample_takes_all_weight():
    weights = render_weights_from_density(torch.ones(2, 3), torch.tensor([[1e6, 1.0, 5.0], [1e4, 1e4, 1e4]]))
    torch.testing.assert_close(weights, torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))


def test_transmittance_stable_for_huge_densities():
    # Optical depths overflow float32 (1e38 * 10 = inf) or swamp earlier ones (0.5 + 1e8 = 1e8).
    deltas = torch.tensor([[10.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    densities = torch.tensor([[1e38, 1.0, 1e38], [0.5, 1e8, 1.0], [3e38, 3e38, 3e38], [0.0, 0.0, 1e30]])
    transmittance, alphas = render_transmittance_from_density(deltas, densities)
    assert bool(torch.isfinite(transmittance).all()) and bool(torch.isfinite(alphas).all())
    weights = render_weights_from_density(deltas, densities)
    assert bool(torch.isfinite(weights).all())
    expected = torch.tensor(
        [[1.0, 0.0, 0.0], [1 - math.exp(-0.5), math.exp(-0.5), 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    )
    torch.testing.assert_close(weights, expected)
    assert bool((weights.sum(-1) <= 1.0 + 1e-6).all())


def test_transmittance_gradient_finite_for_huge_densities():
    densities = torch.tensor([1.0, 1e20, 2.0], requires_grad=True)
    weights = render_weights_from_density(torch.full((3,), 0.1), densities)
    weights.sum().backward()
    assert bool(torch.isfinite(densities.grad).all())


_densities = st.one_of(
    st.just(0.0),
    st.floats(0.0, 10.0),
    st.floats(-3.0, 12.0).map(lambda e: 10.0**e),
)


@settings(max_examples=50, deadline=None)
@given(
    densities=st.lists(_densities, min_size=1, max_size=12),
    deltas_seed=st.integers(0, 2**31 - 1),
)
def test_weights_are_nonnegative_and_sum_at_most_one(densities, deltas_seed):
    density = torch.tensor(densities, dtype=torch.float32)
    deltas = torch.rand(density.shape, generator=torch.Generator().manual_seed(deltas_seed)) * 2.0
    weights = render_weights_from_density(deltas, density)
    assert bool(torch.isfinite(weights).all())
    assert bool((weights >= 0).all())
    assert float(weights.sum()) <= 1.0 + 1e-5
    # The weights sum to 1 - T_final (exactly, in float64).
    optical = (density.double() * deltas.double()).sum()
    assert float(weights.sum()) == pytest.approx(-math.expm1(-float(optical)), abs=1e-5)


def test_render_weights_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="deltas.*densities"):
        render_weights_from_density(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match="densities"):
        render_weights_from_density(torch.ones(3), torch.ones(3, dtype=torch.long))


def test_accumulate_along_rays_scalar_and_vector():
    weights = torch.tensor([[0.2, 0.3, 0.5]])
    torch.testing.assert_close(accumulate_along_rays(weights, torch.tensor([[1.0, 2.0, 3.0]])), torch.tensor([2.3]))
    values = torch.arange(9.0).reshape(1, 3, 3)
    torch.testing.assert_close(accumulate_along_rays(weights, values), (weights[..., None] * values).sum(-2))
    with pytest.raises(ValueError, match="values"):
        accumulate_along_rays(weights, torch.ones(1, 4, 3))


# ---------------------------------------------------------------------------------------------
# compositing


def _lookup_field(outputs: dict[str, torch.Tensor]):
    """A field that returns fixed per-sample outputs (for dense evaluation of known shapes)."""

    def field(positions, directions):
        assert positions.shape[:-1] == outputs["density"].shape
        return dict(outputs)

    return field


def _line_rays(n: int, near: float = 1.0, far: float = 3.0) -> Rays:
    return Rays(torch.zeros(n, 3), torch.tensor([[0.0, 0.0, 1.0]]).expand(n, 3), near, far)


def test_render_composites_rgb_depth_opacity_and_extras():
    rays = _line_rays(2)
    intervals = RayIntervals.from_edges(
        torch.tensor([[1.0, 1.5, 2.0, 2.5]]).expand(2, 4), torch.tensor([[1.5, 2.0, 2.5, 3.0]]).expand(2, 4)
    )
    density = torch.tensor([[0.0, 2 * math.log(2.0), 2 * math.log(2.0), 0.0], [0.0, 0.0, 0.0, 0.0]])
    rgb = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]).expand(2, 4, 3)
    beta = torch.tensor([[0.1, 0.2, 0.4, 0.8]]).expand(2, 4)
    feature = torch.arange(24.0).reshape(2, 4, 3)
    field = _lookup_field({"density": density, "rgb": rgb, "beta": beta, "feature": feature})
    result = render(rays, intervals, field)
    # Ray 0: weights [0, 1/2, 1/4, 0].
    expected_weights = torch.tensor([[0.0, 0.5, 0.25, 0.0], [0.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(result.weights, expected_weights)
    torch.testing.assert_close(result.opacity, torch.tensor([0.75, 0.0]))
    torch.testing.assert_close(result.rgb, torch.tensor([[0.0, 0.5, 0.25], [0.0, 0.0, 0.0]]))
    # Depth: (1/2 * 1.75 + 1/4 * 2.25) / (3/4); a ray hitting nothing gets its far.
    torch.testing.assert_close(result.depth, torch.tensor([(0.5 * 1.75 + 0.25 * 2.25) / 0.75, 3.0]))
    # Beta composited is the surface-variance image: sum_i w_i beta_i.
    torch.testing.assert_close(result.extras["beta"], torch.tensor([0.5 * 0.2 + 0.25 * 0.4, 0.0]))
    torch.testing.assert_close(result.extras["feature"], (expected_weights[..., None] * feature).sum(-2))
    assert set(result.extras) == {"beta", "feature"}
    assert set(result.sample_outputs) == {"density", "rgb", "beta", "feature"}
    assert result.samples_per_ray == 4.0

    only_beta = render(rays, intervals, field, composite=["beta"])
    assert set(only_beta.extras) == {"beta"}
    assert render(rays, intervals, field, composite=()).extras == {}
    with pytest.raises(ValueError, match="missing"):
        render(rays, intervals, field, composite=["missing"])


def test_render_background():
    rays = _line_rays(2)
    intervals = RayIntervals.from_edges(torch.tensor([[1.0, 2.0]]).expand(2, 2), torch.tensor([[2.0, 3.0]]).expand(2, 2))
    density = torch.tensor([[math.log(2.0), 0.0], [0.0, 0.0]])
    rgb = torch.full((2, 2, 3), 0.2)
    field = _lookup_field({"density": density, "rgb": rgb})
    black = render(rays, intervals, field)
    torch.testing.assert_close(black.rgb, torch.tensor([[0.1, 0.1, 0.1], [0.0, 0.0, 0.0]]))
    white = render(rays, intervals, field, background=1.0)
    torch.testing.assert_close(white.rgb, torch.tensor([[0.6, 0.6, 0.6], [1.0, 1.0, 1.0]]))
    colour = torch.tensor([0.0, 0.5, 1.0])
    coloured = render(rays, intervals, field, background=colour)
    torch.testing.assert_close(coloured.rgb, black.rgb + (1 - black.opacity)[:, None] * colour)
    per_ray = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(render(rays, intervals, field, background=per_ray).rgb, black.rgb + (1 - black.opacity)[:, None] * per_ray)


def test_render_sphere_field_images(sphere_field, small_rays):
    intervals = uniform_intervals(small_rays.nears, small_rays.fars, 64, stratified=False)
    result = render(small_rays, intervals, sphere_field)
    assert result.rgb.shape == (2, 16, 16, 3)
    assert result.depth.shape == result.opacity.shape == (2, 16, 16)
    assert result.weights.shape == (2, 16, 16, 64)
    # The sphere of radius 0.2 covers the image centre but not the corners.
    assert bool((result.opacity[:, 6:10, 6:10] > 0.99).all())
    assert bool((result.opacity[:, 0, 0] < 0.01).all())
    # Hit depth is about the distance to the sphere's front (2.7 - 0.2).
    assert bool(((result.depth[:, 7:9, 7:9] - 2.5).abs() < 0.05).all())
    torch.testing.assert_close(result.extras["beta"], accumulate_along_rays(result.weights, result.sample_outputs["beta"]))
    torch.testing.assert_close(result.extras["sdf"], accumulate_along_rays(result.weights, result.sample_outputs["sdf"]))
    assert bool((result.depth >= small_rays.nears).all()) and bool((result.depth <= small_rays.fars).all())


# ---------------------------------------------------------------------------------------------
# masked evaluation


def _masked_intervals(rays: Rays, seed: int = 0, equal_images: bool = False) -> RayIntervals:
    """Robust samples with per-ray budgets 3..9 (padding after the real samples).

    With ``equal_images`` every image of ``(B, H, W)`` rays gets a permutation of the first
    image's budgets, so all images hold the same number of real samples.
    """
    generator = torch.Generator().manual_seed(seed)
    p_hat = torch.rand(*rays.batch_shape, 12, generator=generator)
    budgets = torch.randint(3, 10, rays.batch_shape, generator=generator)
    if equal_images:
        first = budgets[0].reshape(-1)
        perms = [torch.randperm(first.numel(), generator=generator) for _ in range(budgets.shape[0])]
        budgets = torch.stack([first[perm].reshape(budgets.shape[1:]) for perm in perms])
    intervals = robust_stratified_sample(p_hat, rays.nears, rays.fars, budgets, tau=0.95, generator=generator)
    assert intervals.mask is not None
    return intervals


def test_evaluate_field_only_on_masked_samples_grouped_by_image(sphere_field):
    rays = make_rays(3, 8, 8)
    intervals = _masked_intervals(rays, equal_images=True)
    real = int(intervals.mask.sum())
    counting = CountingField(sphere_field)
    outputs = evaluate_field(counting, rays, intervals)
    # One call, (B0, N, 3) with B0 the image batch, and exactly the real samples.
    assert counting.shapes == [(3, real // 3, 3)]
    assert counting.points == real < intervals.t_samples.numel()
    # Outputs are laid out like the samples, exact where real and zero at padding.
    dense = sphere_field(rays.points_at(intervals.t_samples), rays.directions[..., None, :].expand(*intervals.t_samples.shape, 3))
    for key in ("density", "rgb", "beta", "sdf"):
        assert outputs[key].shape == dense[key].shape
        mask = intervals.mask if dense[key].dim() == intervals.mask.dim() else intervals.mask[..., None]
        mask = mask.expand_as(dense[key])
        torch.testing.assert_close(outputs[key][mask], dense[key][mask])
        assert bool((outputs[key][~mask] == 0).all())


def test_evaluate_field_images_with_different_sample_counts(sphere_field):
    rays = make_rays(3, 8, 8)
    intervals = _masked_intervals(rays)
    counts = intervals.mask.reshape(3, -1).sum(-1)
    assert len(set(counts.tolist())) > 1
    counting = CountingField(sphere_field)
    outputs = evaluate_field(counting, rays, intervals)
    # Images are padded to the largest one, never to the padded sample count of every ray.
    assert counting.shapes == [(3, int(counts.max()), 3)]
    assert counting.points < intervals.t_samples.numel()
    dense = sphere_field(rays.points_at(intervals.t_samples), rays.directions[..., None, :].expand(*intervals.t_samples.shape, 3))
    torch.testing.assert_close(outputs["density"][intervals.mask], dense["density"][intervals.mask])
    assert bool((outputs["density"][~intervals.mask] == 0).all())


def test_render_field_points_equal_sum_of_budgets(sphere_field):
    rays = make_rays(2, 8, 8)
    generator = torch.Generator().manual_seed(1)
    p_hat = torch.rand(2, 8, 8, 10, generator=generator)
    # Same multiset of budgets in both images: each image is one group of the same size.
    budgets = torch.randint(1, 12, (8, 8), generator=generator).expand(2, 8, 8).contiguous()
    budgets[1] = budgets[1].flip(0)
    intervals = robust_stratified_sample(p_hat, rays.nears, rays.fars, budgets, generator=generator)
    counting = CountingField(sphere_field)
    result = render(rays, intervals, counting)
    assert counting.shapes == [(2, int(budgets[0].sum()), 3)]
    assert counting.points == int(budgets.sum())
    assert result.samples_per_ray == pytest.approx(float(budgets.float().mean()))


def test_render_one_dimensional_rays_are_one_group(sphere_field):
    rays = make_rays(1, 8, 8).flatten()
    intervals = _masked_intervals(rays, seed=3)
    counting = CountingField(sphere_field)
    render(rays, intervals, counting)
    assert counting.shapes == [(1, int(intervals.mask.sum()), 3)]


def test_masked_render_equals_dense_render_of_same_samples(sphere_field):
    rays = make_rays(2, 8, 8)
    masked = _masked_intervals(rays, seed=5)
    # The padding samples have zero length, so rendering every slot densely adds nothing.
    dense = RayIntervals(masked.t_starts, masked.t_ends, masked.t_samples)
    assert bool((masked.deltas[~masked.mask] == 0).all())
    result_masked = render(rays, masked, sphere_field)
    result_dense = render(rays, dense, sphere_field)
    for name in ("rgb", "depth", "opacity", "weights"):
        torch.testing.assert_close(getattr(result_masked, name), getattr(result_dense, name), atol=1e-6, rtol=1e-5)
    for key in ("beta", "sdf"):
        torch.testing.assert_close(result_masked.extras[key], result_dense.extras[key], atol=1e-6, rtol=1e-5)
    # And each ray equals the render of its real samples alone.
    budgets = masked.mask.sum(-1)
    for b, i, j in [(0, 0, 0), (1, 3, 5), (1, 7, 7)]:
        n = int(budgets[b, i, j])
        single = RayIntervals(
            masked.t_starts[b, i, j, None, :n], masked.t_ends[b, i, j, None, :n], masked.t_samples[b, i, j, None, :n]
        )
        ray = rays[b, i, j].reshape(1)
        alone = render(ray, single, sphere_field)
        torch.testing.assert_close(alone.rgb[0], result_masked.rgb[b, i, j], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(alone.weights[0], result_masked.weights[b, i, j, :n], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("masked", [False, True])
def test_gradients_reach_field_parameters(masked):
    field = SphereField()
    rays = make_rays(1, 8, 8)
    if masked:
        intervals = _masked_intervals(rays)
    else:
        intervals = uniform_intervals(rays.nears, rays.fars, 32, generator=torch.Generator().manual_seed(0))
    result = render(rays, intervals, field)
    (result.rgb.sum() + result.depth.sum() + result.extras["beta"].sum()).backward()
    for name, parameter in field.named_parameters():
        assert parameter.grad is not None, name
        assert bool(torch.isfinite(parameter.grad).all()), name
        assert float(parameter.grad.abs().sum()) > 0, name


# ---------------------------------------------------------------------------------------------
# validation of field outputs


def _bad_field(kind: str):
    def field(positions, directions):
        shape = positions.shape[:-1]
        out = {"density": torch.ones(shape), "rgb": torch.zeros(*shape, 3)}
        if kind == "no_density":
            del out["density"]
        elif kind == "no_rgb":
            del out["rgb"]
        elif kind == "rgb_shape":
            out["rgb"] = torch.zeros(*shape, 4)
        elif kind == "density_shape":
            out["density"] = torch.ones(*shape, 1)
        elif kind == "extra_shape":
            out["beta"] = torch.ones(7)
        elif kind == "negative":
            out["density"] = -torch.ones(shape)
        elif kind == "nan":
            density = torch.ones(shape)
            density.view(-1)[0] = float("nan")
            out["density"] = density
        elif kind == "not_tensor":
            out["beta"] = 3.0
        elif kind == "not_dict":
            return [out["density"], out["rgb"]]
        return out

    return field


@pytest.mark.parametrize(
    "kind, message",
    [
        ("no_density", "density"),
        ("no_rgb", "rgb"),
        ("rgb_shape", "rgb"),
        ("density_shape", "density"),
        ("extra_shape", "beta"),
        ("negative", "density.*negative"),
        ("nan", "density"),
        ("not_tensor", "beta"),
        ("not_dict", "dict"),
    ],
)
@pytest.mark.parametrize("masked", [False, True])
def test_render_rejects_bad_field_outputs(kind, message, masked):
    rays = make_rays(1, 4, 4)
    intervals = _masked_intervals(rays) if masked else uniform_intervals(rays.nears, rays.fars, 8, stratified=False)
    with pytest.raises(ValueError, match=message):
        render(rays, intervals, _bad_field(kind))


def test_render_rejects_mismatched_intervals(sphere_field):
    rays = make_rays(1, 4, 4)
    intervals = uniform_intervals(rays.nears[:, :2], rays.fars[:, :2], 8)
    with pytest.raises(ValueError, match="intervals"):
        render(rays, intervals, sphere_field)
