"""3D Gaussian splats and their rasterizers: gsplat's CUDA kernels, and a pure-torch twin.

A ``Gaussians`` holds the parameters in the form they are optimised and stored in (the layout of
the reference 3D Gaussian Splatting implementation): means, log-scales, unnormalised quaternions
``(w, x, y, z)``, opacity logits and spherical-harmonics colour coefficients ``(N, K, 3)`` with
``K = (degree + 1)^2`` (degree 0 or 1 here), colour ``= max(0, 0.5 + SH(direction))``.

``rasterize_torch`` is the CPU twin and the tests' oracle: each Gaussian is projected to the image
with the local affine (EWA) approximation of the perspective projection, its 2D covariance widened
by 0.3 px^2 (the low-pass filter 3DGS and gsplat use), then the Gaussians covering each tile of
pixels are sorted by camera depth and alpha-composited front to back over a black background, with
alpha ``= sigmoid(opacity) * exp(-d^T S^-1 d / 2)`` clamped to 0.99 and dropped below 1/255 as the
CUDA kernels do. Unlike them it does not stop a pixel once its transmittance falls below 1e-4
(a difference below 1e-4 in colour). Everything is differentiable in torch.

``rasterize`` picks gsplat on CUDA tensors (imported only then, so the package never needs it
elsewhere) and the twin otherwise. Cameras are EG3D labels: a cam2world matrix (OpenCV axes: x
right, y down, z forward) and intrinsics normalised by the image size, pixel centres at
``(i + 0.5) / W``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from wysiwyg_gan.data.dataset import split_camera_labels

SH_C0 = 0.28209479177387814
"""The constant degree-0 real spherical harmonic, 1 / (2 sqrt(pi))."""
SH_C1 = 0.4886025119029199
"""The degree-1 real spherical harmonics' factor, sqrt(3) / (2 sqrt(pi))."""
ALPHA_MAX = 0.99
"""Per-splat alpha is clamped here (keeps transmittance > 0, as the CUDA kernels do)."""
ALPHA_MIN = 1.0 / 255.0
"""Per-splat alphas below this are skipped, as the CUDA kernels do."""
LOW_PASS = 0.3
"""Added to the diagonal of each projected 2D covariance, in pixels^2 (3DGS's anti-aliasing floor)."""
NEAR_PLANE = 0.01
"""Gaussians whose centre is closer to the camera plane than this are culled."""


@dataclass
class Gaussians:
    """A set of 3D Gaussians (parameters as optimised and stored)."""

    means: Float[Tensor, "n 3"]
    log_scales: Float[Tensor, "n 3"]
    quats: Float[Tensor, "n 4"]
    """Rotations as quaternions ``(w, x, y, z)``, not necessarily normalised."""
    opacity_logits: Float[Tensor, "n"]
    sh: Float[Tensor, "n k 3"]
    """Colour coefficients per SH basis function; ``k = 1`` (degree 0) or 4 (degree 1)."""

    def __post_init__(self) -> None:
        n = self.means.shape[0]
        shapes = {
            "means": (self.means, (n, 3)),
            "log_scales": (self.log_scales, (n, 3)),
            "quats": (self.quats, (n, 4)),
            "opacity_logits": (self.opacity_logits, (n,)),
        }
        for name, (tensor, shape) in shapes.items():
            if tuple(tensor.shape) != shape:
                raise ValueError(f"{name} must have shape {shape}, got {tuple(tensor.shape)}")
        if self.sh.dim() != 3 or self.sh.shape[0] != n or self.sh.shape[2] != 3 or self.sh.shape[1] not in (1, 4):
            raise ValueError(f"sh must have shape ({n}, 1 or 4, 3), got {tuple(self.sh.shape)}")

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return int(math.isqrt(self.sh.shape[1])) - 1

    def parameters(self) -> dict[str, Tensor]:
        return {
            "means": self.means,
            "log_scales": self.log_scales,
            "quats": self.quats,
            "opacity_logits": self.opacity_logits,
            "sh": self.sh,
        }

    def detach(self) -> Gaussians:
        return Gaussians(**{name: value.detach().clone() for name, value in self.parameters().items()})

    def to(self, device: torch.device | str) -> Gaussians:
        return Gaussians(**{name: value.to(device) for name, value in self.parameters().items()})


