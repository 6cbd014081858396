"""Random cameras for the synthetic dataset: EG3D's FFHQ orbit cameras with a frontal bias."""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor

from learned_sampler import EG3D_CAMERA_RADIUS, EG3D_FOV_DEGREES, intrinsics_from_fov, orbit_cameras
from learned_sampler.validation import check_positive_int
from wysiwyg_gan.data.dataset import camera_labels

YAW_STD, YAW_LIMIT = 0.35, 1.05
"""Standard deviation and clip (3 sigma) of the camera yaw around the frontal view, radians."""
PITCH_STD, PITCH_LIMIT = 0.15, 0.45
"""Standard deviation and clip (3 sigma) of the camera pitch around the frontal view, radians."""


def sample_camera_labels(num_cameras: int, generator: torch.Generator | None = None) -> Float[Tensor, "num_cameras 25"]:
    """EG3D labels of random orbit cameras with a frontal bias like FFHQ's.

    ``yaw = pi/2 + N(0, YAW_STD)`` and ``pitch = pi/2 + N(0, PITCH_STD)``, each offset clipped at
    3 sigma; radius 2.7 around the origin; EG3D's field of view.
    """
    check_positive_int("num_cameras", num_cameras)
    yaw = math.pi / 2 + (YAW_STD * torch.randn(num_cameras, generator=generator)).clamp(-YAW_LIMIT, YAW_LIMIT)
    pitch = math.pi / 2 + (PITCH_STD * torch.randn(num_cameras, generator=generator)).clamp(-PITCH_LIMIT, PITCH_LIMIT)
    cam2world = orbit_cameras(yaw, pitch, radius=EG3D_CAMERA_RADIUS)
    return camera_labels(cam2world, intrinsics_from_fov(EG3D_FOV_DEGREES, num_cameras))
