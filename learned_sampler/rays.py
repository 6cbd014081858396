"""Rays and their generation from cameras in the EG3D convention.

Conventions (as EG3D and its ``dataset.json`` labels):

* ``cam2world`` is a 4x4 OpenCV camera-to-world matrix: camera x right, y down, z forward.
* ``intrinsics`` is the 3x3 pinhole matrix normalised by the image size:
  ``[[fx/W, skew, cx/W], [0, fy/H, cy/H], [0, 0, 1]]``; a centred camera has ``cx = cy = 0.5``.
* Ray directions are unit vectors, and every depth ``t`` in this library is a metric distance
  along them (world units).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from learned_sampler.validation import (
    check_broadcastable,
    check_finite,
    check_floating,
    check_last_dims,
    check_positive_int,
)


@dataclass
class Rays:
    """A batch of rays ``o + t d`` with a depth range ``[near, far]`` each.

    Any batch shape ``(*B,)`` works; rays of images have batch ``(B, H, W)``. ``nears`` and
    ``fars`` may be given as Python numbers or tensors that broadcast to the batch shape; they are
    stored expanded. Directions are normalised on construction.
    """

    origins: Float[Tensor, "*batch 3"]
    """Ray origins in world units."""
    directions: Float[Tensor, "*batch 3"]
    """Unit ray directions."""
    nears: Float[Tensor, "*batch"]
    """Start of the sampled depth range along each ray (world units)."""
    fars: Float[Tensor, "*batch"]
    """End of the sampled depth range along each ray (world units); must exceed ``nears``."""

    def __post_init__(self) -> None:
        origins = check_last_dims("origins", check_floating("origins", self.origins), (3,))
        directions = check_last_dims("directions", check_floating("directions", self.directions), (3,))
        if origins.shape != directions.shape:
            raise ValueError(
                f"origins {tuple(origins.shape)} and directions {tuple(directions.shape)} must have the same shape"
            )
        check_finite("origins", origins)
        check_finite("directions", directions)
        norms = directions.norm(dim=-1, keepdim=True)
        if bool((norms <= 1e-12).any()):
            raise ValueError("directions contains zero-length vectors")
        batch_shape = origins.shape[:-1]
        nears = _as_depth_tensor("nears", self.nears, origins)
        fars = _as_depth_tensor("fars", self.fars, origins)
        nears = check_broadcastable("nears", nears, batch_shape)
        fars = check_broadcastable("fars", fars, batch_shape)
        if not bool((fars > nears).all()):
            bad = int((fars <= nears).sum())
            raise ValueError(f"near must be < far for every ray; {bad} ray(s) have near >= far")
        if bool((nears < 0).any()):
            raise ValueError("nears must be >= 0")
        self.directions = directions / norms
        self.nears = nears
        self.fars = fars

    @classmethod
    def _trusted(cls, origins: Tensor, directions: Tensor, nears: Tensor, fars: Tensor) -> Rays:
        """Build rays from tensors already checked (slices and reshapes of valid rays)."""
        rays = object.__new__(cls)
        rays.origins, rays.directions, rays.nears, rays.fars = origins, directions, nears, fars
        return rays

    @property
    def batch_shape(self) -> torch.Size:
        return self.origins.shape[:-1]

    @property
    def device(self) -> torch.device:
        return self.origins.device

    def reshape(self, *shape: int) -> Rays:
        return Rays._trusted(
            self.origins.reshape(*shape, 3),
            self.directions.reshape(*shape, 3),
            self.nears.reshape(*shape),
            self.fars.reshape(*shape),
        )

    def flatten(self) -> Rays:
        """The same rays with batch shape ``(N,)``."""
        return self.reshape(-1)

    def __getitem__(self, index) -> Rays:
        """Index the batch dimensions (e.g. ``rays[0]``, ``rays[:, 10:20]``, ``rays[mask]``)."""
        return Rays._trusted(
            self.origins[index], self.directions[index], self.nears[index], self.fars[index]
        )

    def to(self, device: torch.device | str) -> Rays:
        return Rays._trusted(
            self.origins.to(device), self.directions.to(device), self.nears.to(device), self.fars.to(device)
        )

    def points_at(self, t: Float[Tensor, "*batch num_samples"]) -> Float[Tensor, "*batch num_samples 3"]:
        """World positions at depths ``t`` along each ray."""
        return self.origins[..., None, :] + t[..., None] * self.directions[..., None, :]


def _as_depth_tensor(name: str, value: object, like: Tensor) -> Tensor:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(float(value), dtype=like.dtype, device=like.device)
    tensor = check_floating(name, value)
    check_finite(name, tensor)
    return tensor.to(dtype=like.dtype, device=like.device)


def rays_from_cameras(
    cam2world: Float[Tensor, "batch 4 4"],
    intrinsics: Float[Tensor, "batch 3 3"],
    height: int,
    width: int,
    near: float | Tensor,
    far: float | Tensor,
) -> Rays:
    """Rays through every pixel centre of ``B`` cameras, batch shape ``(B, H, W)``.

    Args:
        cam2world: OpenCV camera-to-world matrices.
        intrinsics: pinhole intrinsics normalised by the image size (EG3D labels).
        height: image height in pixels.
        width: image width in pixels.
        near: start of the depth range, a number or a tensor broadcasting to ``(B, H, W)``
            (e.g. shape ``(B, 1, 1)`` for one range per camera).
        far: end of the depth range, same forms as ``near``.
    """
    check_last_dims("cam2world", check_floating("cam2world", cam2world), (4, 4))
    check_last_dims("intrinsics", check_floating("intrinsics", intrinsics), (3, 3))
    if cam2world.dim() != 3 or intrinsics.dim() != 3 or cam2world.shape[0] != intrinsics.shape[0]:
        raise ValueError(
            f"cam2world (B, 4, 4) and intrinsics (B, 3, 3) need the same batch size, got "
            f"{tuple(cam2world.shape)} and {tuple(intrinsics.shape)}"
        )
    check_finite("cam2world", cam2world)
    check_finite("intrinsics", intrinsics)
    check_positive_int("height", height)
    check_positive_int("width", width)
    if bool((intrinsics[:, 0, 0] == 0).any()) or bool((intrinsics[:, 1, 1] == 0).any()):
        raise ValueError("intrinsics has a zero focal length")

    device, dtype = cam2world.device, cam2world.dtype
    # Pixel centres in normalised image coordinates, u along the width.
    v, u = torch.meshgrid(
        (torch.arange(height, device=device, dtype=dtype) + 0.5) / height,
        (torch.arange(width, device=device, dtype=dtype) + 0.5) / width,
        indexing="ij",
    )
    fx, fy = intrinsics[:, 0, 0, None, None], intrinsics[:, 1, 1, None, None]
    cx, cy = intrinsics[:, 0, 2, None, None], intrinsics[:, 1, 2, None, None]
    skew = intrinsics[:, 0, 1, None, None]
    y_cam = (v - cy) / fy
    x_cam = (u - cx - skew * y_cam) / fx
    dirs_cam = torch.stack([x_cam, y_cam, torch.ones_like(x_cam)], dim=-1)
    directions = torch.einsum("bij,bhwj->bhwi", cam2world[:, :3, :3], dirs_cam)
    directions = F.normalize(directions, dim=-1)
    origins = cam2world[:, None, None, :3, 3].expand_as(directions)
    return Rays(origins, directions, near, far)


def downsample_rays(rays: Rays, factor: int) -> Rays:
    """Image rays at ``1/factor`` of the resolution: one ray per ``factor x factor`` pixel block.

    For a pinhole camera the mean of a block's pixel centres is the centre of the coarse pixel,
    so the block-mean direction (renormalised) is the coarse ray up to second order in the block's
    angular size. Near and far are block means too.
    """
    check_positive_int("factor", factor)
    if len(rays.batch_shape) != 3:
        raise ValueError(f"rays must have image batch shape (B, H, W), got {tuple(rays.batch_shape)}")
    _, height, width = rays.batch_shape
    if height % factor or width % factor:
        raise ValueError(f"image size {height}x{width} is not divisible by the downscale factor {factor}")
    if factor == 1:
        return rays

    def pool(x: Tensor) -> Tensor:  # (B, H, W, C) -> (B, H/f, W/f, C)
        return F.avg_pool2d(x.permute(0, 3, 1, 2), factor).permute(0, 2, 3, 1)

    return Rays._trusted(
        pool(rays.origins),
        F.normalize(pool(rays.directions), dim=-1),
        pool(rays.nears[..., None])[..., 0],
        pool(rays.fars[..., None])[..., 0],
    )
