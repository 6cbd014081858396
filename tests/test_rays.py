"""Rays and ray generation in the EG3D / OpenCV convention."""

from __future__ import annotations

import math

import pytest
import torch

from learned_sampler import Rays, downsample_rays, intrinsics_from_fov, orbit_cameras, rays_from_cameras
from learned_sampler.cameras import EG3D_CAMERA_RADIUS, EG3D_FOV_DEGREES

HALF_PI = torch.tensor([math.pi / 2])


def frontal_rays(height: int, width: int, near=2.25, far=3.3, pivot=(0.0, 0.0, 0.0)) -> Rays:
    cam2world = orbit_cameras(HALF_PI, HALF_PI, pivot=pivot)
    return rays_from_cameras(cam2world, intrinsics_from_fov(EG3D_FOV_DEGREES), height, width, near, far)


# ---------------------------------------------------------------------------------------------
# EG3D / OpenCV convention


def test_frontal_camera_sits_on_plus_z_and_centre_ray_hits_origin():
    rays = frontal_rays(5, 7)
    assert rays.batch_shape == (1, 5, 7)
    origin = rays.origins[0, 2, 3]
    torch.testing.assert_close(origin, torch.tensor([0.0, 0.0, EG3D_CAMERA_RADIUS]))
    # The centre pixel (odd size: exactly the optical axis) looks straight at the origin.
    torch.testing.assert_close(rays.directions[0, 2, 3], torch.tensor([0.0, 0.0, -1.0]), atol=1e-6, rtol=0)
    # Every ray looks towards the origin (negative z), from the same origin.
    assert bool((rays.directions[..., 2] < -0.9).all())
    torch.testing.assert_close(rays.origins, origin.expand_as(rays.origins))


def test_centre_ray_points_at_pivot():
    pivot = (0.1, -0.2, 0.3)
    rays = frontal_rays(9, 9, pivot=pivot)
    origin, direction = rays.origins[0, 4, 4], rays.directions[0, 4, 4]
    to_pivot = torch.tensor(pivot) - origin
    torch.testing.assert_close(direction, to_pivot / to_pivot.norm(), atol=1e-6, rtol=0)
    # The point at the pivot's depth is the pivot.
    centre = rays[0, 4, 4]
    point = centre.points_at(to_pivot.norm().reshape(1))[0]
    torch.testing.assert_close(point, torch.tensor(pivot), atol=1e-5, rtol=0)


def test_directions_are_unit(small_rays):
    norms = small_rays.directions.norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms))


def test_opencv_image_axes_map_to_world_x_and_minus_y_for_frontal_camera():
    height, width = 6, 8
    rays = frontal_rays(height, width)
    d = rays.directions[0]
    # Image x (columns) grows to the right: world +x for the frontal camera.
    assert bool((d[:, 1:, 0] > d[:, :-1, 0]).all())
    assert bool((d[:, 0, 0] < 0).all()) and bool((d[:, -1, 0] > 0).all())
    # Image y (rows) grows downwards: world -y.
    assert bool((d[1:, :, 1] < d[:-1, :, 1]).all())
    assert bool((d[0, :, 1] > 0).all()) and bool((d[-1, :, 1] < 0).all())
    # Exact pinhole directions: R = diag(1, -1, -1) for the frontal camera.
    focal = 1.0 / (math.tan(math.radians(EG3D_FOV_DEGREES) / 2) * math.sqrt(2.0))
    v, u = torch.meshgrid(
        (torch.arange(height) + 0.5) / height, (torch.arange(width) + 0.5) / width, indexing="ij"
    )
    expected = torch.stack([(u - 0.5) / focal, -(v - 0.5) / focal, -torch.ones_like(u)], dim=-1)
    expected = expected / expected.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(d, expected, atol=1e-6, rtol=0)


def test_intrinsics_principal_point_and_skew_are_used():
    cam2world = orbit_cameras(HALF_PI, HALF_PI)
    intrinsics = intrinsics_from_fov(EG3D_FOV_DEGREES)
    shifted = intrinsics.clone()
    shifted[0, 0, 2] = 0.25  # principal point at a quarter of the width
    rays = rays_from_cameras(cam2world, shifted, 4, 4, 2.0, 3.0)
    # The optical axis now goes through u = 0.25 (between columns 0 and 1): those straddle x = 0.
    assert float(rays.directions[0, 0, 0, 0]) < 0 < float(rays.directions[0, 0, 1, 0])
    torch.testing.assert_close(rays.directions[0, 0, 0, 0], -rays.directions[0, 0, 1, 0])
    skewed = intrinsics.clone()
    skewed[0, 0, 1] = 0.3
    rays_skew = rays_from_cameras(cam2world, skewed, 4, 4, 2.0, 3.0)
    rays_plain = rays_from_cameras(cam2world, intrinsics, 4, 4, 2.0, 3.0)
    assert not torch.allclose(rays_skew.directions, rays_plain.directions)


