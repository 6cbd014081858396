"""Plug ``learned_sampler`` into your own field and camera loop.

What this example shows:

* a user-written field: any ``nn.Module`` (or callable) mapping sample positions and directions
  ``(*B, S, 3)`` to ``{"density": (*B, S), "rgb": (*B, S, 3)}``; here an analytic SDF scene (a
  sphere in front of a box, on a pedestal) with a procedural colour texture, its density given by
  ``learned_sampler.volsdf_density``;
* a camera loop: random orbit cameras -> ``rays_from_cameras`` -> image rays ``(B, H, W)``;
* training the ``LearnedSampler``'s proposal CNN with ``supervision_loss`` and Adam (the field
  is fixed here; the loss only ever reaches the CNN);
* rendering a held-out view with the trained sampler and with EG3D's two-pass importance sampling
  (48 + 48 samples per ray), both compared with a dense 1024-sample reference.

Runs on a CPU in about half a minute::

    python examples/own_field.py --steps 150 --out renders/

On a machine shared with other jobs, ``OMP_NUM_THREADS=1`` keeps torch's threads from
oversubscribing the cores (which can slow small workloads like this one down several times).
"""

from __future__ import annotations

import argparse
import math
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

import learned_sampler as ls

CAMERA_RADIUS = 2.7
FOV_DEGREES = 40.0
# The scene fits in a ball of radius ~0.5 around the origin, so this depth range holds it whole
# from every orbit camera; a tight range gives the depth bins a fine resolution.
NEAR, FAR = CAMERA_RADIUS - 0.6, CAMERA_RADIUS + 0.6


class ShapesField(nn.Module):
    """A field a user might write: analytic SDF of three shapes plus a colour texture.

    ``beta`` is the VolSDF Laplace scale: the surface is a shell about ``beta`` thick, far thinner
    than a uniform sampler's spacing, which is what makes sampling hard.
    """

    def __init__(self, beta: float = 0.004):
        super().__init__()
        # Buffers rather than Python floats, so the field follows ``.to(device)`` like any module.
        self.register_buffer("beta", torch.tensor(beta))
        self.register_buffer("sphere_centre", torch.tensor([0.12, 0.08, 0.18]))
        self.register_buffer("box_centre", torch.tensor([-0.14, -0.05, -0.12]))
        self.register_buffer("box_half_size", torch.tensor([0.2, 0.2, 0.2]))

    def sdf(self, positions: Tensor) -> Tensor:
        """Signed distance, positive outside (the convention of ``volsdf_density``)."""
        sphere = (positions - self.sphere_centre).norm(dim=-1) - 0.22
        q = (positions - self.box_centre).abs() - self.box_half_size
        box = q.clamp_min(0.0).norm(dim=-1) + q.max(dim=-1).values.clamp_max(0.0) - 0.02
        # A thin pedestal (capped cylinder) under both shapes gives a third depth layer.
        radial = positions[..., [0, 2]].norm(dim=-1) - 0.4
        height = (positions[..., 1] + 0.3).abs() - 0.03
        pedestal = torch.stack([radial, height], -1).clamp_min(0.0).norm(dim=-1) + torch.maximum(
            radial, height
        ).clamp_max(0.0)
        return torch.minimum(torch.minimum(sphere, box), pedestal)

    def rgb(self, positions: Tensor) -> Tensor:
        """Procedural texture: a smooth colour gradient times soft stripes, in [0, 1]."""
        base = 0.5 + 0.4 * torch.tanh(2.5 * positions)
        stripes = 0.75 + 0.25 * torch.sin(25.0 * positions[..., 1:2] + 8.0 * positions[..., 0:1])
        return (base * stripes).clamp(0.0, 1.0)

    def forward(self, positions: Tensor, directions: Tensor) -> dict[str, Tensor]:
        # ``directions`` is unused: this scene is diffuse. A field with view-dependent colour
        # would feed it to its colour head.
        return {"density": ls.volsdf_density(self.sdf(positions), self.beta), "rgb": self.rgb(positions)}


def random_camera_rays(batch_size: int, resolution: int, generator: torch.Generator) -> ls.Rays:
    """Rays of ``batch_size`` random orbit cameras around the frontal view, batch ``(B, H, W)``."""
    cam2world = ls.sample_orbit_cameras(
        batch_size, yaw_std=0.5, pitch_std=0.25, radius=CAMERA_RADIUS, generator=generator
    )
    intrinsics = ls.intrinsics_from_fov(FOV_DEGREES, batch_size)
    return ls.rays_from_cameras(cam2world, intrinsics, resolution, resolution, NEAR, FAR)


