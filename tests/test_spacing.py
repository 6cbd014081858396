"""Ray spacings: the maps between the normalised coordinate and depth, and the samplers that use them."""

from __future__ import annotations

import pytest
import torch

import learned_sampler as ls


def sphere_field(radius: float, beta: float):
    def field(positions, directions):
        sdf = positions.norm(dim=-1) - radius
        return {"density": ls.volsdf_density(sdf, torch.full_like(sdf, beta)), "rgb": torch.full_like(positions, 0.5)}

    return field


def _nears_fars(num_rays: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    nears = torch.linspace(0.05, 2.0, num_rays)
    return nears, nears + torch.linspace(0.5, 1000.0, num_rays)


@pytest.mark.parametrize("spacing", ls.SPACINGS)
def test_spacing_maps_are_monotone_inverse_and_exact_at_the_bounds(spacing):
    nears, fars = _nears_fars()
    s = torch.linspace(0.0, 1.0, 101, dtype=torch.float64).expand(5, 101)
    t = ls.spacing_to_depths(s, nears.double(), fars.double(), spacing)
    assert torch.equal(t[:, 0], nears.double()) and torch.equal(t[:, -1], fars.double())
    assert (t[:, 1:] > t[:, :-1]).all()
    torch.testing.assert_close(ls.depths_to_spacing(t, nears.double(), fars.double(), spacing), s)


def test_each_spacing_is_equal_in_its_own_coordinate():
    nears, fars = torch.tensor([0.5]), torch.tensor([100.0])
    s = torch.linspace(0.0, 1.0, 9, dtype=torch.float64)[None]
    linear = ls.spacing_to_depths(s, nears.double(), fars.double(), "linear")
    torch.testing.assert_close(linear.diff(), torch.full((1, 8), 99.5 / 8, dtype=torch.float64))
    disparity = ls.spacing_to_depths(s, nears.double(), fars.double(), "disparity")
    torch.testing.assert_close((1 / disparity).diff(), torch.full((1, 8), (0.01 - 2.0) / 8, dtype=torch.float64))
    # nerfacto's piecewise spacing: its spacing_fn x / 2 below 1, 1 - 1 / (2 x) beyond, is affine in s.
    lin_disp = ls.spacing_to_depths(s, nears.double(), fars.double(), "lin-disp")
    nerfacto = torch.where(lin_disp < 1, lin_disp / 2, 1 - 1 / (2 * lin_disp))
    torch.testing.assert_close(nerfacto.diff(), nerfacto.diff()[:, :1].expand(1, 8))
    # Half of lin-disp's range lies before depth 1 when near is 0 and far is infinite-ish.
    half = ls.spacing_to_depths(torch.tensor([[0.5]]), torch.tensor([0.0]), torch.tensor([1e9]), "lin-disp")
    torch.testing.assert_close(half, torch.tensor([[1.0]]))


def test_spacing_validation():
    nears, fars = torch.zeros(2), torch.ones(2)
    with pytest.raises(ValueError, match="spacing must be one of"):
        ls.spacing_to_depths(torch.zeros(2, 3), nears, fars, "log")
    with pytest.raises(ValueError, match="nears > 0"):
        ls.uniform_intervals(nears, fars, 4, spacing="disparity")
    with pytest.raises(ValueError, match="spacing must be one of"):
        ls.LearnedSamplerConfig(spacing="log")
    with pytest.raises(ValueError, match="spacing"):
        ls.UniformSampler(4, spacing="log")


@pytest.mark.parametrize("spacing", ["disparity", "lin-disp"])
def test_uniform_intervals_in_a_spacing_tile_the_ray_and_hold_their_samples(spacing):
    nears, fars = _nears_fars()
    intervals = ls.uniform_intervals(nears, fars, 16, stratified=True, generator=torch.Generator().manual_seed(0), spacing=spacing)
    torch.testing.assert_close(intervals.t_starts[:, 0], nears)
    torch.testing.assert_close(intervals.t_ends[:, -1], fars)
    torch.testing.assert_close(intervals.t_starts[:, 1:], intervals.t_ends[:, :-1])
    assert (intervals.t_samples >= intervals.t_starts).all() and (intervals.t_samples <= intervals.t_ends).all()
    edges = ls.depths_to_spacing(torch.cat([intervals.t_starts, intervals.t_ends[:, -1:]], -1), nears, fars, spacing)
    torch.testing.assert_close(edges, torch.linspace(0, 1, 17).expand(5, 17), atol=1e-5, rtol=0)
    # Linear spacing is the default, bit for bit.
    linear = ls.uniform_intervals(nears, fars, 16, stratified=False)
    assert torch.equal(linear.t_starts, ls.uniform_intervals(nears, fars, 16, stratified=False, spacing="linear").t_starts)


@pytest.mark.parametrize("sampling", ls.SAMPLING_MODES)
def test_sampler_in_lin_disp_spacing_draws_inside_the_predicted_bins(sampling):
    """A one-hot prediction on bin k: every sample lies where bin k of the spacing maps in depth."""
    num_bins = 8
    config = ls.LearnedSamplerConfig(
        num_bins=num_bins, probe_samples=16, downscale=2, cnn_width=8, spacing="lin-disp", sampling=sampling, depth_margin=0
    )
    sampler = ls.LearnedSampler(config, generator=torch.Generator().manual_seed(0))
    cameras = ls.sample_orbit_cameras(2, generator=torch.Generator().manual_seed(1))
    rays = ls.rays_from_cameras(cameras, ls.intrinsics_from_fov(30.0, 2), 4, 4, near=0.2, far=50.0)
    distribution = torch.zeros(*rays.batch_shape, num_bins)
    distribution[..., 5] = 1.0
    intervals = sampler.sample_from_distribution(rays, distribution, budgets=4)
    low = ls.spacing_to_depths(torch.full((*rays.batch_shape, 1), 5 / num_bins), rays.nears, rays.fars, "lin-disp")
    high = ls.spacing_to_depths(torch.full((*rays.batch_shape, 1), 6 / num_bins), rays.nears, rays.fars, "lin-disp")
    tolerance = 1e-4 * high
    assert (intervals.t_samples >= low - tolerance).all() and (intervals.t_samples <= high + tolerance).all()
    assert (intervals.t_starts >= low - tolerance).all() and (intervals.t_ends <= high + tolerance).all()


def test_probe_and_supervision_in_a_spacing_see_a_surface_where_it_is():
    """A sphere of radius 0.5 seen from 2.5 away with far = 100: with lin-disp bins the probe's
    mass lies in the bin holding depth 2.0, and the supervision loss is finite."""
    num_bins = 32
    config = ls.LearnedSamplerConfig(
        num_bins=num_bins, probe_samples=128, downscale=2, cnn_width=8, spacing="lin-disp", patch_size=4, target_samples=128
    )
    sampler = ls.LearnedSampler(config, generator=torch.Generator().manual_seed(0))
    origin = torch.tensor([[0.0, 0.0, -2.5]])
    cam2world = ls.look_at(origin, torch.zeros(1, 3))
    rays = ls.rays_from_cameras(cam2world, ls.intrinsics_from_fov(5.0, 1), 4, 4, near=0.1, far=100.0)
    field = sphere_field(radius=0.5, beta=0.002)
    proposal = sampler.predict(rays, field)
    weights = proposal.probe.weights[0, :, 1, 1]
    surface_bin = int(ls.depths_to_spacing(torch.tensor([[2.0]]), torch.tensor([0.1]), torch.tensor([100.0]), "lin-disp")[0, 0] * num_bins)
    assert int(weights.argmax()) == surface_bin and weights.sum() > 0.99
    assert torch.isfinite(sampler.supervision_loss(rays, field, proposal))


def test_baselines_take_a_spacing():
    nears, fars = _nears_fars()
    rays = ls.Rays(torch.zeros(5, 3), torch.tensor([[0.0, 0.0, 1.0]]).expand(5, 3), nears, fars)
    uniform = ls.UniformSampler(8, stratified=False, spacing="disparity").sample(rays)
    torch.testing.assert_close((1 / uniform.t_starts).diff(), (1 / uniform.t_starts).diff()[:, :1].expand(5, 7))
    two_pass = ls.ImportanceSampler(8, 8, spacing="lin-disp").sample(rays, sphere_field(radius=0.5, beta=0.01))
    assert two_pass.t_samples.shape == (5, 16) and (two_pass.t_samples.diff() >= 0).all()