# ---------------------------------------------------------------------------------------------
# near / far, indexing


def test_scalar_near_far_broadcast(small_rays):
    assert small_rays.nears.shape == small_rays.batch_shape == small_rays.fars.shape
    assert bool((small_rays.nears == 2.25).all()) and bool((small_rays.fars == 3.3).all())


def test_per_camera_near_far_broadcast():
    cam2world = orbit_cameras(torch.full((2,), math.pi / 2), torch.full((2,), math.pi / 2))
    intrinsics = intrinsics_from_fov(EG3D_FOV_DEGREES, 2)
    near = torch.tensor([1.0, 2.0]).view(2, 1, 1)
    far = torch.tensor([3.0, 4.0]).view(2, 1, 1)
    rays = rays_from_cameras(cam2world, intrinsics, 3, 5, near, far)
    assert rays.nears.shape == (2, 3, 5)
    assert bool((rays.nears[0] == 1.0).all()) and bool((rays.nears[1] == 2.0).all())
    assert bool((rays.fars[0] == 3.0).all()) and bool((rays.fars[1] == 4.0).all())


def test_per_ray_near_far_tensor():
    origins = torch.zeros(4, 3)
    directions = torch.tensor([[0.0, 0.0, 2.0]]).expand(4, 3)
    nears = torch.tensor([0.0, 1.0, 2.0, 3.0])
    rays = Rays(origins, directions, nears, nears + 0.5)
    torch.testing.assert_close(rays.nears, nears)
    torch.testing.assert_close(rays.fars, nears + 0.5)
    # Directions are normalised on construction.
    torch.testing.assert_close(rays.directions, torch.tensor([[0.0, 0.0, 1.0]]).expand(4, 3))
    torch.testing.assert_close(rays.points_at(torch.tensor([[1.0, 2.0]]).expand(4, 2))[0], torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 2.0]]))


def test_indexing_reshape_flatten(small_rays):
    rays = small_rays
    first = rays[0]
    assert first.batch_shape == (16, 16)
    torch.testing.assert_close(first.directions, rays.directions[0])
    window = rays[:, 2:5, 3:9]
    assert window.batch_shape == (2, 3, 6)
    torch.testing.assert_close(window.origins, rays.origins[:, 2:5, 3:9])
    torch.testing.assert_close(window.nears, rays.nears[:, 2:5, 3:9])
    mask = rays.directions[..., 0] > 0
    selected = rays[mask]
    assert selected.batch_shape == (int(mask.sum()),)
    torch.testing.assert_close(selected.directions, rays.directions[mask])
    torch.testing.assert_close(selected.fars, rays.fars[mask])
    flat = rays.flatten()
    assert flat.batch_shape == (2 * 16 * 16,)
    torch.testing.assert_close(flat.directions, rays.directions.reshape(-1, 3))
    back = flat.reshape(2, 16, 16)
    for name in ("origins", "directions", "nears", "fars"):
        torch.testing.assert_close(getattr(back, name), getattr(rays, name))
    assert rays.to("cpu").device == torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# downsampling


@pytest.mark.parametrize("factor", [2, 4])
def test_downsample_rays_matches_direct_generation(factor):
    generator = torch.Generator().manual_seed(3)
    cam2world = orbit_cameras(
        math.pi / 2 + 0.3 * torch.randn(3, generator=generator),
        math.pi / 2 + 0.2 * torch.randn(3, generator=generator),
    )
    intrinsics = intrinsics_from_fov(EG3D_FOV_DEGREES, 3)
    near = torch.tensor([2.0, 2.2, 2.4]).view(3, 1, 1)
    fine = rays_from_cameras(cam2world, intrinsics, 32, 48, near, 3.5)
    coarse = downsample_rays(fine, factor)
    direct = rays_from_cameras(cam2world, intrinsics, 32 // factor, 48 // factor, near, 3.5)
    assert coarse.batch_shape == direct.batch_shape == (3, 32 // factor, 48 // factor)
    torch.testing.assert_close(coarse.directions, direct.directions, atol=1e-4, rtol=0)
    torch.testing.assert_close(coarse.origins, direct.origins, atol=1e-5, rtol=0)
    torch.testing.assert_close(coarse.nears, direct.nears)
    torch.testing.assert_close(coarse.fars, direct.fars)
    norms = coarse.directions.norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms))


def test_downsample_factor_one_is_identity(small_rays):
    same = downsample_rays(small_rays, 1)
    torch.testing.assert_close(same.directions, small_rays.directions)