def held_out_rays(resolution: int) -> ls.Rays:
    """A fixed view from the side and slightly above, at the edge of the training distribution."""
    cam2world = ls.orbit_cameras(torch.tensor([math.pi / 2 + 0.6]), torch.tensor([math.pi / 2 - 0.3]), CAMERA_RADIUS)
    return ls.rays_from_cameras(cam2world, ls.intrinsics_from_fov(FOV_DEGREES), resolution, resolution, NEAR, FAR)


@torch.no_grad()
def render_in_chunks(
    rays: ls.Rays, sampler: ls.UniformSampler, field: ls.Field, background: float, rays_per_chunk: int = 4096
) -> Tensor:
    """Colour of image rays ``(B, H, W)``, rendered a few rows at a time to bound the memory of
    dense samplers."""
    rows_per_chunk = max(1, rays_per_chunk // rays.batch_shape[2])
    rgb = []
    for top in range(0, rays.batch_shape[1], rows_per_chunk):
        chunk = rays[:, top : top + rows_per_chunk]
        rgb.append(ls.render(chunk, sampler.sample(chunk, field), field, background=background).rgb)
    return torch.cat(rgb, dim=1)


def psnr(image: Tensor, reference: Tensor) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1]."""
    mse = float(((image - reference) ** 2).mean())
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


def write_png(path: Path, image: Tensor) -> None:
    """Write an ``(H, W, 3)`` image in [0, 1] as an 8-bit RGB PNG (zlib only, no image library)."""
    pixels = (image.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
    height, width, _ = pixels.shape
    # Every PNG scanline starts with its filter type; 0 is "none".
    scanlines = np.concatenate([np.zeros((height, 1), np.uint8), pixels.reshape(height, width * 3)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit depth, colour type 2 (RGB)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 9))
        + chunk(b"IEND", b"")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150, help="training steps of the proposal CNN")
    parser.add_argument("--resolution", type=int, default=64, help="image side (a multiple of 4)")
    parser.add_argument("--batch", type=int, default=2, help="cameras per training step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="folder for PNGs of the three renders")
    args = parser.parse_args()
    if args.resolution % 4:
        parser.error("--resolution must be a multiple of the downscale factor 4")
    if args.steps < 0 or args.batch < 1:
        parser.error("--steps must be >= 0 and --batch >= 1")
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)

    field = ShapesField()
    # A small sampler for 64x64 images: 16x16 probe with 192 samples per ray (12 per full-res
    # ray, as the paper's 128 -> 512 setting), 32 depth bins, a narrow CNN.
    config = ls.LearnedSamplerConfig(
        num_bins=32,
        probe_samples=192,
        downscale=4,
        cnn_width=32,
        patch_size=32,
        target_samples=192,
    )
    sampler = ls.LearnedSampler(config, generator=generator)
    optimizer = torch.optim.Adam(sampler.parameters(), lr=5e-3)
    # Decaying the step size to zero settles the CNN: the held-out render uses the final weights.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, args.steps))

    start = time.perf_counter()
    sampler.train()
    for step in range(1, args.steps + 1):
        rays = random_camera_rays(args.batch, args.resolution, generator)
        # One call probes the field, runs the CNN and scores it against dense targets on a random
        # patch; the field has no trainable parameters, so the gradient reaches only the CNN.
        loss = sampler.supervision_loss(rays, field)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step == 1 or step % max(1, args.steps // 5) == 0 or step == args.steps:
            print(f"step {step:4d}  supervision loss {loss.item():.3f}  ({time.perf_counter() - start:.1f} s)")

    rays = held_out_rays(args.resolution)
    background = 1.0  # white, so missed surfaces show up as errors instead of blending with black
    reference = render_in_chunks(rays, ls.UniformSampler(1024, stratified=False), field, background)

    sampler.eval()  # midpoint samples, no jitter
    with torch.no_grad():
        learned = ls.render(rays, sampler.sample(rays, field), field, background=background)
        # Deterministic coarse and fine samples, as EG3D renders at inference.
        two_pass_sampler = ls.ImportanceSampler(48, 48, stratified=False)
        two_pass = ls.render(rays, two_pass_sampler.sample(rays, field), field, background=background)

    learned_psnr = psnr(learned.rgb, reference)
    two_pass_psnr = psnr(two_pass.rgb, reference)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, image in (("reference", reference), ("learned", learned.rgb), ("two_pass", two_pass.rgb)):
            write_png(args.out / f"{name}.png", image[0])
        print(f"wrote reference.png, learned.png, two_pass.png to {args.out}")
    print(f"total time {time.perf_counter() - start:.1f} s")
    print(
        f"learned: {learned.samples_per_ray:.1f} (+{config.probe_samples_per_ray:.1f} probe) spp, "
        f"PSNR {learned_psnr:.1f} dB | two-pass 48+48: {two_pass.samples_per_ray:.0f} spp, "
        f"PSNR {two_pass_psnr:.1f} dB"
    )


if __name__ == "__main__":
    main()
