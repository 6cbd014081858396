"""Camera helpers: intrinsics from a field of view, look-at and orbit cameras."""

from __future__ import annotations

import math

import pytest
import torch

from learned_sampler import intrinsics_from_fov, look_at, orbit_cameras, sample_orbit_cameras
from learned_sampler.cameras import EG3D_CAMERA_RADIUS, EG3D_FOV_DEGREES


def _check_rotation(cam2world: torch.Tensor) -> None:
    rotation = cam2world[..., :3, :3]
    identity = torch.eye(3).expand_as(rotation)
    torch.testing.assert_close(rotation.transpose(-1, -2) @ rotation, identity, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rotation), torch.ones(rotation.shape[:-2]), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        cam2world[..., 3, :], torch.tensor([0.0, 0.0, 0.0, 1.0]).expand_as(cam2world[..., 3, :])
    )


def test_intrinsics_from_fov_matches_eg3d_formula():
    intrinsics = intrinsics_from_fov(EG3D_FOV_DEGREES, batch_size=3)
    assert intrinsics.shape == (3, 3, 3)
    focal = 1.0 / (math.tan(math.radians(EG3D_FOV_DEGREES) / 2) * math.sqrt(2.0))
    expected = torch.tensor([[focal, 0.0, 0.5], [0.0, focal, 0.5], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(intrinsics, expected.expand(3, 3, 3))
    # EG3D's FFHQ labels have fx / W = 4.2647 (the 18.837 degree fov is rounded from it).
    assert abs(focal - 4.2647) < 3e-3
    # The batch entries are independent tensors (not views of one another).
    intrinsics[0, 0, 0] = 0.0
    assert float(intrinsics[1, 0, 0]) == pytest.approx(focal)


@pytest.mark.parametrize("fov", [0.0, -5.0, 180.0, 200.0])
def test_intrinsics_from_fov_rejects_bad_fov(fov):
    with pytest.raises(ValueError, match="fov_degrees"):
        intrinsics_from_fov(fov)


def test_intrinsics_from_fov_rejects_bad_batch():
    with pytest.raises(ValueError, match="batch_size"):
        intrinsics_from_fov(30.0, batch_size=0)


def test_look_at_opencv_frame():
    eyes = torch.tensor([[1.0, 0.5, 2.0], [-2.0, 0.0, 0.3], [0.0, -1.0, -3.0]])
    targets = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.2, 0.3], [0.5, 0.0, 0.0]])
    cam2world = look_at(eyes, targets)
    _check_rotation(cam2world)
    forward = cam2world[:, :3, 2]
    expected_forward = (targets - eyes) / (targets - eyes).norm(dim=-1, keepdim=True)
    torch.testing.assert_close(forward, expected_forward)
    torch.testing.assert_close(cam2world[:, :3, 3], eyes)
    # No roll: camera x is horizontal, camera y (down) points against world up.
    torch.testing.assert_close(cam2world[:, 1, 0], torch.zeros(3), atol=1e-6, rtol=0)
    assert bool((cam2world[:, 1, 1] < 0).all())


def test_look_at_rejects_degenerate_cameras():
    with pytest.raises(ValueError, match="coincide"):
        look_at(torch.ones(1, 3), torch.ones(1, 3))
    with pytest.raises(ValueError, match="up"):
        look_at(torch.tensor([[0.0, 2.0, 0.0]]), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="eyes"):
        look_at(torch.ones(1, 2), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="targets"):
        look_at(torch.ones(1, 3), torch.full((1, 3), float("nan")))


def test_orbit_frontal_camera():
    cam2world = orbit_cameras(torch.tensor([math.pi / 2]), torch.tensor([math.pi / 2]))
    assert cam2world.shape == (1, 4, 4)
    torch.testing.assert_close(cam2world[0, :3, 3], torch.tensor([0.0, 0.0, EG3D_CAMERA_RADIUS]), atol=1e-6, rtol=0)
    expected_rotation = torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
    torch.testing.assert_close(cam2world[0, :3, :3], expected_rotation, atol=1e-6, rtol=0)


def test_orbit_cameras_look_at_pivot_from_radius():
    yaw = torch.tensor([0.3, 1.2, math.pi / 2, 2.5, 4.0])
    pitch = torch.tensor([0.4, 1.0, math.pi / 2, 2.0, 2.8])
    pivot = (0.2, -0.1, 0.3)
    cam2world = orbit_cameras(yaw, pitch, radius=1.7, pivot=pivot)
    _check_rotation(cam2world)
    to_pivot = torch.tensor(pivot) - cam2world[:, :3, 3]
    torch.testing.assert_close(to_pivot.norm(dim=-1), torch.full((5,), 1.7))
    torch.testing.assert_close(cam2world[:, :3, 2], to_pivot / 1.7, atol=1e-6, rtol=0)
    # Pitch maps to the polar angle from +y as in EG3D: pitch < pi/2 puts the camera above the pivot.
    heights = cam2world[:, 1, 3] - pivot[1]
    polar = torch.arccos(1 - 2 * pitch / math.pi)
    torch.testing.assert_close(heights, 1.7 * torch.cos(polar), atol=1e-6, rtol=0)


def test_orbit_cameras_validation():
    with pytest.raises(ValueError, match="yaw and pitch"):
        orbit_cameras(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="radius"):
        orbit_cameras(torch.zeros(1), torch.ones(1), radius=0.0)
    with pytest.raises(ValueError, match="yaw"):
        orbit_cameras(torch.zeros(1, dtype=torch.long), torch.ones(1))


def test_sample_orbit_cameras_seeded_and_on_sphere():
    a = sample_orbit_cameras(6, generator=torch.Generator().manual_seed(7))
    b = sample_orbit_cameras(6, generator=torch.Generator().manual_seed(7))
    c = sample_orbit_cameras(6, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)
    _check_rotation(a)
    torch.testing.assert_close(a[:, :3, 3].norm(dim=-1), torch.full((6,), EG3D_CAMERA_RADIUS))
    # Frontal bias: all cameras in front (+z) for the default small spreads.
    assert bool((a[:, 2, 3] > 0).all())
    frontal = sample_orbit_cameras(2, yaw_std=0.0, pitch_std=0.0)
    expected = orbit_cameras(torch.full((2,), math.pi / 2), torch.full((2,), math.pi / 2))
    torch.testing.assert_close(frontal, expected)
    with pytest.raises(ValueError, match="batch_size"):
        sample_orbit_cameras(0)


def test_orbit_angles_follow_eg3d_pose_samplers():
    # yaw = 0 puts the camera on -x, yaw = pi on +x (EG3D: x = -r sin(phi) cos(yaw)).
    eyes = orbit_cameras(torch.tensor([0.0, math.pi]), torch.tensor([math.pi / 2, math.pi / 2]), radius=2.0)[:, :3, 3]
    torch.testing.assert_close(eyes, torch.tensor([[-2.0, 0.0, 0.0], [2.0, 0.0, 0.0]]), atol=1e-5, rtol=0)
    # pitch = pi/4 -> polar angle arccos(1 - 2 * 1/4) = pi/3 -> height r cos(pi/3) = r/2.
    eye = orbit_cameras(torch.tensor([math.pi / 2]), torch.tensor([math.pi / 4]), radius=2.0)[0, :3, 3]
    torch.testing.assert_close(eye, torch.tensor([0.0, 1.0, math.sqrt(3.0)]), atol=1e-5, rtol=0)
