"""EG3D camera labels of orbit cameras around the origin: the views every tool renders from.

Angles follow ``learned_sampler.orbit_cameras``: yaw and pitch in radians, ``(pi/2, pi/2)`` the
frontal camera, on EG3D's FFHQ radius and field of view. The 25-number label format itself lives
in ``wysiwyg_gan.data.dataset`` (``camera_labels``, ``split_camera_labels``).
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor

from learned_sampler import EG3D_CAMERA_RADIUS, EG3D_FOV_DEGREES, intrinsics_from_fov, orbit_cameras
from wysiwyg_gan.data.dataset import camera_labels

FRONTAL = math.pi / 2
"""Yaw and pitch of the frontal orbit camera."""


def orbit_camera_labels(
    yaw: Float[Tensor, "count"],
    pitch: Float[Tensor, "count"],
    fov_degrees: float = EG3D_FOV_DEGREES,
    radius: float = EG3D_CAMERA_RADIUS,
) -> Float[Tensor, "count 25"]:
    """EG3D 25-number labels of orbit cameras looking at the origin, one per ``(yaw, pitch)``."""
    return camera_labels(orbit_cameras(yaw, pitch, radius), intrinsics_from_fov(fov_degrees, yaw.shape[0]))


def orbit_labels(yaw: float, pitch: float, count: int, device: torch.device | str = "cpu") -> Float[Tensor, "count 25"]:
    """``count`` copies of the label of the orbit camera at ``(yaw, pitch)``."""
    return orbit_camera_labels(torch.full((count,), float(yaw)), torch.full((count,), float(pitch))).to(device)


def frontal_labels(count: int, device: torch.device | str = "cpu") -> Float[Tensor, "count 25"]:
    """The frontal camera the paper conditions on at inference, ``count`` times."""
    return orbit_labels(FRONTAL, FRONTAL, count, device)


def offset_orbit_labels(yaw_degrees: Float[Tensor, "count"], pitch_degrees: Float[Tensor, "count"]) -> Float[Tensor, "count 25"]:
    """Labels of orbit cameras at yaw and pitch offsets, in degrees, from the frontal view."""
    return orbit_camera_labels(FRONTAL + torch.deg2rad(yaw_degrees), FRONTAL + torch.deg2rad(pitch_degrees))
