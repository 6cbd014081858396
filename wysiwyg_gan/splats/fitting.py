"""Fit 3D Gaussian splats to one generated object, from the generator's own renders.

1. Render the object from ``fit_views`` orbit cameras (the generator as the checkpoint renders,
   learned sampler included), and from ``heldout_views`` other cameras kept for evaluation.
2. Initialise one Gaussian per surface pixel the renderer finds: the pixel's expected depth,
   unprojected (``consistency_metrics.unproject_depth``), where its opacity exceeds
   ``opacity_threshold``; coloured by the pixel's (un-premultiplied) colour; isotropic, sized by
   the pixel footprint ``depth / (f * resolution)``; at most ``num_gaussians``, drawn at random.
3. Optimise every parameter with Adam for ``steps`` steps against the fit renders (colour L1 and
   D-SSIM as 3DGS does, plus an alpha L1 against the rendered opacity), rasterizing with gsplat on
   CUDA and the torch twin elsewhere.
4. Report PSNR/SSIM of the splat renders against the generator's on the held-out cameras, before
   and after the fit, and the time per frame of the rasterizer.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from wysiwyg_gan.consistency_metrics import unproject_depth
from wysiwyg_gan.data.dataset import split_camera_labels
from wysiwyg_gan.orbit_cameras import FRONTAL, orbit_camera_labels
from wysiwyg_gan.splats.rasterizer import Gaussians, rasterize, rgb_to_sh_dc


@dataclass(frozen=True)
class SplatFitConfig:
    """How ``--splats`` fits Gaussian splats to each seed (``--splat-fit.*``)."""

    num_gaussians: int = 8000
    """At most this many Gaussians (surface pixels of the fit views, drawn at random)."""
    fit_views: int = 24
    """Orbit cameras the generator renders the fit targets from (also the initialisation's views)."""
    heldout_views: int = 4
    """Other orbit cameras, for PSNR/SSIM only."""
    yaw_range: float = 45.0
    """Cameras' yaw is drawn uniformly within plus or minus this many degrees of the frontal view."""
    pitch_range: float = 20.0
    """Cameras' pitch is drawn uniformly within plus or minus this many degrees of the frontal view."""
    opacity_threshold: float = 0.5
    """Pixels whose rendered opacity is at least this seed a Gaussian."""
    sh_degree: int = 0
    """Spherical-harmonics degree of the colours: 0 (one colour) or 1 (view-dependent)."""
    views_per_step: int = 1
    """Fit cameras rendered per optimisation step."""
    lr_means: float = 2e-3
    """Adam step of the positions (world units; decays exponentially to 1/10 over the fit)."""
    lr_scales: float = 1e-2
    """Adam step of the log-scales."""
    lr_quats: float = 2e-3
    """Adam step of the quaternions."""
    lr_opacity: float = 5e-2
    """Adam step of the opacity logits."""
    lr_sh: float = 1e-2
    """Adam step of the degree-0 SH coefficients (the higher degrees use 1/20 of it, as 3DGS)."""
    ssim_weight: float = 0.2
    """Loss = (1 - w) L1 + w (1 - SSIM) on colour (3DGS: 0.2), plus the alpha term."""
    alpha_weight: float = 0.5
    """Weight of the L1 between the splats' alpha and the generator's opacity."""
    batch: int = 4
    """Generator renders per forward pass."""
    seed: int = 0
    """Seed of the cameras, the initial draw and the order of the fit views."""
    backend: Literal["auto", "torch", "gsplat"] = "auto"
    """Rasterizer: ``auto`` (gsplat on CUDA, the torch twin on the CPU), ``torch`` or ``gsplat``."""

    def check(self) -> None:
        """``ValueError`` naming the first bad field."""
        for name in ("num_gaussians", "fit_views", "heldout_views", "views_per_step", "batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.views_per_step > self.fit_views:
            raise ValueError(f"views_per_step ({self.views_per_step}) must be <= fit_views ({self.fit_views})")
        if self.sh_degree not in (0, 1):
            raise ValueError(f"sh_degree must be 0 or 1, got {self.sh_degree!r}")
        if not 0.0 < self.opacity_threshold < 1.0:
            raise ValueError(f"opacity_threshold must be in (0, 1), got {self.opacity_threshold}")
        for name in ("yaw_range", "pitch_range"):
            if not 0.0 <= getattr(self, name) < 90.0:
                raise ValueError(f"{name} must be in [0, 90) degrees, got {getattr(self, name)}")
        for name in ("lr_means", "lr_scales", "lr_quats", "lr_opacity", "lr_sh"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("ssim_weight", "alpha_weight"):
            if not getattr(self, name) >= 0.0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.ssim_weight > 1.0:
            raise ValueError(f"ssim_weight must be in [0, 1], got {self.ssim_weight}")
        if self.backend not in ("auto", "torch", "gsplat"):
            raise ValueError(f"backend must be auto, torch or gsplat, got {self.backend!r}")


@dataclass
class SplatFit:
    """A fitted set of Gaussians and its measurements."""

    gaussians: Gaussians
    steps: int
    seconds: float
    """Wall time of the optimisation (targets and initialisation excluded)."""
    target_seconds: float
    """Wall time of the generator's renders of the fit and held-out cameras."""
    psnr: float
    """Mean PSNR (dB) of the splat renders against the generator's on the held-out cameras."""
    ssim: float
    psnr_initial: float
    """The same PSNR before optimisation (the initialisation alone)."""
    render_seconds_per_frame: float
    """Rasterizer time per held-out frame, no gradients."""
    backend: str
    """``torch`` (the twin) or ``gsplat``."""
    surface_pixels: int
    """Surface pixels found over the fit views (the initialisation drew from these)."""

    def report(self) -> dict:
        return {
            "gaussians": len(self.gaussians),
            "fit_steps": self.steps,
            "fit_seconds": round(self.seconds, 3),
            "target_seconds": round(self.target_seconds, 3),
            "psnr_heldout": round(self.psnr, 3),
            "ssim_heldout": round(self.ssim, 4),
            "psnr_heldout_initial": round(self.psnr_initial, 3),
            "render_seconds_per_frame": round(self.render_seconds_per_frame, 5),
            "rasterizer": self.backend,
            "surface_pixels": self.surface_pixels,
        }


def random_orbit_labels(count: int, yaw_range: float, pitch_range: float, seed: int) -> Float[Tensor, "count 25"]:
    """``count`` orbit cameras, yaw and pitch uniform within the ranges (degrees) of the frontal view."""
    generator = torch.Generator().manual_seed(seed)
    offsets = torch.rand(count, 2, generator=generator, dtype=torch.float64) * 2 - 1
    yaw = FRONTAL + math.radians(yaw_range) * offsets[:, 0]
    pitch = FRONTAL + math.radians(pitch_range) * offsets[:, 1]
    return orbit_camera_labels(yaw.float(), pitch.float())


def ssim(
    image: Float[Tensor, "batch 3 height width"], reference: Float[Tensor, "batch 3 height width"]
) -> Float[Tensor, "batch"]:
    """Structural similarity of images in [0, 1] (11-tap Gaussian window of sigma 1.5, valid
    positions only; the window shrinks for images smaller than 11 pixels)."""
    if image.shape != reference.shape or image.dim() != 4:
        raise ValueError(f"image and reference must share a (B, C, H, W) shape, got {tuple(image.shape)}, {tuple(reference.shape)}")
    size = min(11, image.shape[-1], image.shape[-2])
    taps = torch.arange(size, dtype=image.dtype, device=image.device) - (size - 1) / 2
    window = torch.exp(-(taps**2) / (2 * 1.5**2))
    window = window / window.sum()
    channels = image.shape[1]
    kernel = (window[:, None] * window[None, :]).expand(channels, 1, size, size)

    def blur(x: Tensor) -> Tensor:
        return F.conv2d(x, kernel, groups=channels)

    mu_x, mu_y = blur(image), blur(reference)
    var_x = blur(image * image) - mu_x**2
    var_y = blur(reference * reference) - mu_y**2
    cov = blur(image * reference) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    value = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return value.mean(dim=(1, 2, 3))


def psnr(image: Float[Tensor, "batch 3 height width"], reference: Float[Tensor, "batch 3 height width"]) -> Float[Tensor, "batch"]:
    """PSNR (dB) of images in [0, 1]."""
    mse = ((image - reference) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-10)
    return -10.0 * torch.log10(mse)


@torch.no_grad()
def render_targets(gan, field, labels: Float[Tensor, "count 25"], resolution: int, batch: int) -> tuple[Tensor, Tensor, Tensor]:
    """The generator's colour in [0, 1] ``(V, 3, R, R)``, opacity ``(V, R, R)`` and depth ``(V, R, R)``."""
    colors, opacities, depths = [], [], []
    for first in range(0, len(labels), batch):
        chunk = labels[first : first + batch].to(gan.device)
        rendered = gan.render(field.expand(len(chunk)), chunk, resolution)
        colors.append(((rendered.image + 1) / 2).clamp(0, 1))
        opacities.append(rendered.opacity[:, 0])
        depths.append(rendered.depth[:, 0])
    return torch.cat(colors), torch.cat(opacities), torch.cat(depths)


def initial_gaussians(
    colors: Float[Tensor, "views 3 res res"],
    opacities: Float[Tensor, "views res res"],
    depths: Float[Tensor, "views res res"],
    labels: Float[Tensor, "views 25"],
    num_gaussians: int,
    opacity_threshold: float = 0.5,
    sh_degree: int = 0,
    seed: int = 0,
) -> tuple[Gaussians, int]:
    """Gaussians on the surface pixels of rendered views (see the module docstring), and the
    number of surface pixels found. ``ValueError`` when no pixel reaches ``opacity_threshold``."""
    resolution = colors.shape[-1]
    points = unproject_depth(depths, labels.to(depths))  # (V, R, R, 3)
    _, intrinsics = split_camera_labels(labels.to(depths))
    # Angle subtended by one pixel (normalised focal times the resolution, in pixels).
    pixel_angle = 1.0 / (intrinsics[:, 0, 0] * resolution)
    footprint = depths * pixel_angle[:, None, None]
    surface = opacities >= opacity_threshold
    count = int(surface.sum())
    if count == 0:
        raise ValueError(
            f"opacity_threshold {opacity_threshold}: no rendered pixel is that opaque; the object is empty from these cameras"
        )
    # The rendered colour is premultiplied by the opacity (composited over black).
    rgb = (colors.permute(0, 2, 3, 1) / opacities[..., None].clamp_min(1e-3)).clamp(0, 1)
    picks = torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:num_gaussians].to(points.device)
    means = points[surface][picks]
    n = means.shape[0]
    sh = torch.zeros(n, (sh_degree + 1) ** 2, 3, dtype=means.dtype, device=means.device)
    sh[:, 0] = rgb_to_sh_dc(rgb[surface][picks])
    gaussians = Gaussians(
        means=means.contiguous(),
        log_scales=footprint[surface][picks].log()[:, None].expand(n, 3).contiguous(),
        quats=torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=means.dtype, device=means.device).expand(n, 4).contiguous(),
        opacity_logits=torch.zeros(n, dtype=means.dtype, device=means.device),  # opacity 0.5
        sh=sh,
    )
    return gaussians, count


def _render(gaussians: Gaussians, labels: Tensor, resolution: int, backend: str) -> tuple[Tensor, Tensor]:
    colors, alphas = rasterize(gaussians, labels, resolution, resolution, backend)
    return colors.permute(0, 3, 1, 2), alphas


@torch.no_grad()
def evaluate_splats(
    gaussians: Gaussians,
    labels: Float[Tensor, "views 25"],
    colors: Float[Tensor, "views 3 res res"],
    backend: str = "auto",
) -> tuple[float, float, float]:
    """Mean PSNR and SSIM of the splats' renders against ``colors`` from ``labels``, and the
    rasterizer's seconds per frame."""
    resolution = colors.shape[-1]
    start = time.perf_counter()
    renders = torch.cat([_render(gaussians, label[None], resolution, backend)[0] for label in labels])
    if renders.is_cuda:
        torch.cuda.synchronize(renders.device)
    per_frame = (time.perf_counter() - start) / len(labels)
    renders = renders.clamp(0, 1).to(colors)
    return float(psnr(renders, colors).mean()), float(ssim(renders, colors).mean()), per_frame


def fit_splats(gan, field, steps: int, resolution: int, config: SplatFitConfig = SplatFitConfig()) -> SplatFit:
    """Gaussians fitted to ``field`` (one object: a ``TriplaneField`` of batch 1) of ``gan`` (a
    ``TrainedGAN``) in ``steps`` Adam steps on renders at ``resolution``."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be an integer >= 1, got {resolution!r}")
    config.check()
    device = gan.device
    backend = config.backend
    if backend == "auto":
        backend = "gsplat" if device.type == "cuda" else "torch"
    if backend == "gsplat" and device.type != "cuda":
        raise ValueError("backend 'gsplat' needs a CUDA device")

    start = time.perf_counter()
    fit_labels = random_orbit_labels(config.fit_views, config.yaw_range, config.pitch_range, config.seed)
    heldout_labels = random_orbit_labels(config.heldout_views, config.yaw_range, config.pitch_range, config.seed + 1)
    fit_colors, fit_opacity, fit_depth = render_targets(gan, field, fit_labels, resolution, config.batch)
    heldout_colors, _, _ = render_targets(gan, field, heldout_labels, resolution, config.batch)
    target_seconds = time.perf_counter() - start

    gaussians, surface_pixels = initial_gaussians(
        fit_colors, fit_opacity, fit_depth, fit_labels, config.num_gaussians, config.opacity_threshold,
        config.sh_degree, config.seed,
    )  # fmt: skip
    psnr_initial, _, _ = evaluate_splats(gaussians, heldout_labels, heldout_colors, backend)

    start = time.perf_counter()
    params = {name: value.detach().clone().requires_grad_(True) for name, value in gaussians.parameters().items()}
    sh_dc = params["sh"][:, :1].detach().clone().requires_grad_(True)
    sh_rest = params["sh"][:, 1:].detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam(
        [
            {"params": [params["means"]], "lr": config.lr_means},
            {"params": [params["log_scales"]], "lr": config.lr_scales},
            {"params": [params["quats"]], "lr": config.lr_quats},
            {"params": [params["opacity_logits"]], "lr": config.lr_opacity},
            {"params": [sh_dc], "lr": config.lr_sh},
            {"params": [sh_rest], "lr": config.lr_sh / 20},
        ],
        eps=1e-15,
    )
    order = torch.Generator().manual_seed(config.seed + 2)
    fit_labels = fit_labels.to(device)
    for step in range(steps):
        # Positions settle as 3DGS's do: their step decays exponentially to 1/10 over the fit.
        optimizer.param_groups[0]["lr"] = config.lr_means * 0.1 ** (step / max(steps - 1, 1))
        views = torch.randperm(config.fit_views, generator=order)[: config.views_per_step]
        current = Gaussians(
            params["means"], params["log_scales"], params["quats"], params["opacity_logits"], torch.cat([sh_dc, sh_rest], 1)
        )
        colors, alphas = _render(current, fit_labels[views.to(device)], resolution, backend)
        target = fit_colors[views.to(fit_colors.device)].to(colors)
        color_loss = (1 - config.ssim_weight) * (colors - target).abs().mean()
        if config.ssim_weight:
            color_loss = color_loss + config.ssim_weight * (1 - ssim(colors, target).mean())
        alpha_loss = (alphas - fit_opacity[views.to(fit_opacity.device)].to(alphas)).abs().mean()
        loss = color_loss + config.alpha_weight * alpha_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    fitted = Gaussians(
        params["means"], params["log_scales"], params["quats"], params["opacity_logits"], torch.cat([sh_dc, sh_rest], 1)
    ).detach()
    seconds = time.perf_counter() - start

    psnr_value, ssim_value, per_frame = evaluate_splats(fitted, heldout_labels, heldout_colors, backend)
    return SplatFit(
        gaussians=fitted,
        steps=steps,
        seconds=seconds,
        target_seconds=target_seconds,
        psnr=psnr_value,
        ssim=ssim_value,
        psnr_initial=psnr_initial,
        render_seconds_per_frame=per_frame,
        backend=backend,
        surface_pixels=surface_pixels,
    )