def test_downsample_rejects_bad_input(small_rays):
    with pytest.raises(ValueError, match="factor"):
        downsample_rays(small_rays, 3)
    with pytest.raises(ValueError, match="factor"):
        downsample_rays(small_rays, 0)
    with pytest.raises(ValueError, match="batch shape"):
        downsample_rays(small_rays.flatten(), 2)


# ---------------------------------------------------------------------------------------------
# validation


def _ray_parts(n: int = 4):
    origins = torch.zeros(n, 3)
    directions = torch.tensor([[0.0, 0.0, 1.0]]).repeat(n, 1)
    return origins, directions


def test_rays_reject_wrong_shapes():
    origins, directions = _ray_parts()
    with pytest.raises(ValueError, match="origins"):
        Rays(torch.zeros(4, 2), directions, 0.0, 1.0)
    with pytest.raises(ValueError, match="directions"):
        Rays(origins, torch.ones(4, 4), 0.0, 1.0)
    with pytest.raises(ValueError, match="origins.*directions"):
        Rays(torch.zeros(5, 3), directions, 0.0, 1.0)
    with pytest.raises(ValueError, match="nears"):
        Rays(origins, directions, torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match="fars"):
        Rays(origins, directions, 0.0, torch.ones(2, 4))
    with pytest.raises(ValueError, match="origins"):
        Rays(torch.zeros(4, 3, dtype=torch.long), directions, 0.0, 1.0)


def test_rays_reject_non_finite():
    origins, directions = _ray_parts()
    bad_origins = origins.clone()
    bad_origins[1, 0] = float("nan")
    with pytest.raises(ValueError, match="origins"):
        Rays(bad_origins, directions, 0.0, 1.0)
    bad_directions = directions.clone()
    bad_directions[2, 1] = float("nan")
    with pytest.raises(ValueError, match="directions"):
        Rays(origins, bad_directions, 0.0, 1.0)
    bad_directions[2, 1] = float("inf")
    with pytest.raises(ValueError, match="directions"):
        Rays(origins, bad_directions, 0.0, 1.0)
    with pytest.raises(ValueError, match="nears"):
        Rays(origins, directions, torch.tensor([0.0, float("nan"), 0.0, 0.0]), 1.0)


def test_rays_reject_zero_direction():
    origins, directions = _ray_parts()
    directions[3] = 0.0
    with pytest.raises(ValueError, match="directions"):
        Rays(origins, directions, 0.0, 1.0)


def test_rays_reject_near_not_below_far():
    origins, directions = _ray_parts()
    with pytest.raises(ValueError, match="near.*far"):
        Rays(origins, directions, 1.0, 1.0)
    with pytest.raises(ValueError, match="near.*far"):
        Rays(origins, directions, torch.tensor([0.0, 0.0, 2.0, 0.0]), 1.0)
    with pytest.raises(ValueError, match="nears"):
        Rays(origins, directions, -0.5, 1.0)


def test_rays_from_cameras_validation():
    cam2world = orbit_cameras(HALF_PI, HALF_PI)
    intrinsics = intrinsics_from_fov(EG3D_FOV_DEGREES)
    with pytest.raises(ValueError, match="cam2world"):
        rays_from_cameras(cam2world[:, :3], intrinsics, 4, 4, 2.0, 3.0)
    with pytest.raises(ValueError, match="intrinsics"):
        rays_from_cameras(cam2world, intrinsics[:, :2], 4, 4, 2.0, 3.0)
    with pytest.raises(ValueError, match="batch size"):
        rays_from_cameras(cam2world, intrinsics_from_fov(EG3D_FOV_DEGREES, 2), 4, 4, 2.0, 3.0)
    nan_pose = cam2world.clone()
    nan_pose[0, 0, 3] = float("nan")
    with pytest.raises(ValueError, match="cam2world"):
        rays_from_cameras(nan_pose, intrinsics, 4, 4, 2.0, 3.0)
    with pytest.raises(ValueError, match="height"):
        rays_from_cameras(cam2world, intrinsics, 0, 4, 2.0, 3.0)
    with pytest.raises(ValueError, match="width"):
        rays_from_cameras(cam2world, intrinsics, 4, 2.5, 2.0, 3.0)
    zero_focal = intrinsics.clone()
    zero_focal[0, 0, 0] = 0.0
    with pytest.raises(ValueError, match="focal"):
        rays_from_cameras(cam2world, zero_focal, 4, 4, 2.0, 3.0)
    with pytest.raises(ValueError, match="near.*far"):
        rays_from_cameras(cam2world, intrinsics, 4, 4, 3.0, 2.0)
