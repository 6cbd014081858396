"""Camera helpers in the EG3D convention (OpenCV cam2world, y-up world, normalised intrinsics).

EG3D places FFHQ cameras on a sphere of radius 2.7 around a pivot, looking at it, with an 18.837
degree field of view; ``yaw = pitch = pi / 2`` is the frontal view (camera on the +z axis).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from learned_sampler.validation import check_finite, check_floating, check_last_dims, check_positive_int

EG3D_FOV_DEGREES = 18.837
"""Field of view of EG3D's FFHQ cameras, in degrees."""
EG3D_CAMERA_RADIUS = 2.7
"""Distance of EG3D's FFHQ cameras from their pivot, in world units."""
EG3D_RAY_NEAR, EG3D_RAY_FAR = 2.25, 3.3
"""EG3D's FFHQ ray bounds, in world units along unit directions from the camera."""


def intrinsics_from_fov(fov_degrees: float, batch_size: int = 1) -> Float[Tensor, "batch 3 3"]:
    """Normalised intrinsics of a centred pinhole camera with the given full field of view.

    The field of view follows EG3D's ``FOV_to_intrinsics`` (it refers to the image diagonal over
    sqrt(2)): ``f = 1 / (tan(fov / 2) * sqrt(2))``.
    """
    if not 0.0 < fov_degrees < 180.0:
        raise ValueError(f"fov_degrees must be in (0, 180), got {fov_degrees}")
    check_positive_int("batch_size", batch_size)
    focal = 1.0 / (math.tan(math.radians(fov_degrees) / 2.0) * math.sqrt(2.0))
    intrinsics = torch.tensor([[focal, 0.0, 0.5], [0.0, focal, 0.5], [0.0, 0.0, 1.0]])
    return intrinsics.expand(batch_size, 3, 3).clone()


def look_at(
    eyes: Float[Tensor, "batch 3"],
    targets: Float[Tensor, "batch 3"],
    up: tuple[float, float, float] = (0.0, 1.0, 0.0),
) -> Float[Tensor, "batch 4 4"]:
    """OpenCV cam2world matrices of cameras at ``eyes`` looking at ``targets`` (world y up)."""
    check_last_dims("eyes", check_floating("eyes", eyes), (3,))
    check_last_dims("targets", check_floating("targets", targets), (3,))
    check_finite("eyes", eyes)
    check_finite("targets", targets)
    eyes, targets = torch.broadcast_tensors(eyes, targets)
    forward = targets - eyes
    if bool((forward.norm(dim=-1) < 1e-9).any()):
        raise ValueError("eyes and targets coincide for at least one camera")
    forward = F.normalize(forward, dim=-1)
    world_up = torch.tensor(up, dtype=eyes.dtype, device=eyes.device).expand_as(forward)
    right = torch.cross(forward, world_up, dim=-1)
    if bool((right.norm(dim=-1) < 1e-6).any()):
        raise ValueError("a camera looks along the up vector; its orientation is undefined")
    right = F.normalize(right, dim=-1)
    down = torch.cross(forward, right, dim=-1)  # camera y points down in OpenCV
    cam2world = torch.eye(4, dtype=eyes.dtype, device=eyes.device).repeat(*eyes.shape[:-1], 1, 1)
    cam2world[..., :3, 0] = right
    cam2world[..., :3, 1] = down
    cam2world[..., :3, 2] = forward
    cam2world[..., :3, 3] = eyes
    return cam2world


def orbit_cameras(
    yaw: Float[Tensor, " batch"],
    pitch: Float[Tensor, " batch"],
    radius: float = EG3D_CAMERA_RADIUS,
    pivot: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> Float[Tensor, "batch 4 4"]:
    """Cameras on a sphere around ``pivot`` looking at it, with EG3D's pose-sampler angles.

    ``yaw`` is the azimuth around the world y axis and ``pitch`` the polar parameter, in radians;
    ``yaw = pitch = pi/2`` is frontal (camera on +z). As EG3D, the position is
    ``r (-sin(phi) cos(yaw), cos(phi), sin(phi) sin(yaw))`` with ``phi = arccos(1 - 2 pitch / pi)``,
    so the same angles give the same cameras as EG3D's samplers and dataset labels.
    """
    yaw = check_floating("yaw", yaw)
    pitch = check_floating("pitch", pitch)
    if yaw.shape != pitch.shape or yaw.dim() != 1:
        raise ValueError(f"yaw and pitch must be 1-D of equal length, got {tuple(yaw.shape)} and {tuple(pitch.shape)}")
    if radius <= 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    polar = torch.arccos(1.0 - 2.0 * pitch.clamp(1e-5, math.pi - 1e-5) / math.pi)
    pivot_t = torch.tensor(pivot, dtype=yaw.dtype, device=yaw.device)
    eyes = pivot_t + radius * torch.stack(
        [-torch.sin(polar) * torch.cos(yaw), torch.cos(polar), torch.sin(polar) * torch.sin(yaw)], dim=-1
    )
    return look_at(eyes, pivot_t.expand_as(eyes))


def sample_orbit_cameras(
    batch_size: int,
    yaw_std: float = 0.3,
    pitch_std: float = 0.15,
    radius: float = EG3D_CAMERA_RADIUS,
    pivot: tuple[float, float, float] = (0.0, 0.0, 0.0),
    generator: torch.Generator | None = None,
) -> Float[Tensor, "batch 4 4"]:
    """Random cameras around the frontal view with Gaussian yaw/pitch offsets (a frontal bias like FFHQ's)."""
    check_positive_int("batch_size", batch_size)
    yaw = math.pi / 2 + yaw_std * torch.randn(batch_size, generator=generator)
    pitch = math.pi / 2 + pitch_std * torch.randn(batch_size, generator=generator)
    return orbit_cameras(yaw, pitch, radius, pivot)