def rgb_to_sh_dc(rgb: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch 3"]:
    """Degree-0 coefficient giving colour ``rgb`` (in [0, 1])."""
    return (rgb - 0.5) / SH_C0


def quaternion_to_matrix(quats: Float[Tensor, "n 4"]) -> Float[Tensor, "n 3 3"]:
    """Rotation matrices of quaternions ``(w, x, y, z)`` (normalised here)."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(-1, 3, 3)


def covariances(gaussians: Gaussians) -> Float[Tensor, "n 3 3"]:
    """World-space covariances ``R S S^T R^T``."""
    rotation = quaternion_to_matrix(gaussians.quats)
    scaled = rotation * gaussians.log_scales.exp()[:, None, :]
    return scaled @ scaled.transpose(1, 2)


def splat_colors(gaussians: Gaussians, camera_centre: Float[Tensor, "3"]) -> Float[Tensor, "n 3"]:
    """View-dependent colours ``max(0, 0.5 + SH(d))`` with ``d`` the unit direction camera -> mean."""
    color = SH_C0 * gaussians.sh[:, 0]
    if gaussians.sh.shape[1] == 4:
        x, y, z = torch.nn.functional.normalize(gaussians.means - camera_centre, dim=-1).unbind(-1)
        sh = gaussians.sh
        color = color - SH_C1 * y[:, None] * sh[:, 1] + SH_C1 * z[:, None] * sh[:, 2] - SH_C1 * x[:, None] * sh[:, 3]
    return (color + 0.5).clamp_min(0.0)


def pixel_intrinsics(labels: Float[Tensor, "batch 25"], width: int, height: int) -> Float[Tensor, "batch 3 3"]:
    """Intrinsics in pixels (``fx, cx`` times the width, ``fy, cy`` times the height) of EG3D labels."""
    _, intrinsics = split_camera_labels(labels)
    scale = intrinsics.new_tensor([width, height, 1.0])
    return intrinsics * scale[:, None]


def project(
    gaussians: Gaussians, label: Float[Tensor, "25"], width: int, height: int
) -> tuple[Float[Tensor, "n 2"], Float[Tensor, "n 2 2"], Float[Tensor, "n"]]:
    """Pixel positions of the centres, 2D covariances (pixels^2, low-pass included) and camera
    depths ``z`` of every Gaussian seen by camera ``label``."""
    cam2world, _ = split_camera_labels(label.to(gaussians.means.dtype))
    world2cam = torch.linalg.inv(cam2world)
    rotation, translation = world2cam[:3, :3], world2cam[:3, 3]
    camera = gaussians.means @ rotation.T + translation
    x, y, z = camera.unbind(-1)
    k = pixel_intrinsics(label[None].to(camera.dtype), width, height)[0]
    fx, skew, cx, fy, cy = k[0, 0], k[0, 1], k[0, 2], k[1, 1], k[1, 2]
    safe_z = z.clamp_min(NEAR_PLANE)
    u = (fx * x + skew * y) / safe_z + cx
    v = fy * y / safe_z + cy
    # Jacobian of (u, v) in camera coordinates at the centre: the EWA local affine approximation.
    zeros = torch.zeros_like(z)
    jacobian = torch.stack(
        [fx / safe_z, skew / safe_z, -(fx * x + skew * y) / safe_z**2, zeros, fy / safe_z, -fy * y / safe_z**2], dim=-1
    ).reshape(-1, 2, 3)
    transform = jacobian @ rotation
    cov2d = transform @ covariances(gaussians) @ transform.transpose(1, 2)
    cov2d = cov2d + LOW_PASS * torch.eye(2, dtype=cov2d.dtype, device=cov2d.device)
    return torch.stack([u, v], dim=-1), cov2d, z


def rasterize_torch(
    gaussians: Gaussians,
    labels: Float[Tensor, "batch 25"],
    width: int,
    height: int,
    tile_size: int = 16,
) -> tuple[Float[Tensor, "batch height width 3"], Float[Tensor, "batch height width"]]:
    """Colour (over black) and alpha of ``gaussians`` seen by EG3D cameras ``labels``; the CPU twin.

    Pixels are processed in ``tile_size`` squares, each against only the Gaussians whose box of
    alpha >= 1/255 overlaps it (memory stays bounded; the result does not depend on ``tile_size``).
    """
    if labels.dim() != 2 or labels.shape[1] != 25:
        raise ValueError(f"labels must have shape (batch, 25), got {tuple(labels.shape)}")
    for name, value in (("width", width), ("height", height), ("tile_size", tile_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    device, dtype = gaussians.means.device, gaussians.means.dtype
    images, alphas = [], []
    opacity = torch.sigmoid(gaussians.opacity_logits)
    for label in labels.to(device):
        centres, cov2d, z = project(gaussians, label, width, height)
        camera_centre = label[:16].reshape(4, 4)[:3, 3].to(dtype)
        colors = splat_colors(gaussians, camera_centre)
        a, b, c = cov2d[:, 0, 0], cov2d[:, 0, 1], cov2d[:, 1, 1]
        det = (a * c - b * b).clamp_min(1e-12)
        conic = torch.stack([c / det, -b / det, a / det], dim=-1)  # the inverse covariance
        # Box of the ellipse where alpha >= ALPHA_MIN (d^T S^-1 d <= 2 log(opacity / ALPHA_MIN)): per
        # axis, that radius times the marginal std. Outside it every alpha is dropped anyway, so the
        # box loses nothing (no 3-sigma truncation).
        reach = 2.0 * torch.log(opacity.detach() / ALPHA_MIN).clamp_min(0.0)
        half = (reach[:, None] * torch.stack([a, c], dim=-1)).sqrt().detach()
        low, high = (centres.detach() - half), (centres.detach() + half)
        visible = (z > NEAR_PLANE) & (high[:, 0] > 0) & (low[:, 0] < width) & (high[:, 1] > 0) & (low[:, 1] < height)
        order = torch.argsort(torch.where(visible, z, torch.full_like(z, float("inf"))).detach())
        order = order[: int(visible.sum())]  # front to back, visible only
        tiles_image, tiles_alpha = [], []
        for top in range(0, height, tile_size):
            row_image, row_alpha = [], []
            bottom = min(top + tile_size, height)
            for left in range(0, width, tile_size):
                right = min(left + tile_size, width)
                box = order[
                    (high[order, 0] > left) & (low[order, 0] < right) & (high[order, 1] > top) & (low[order, 1] < bottom)
                ]
                ys = torch.arange(top, bottom, device=device, dtype=dtype) + 0.5
                xs = torch.arange(left, right, device=device, dtype=dtype) + 0.5
                py, px = torch.meshgrid(ys, xs, indexing="ij")
                if box.numel() == 0:
                    row_image.append(torch.zeros(bottom - top, right - left, 3, dtype=dtype, device=device))
                    row_alpha.append(torch.zeros(bottom - top, right - left, dtype=dtype, device=device))
                    continue
                dx = px.reshape(-1, 1) - centres[box, 0]  # (pixels, gaussians in depth order)
                dy = py.reshape(-1, 1) - centres[box, 1]
                q = conic[box]
                power = -0.5 * (q[:, 0] * dx * dx + q[:, 2] * dy * dy) - q[:, 1] * dx * dy
                alpha = (opacity[box] * torch.exp(power.clamp_max(0.0))).clamp_max(ALPHA_MAX)
                alpha = torch.where(alpha >= ALPHA_MIN, alpha, torch.zeros_like(alpha))
                # Transmittance before each splat: exclusive cumulative product along depth.
                transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha[:, :-1]], 1), 1)
                weights = alpha * transmittance
                row_image.append((weights @ colors[box]).reshape(bottom - top, right - left, 3))
                row_alpha.append(weights.sum(1).reshape(bottom - top, right - left))
            tiles_image.append(torch.cat(row_image, dim=1))
            tiles_alpha.append(torch.cat(row_alpha, dim=1))
        images.append(torch.cat(tiles_image, dim=0))
        alphas.append(torch.cat(tiles_alpha, dim=0))
    return torch.stack(images), torch.stack(alphas)


def rasterize_gsplat(
    gaussians: Gaussians, labels: Float[Tensor, "batch 25"], width: int, height: int
) -> tuple[Float[Tensor, "batch height width 3"], Float[Tensor, "batch height width"]]:
    """The same image with gsplat's CUDA rasterizer (``gsplat.rasterization``, classic mode)."""
    from gsplat import rasterization  # only here: gsplat's kernels need CUDA

    labels = labels.to(gaussians.means.device, gaussians.means.dtype)
    cam2world, _ = split_camera_labels(labels)
    colors, alphas, _ = rasterization(
        means=gaussians.means,
        quats=gaussians.quats,
        scales=gaussians.log_scales.exp(),
        opacities=torch.sigmoid(gaussians.opacity_logits),
        colors=gaussians.sh,
        viewmats=torch.linalg.inv(cam2world),
        Ks=pixel_intrinsics(labels, width, height),
        width=width,
        height=height,
        near_plane=NEAR_PLANE,
        eps2d=LOW_PASS,
        sh_degree=gaussians.sh_degree,
        packed=False,
    )
    return colors, alphas[..., 0]


def rasterize(
    gaussians: Gaussians, labels: Float[Tensor, "batch 25"], width: int, height: int, backend: str = "auto"
) -> tuple[Float[Tensor, "batch height width 3"], Float[Tensor, "batch height width"]]:
    """Colour and alpha of ``gaussians`` from cameras ``labels``: ``backend`` ``auto`` uses gsplat
    for CUDA tensors and the torch twin otherwise; ``torch`` or ``gsplat`` force one."""
    if backend not in ("auto", "torch", "gsplat"):
        raise ValueError(f"backend must be auto, torch or gsplat, got {backend!r}")
    if backend == "gsplat" or (backend == "auto" and gaussians.means.is_cuda):
        if not gaussians.means.is_cuda:
            raise ValueError("backend 'gsplat' needs the Gaussians on a CUDA device")
        return rasterize_gsplat(gaussians, labels, width, height)
    return rasterize_torch(gaussians, labels, width, height)
