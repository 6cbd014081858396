"""The ray-level entry point: train a field on shuffled ray chunks, nerfacc / nerfstudio style.

Training loops for NeRF-like models rarely render whole images: they draw batches of random rays
and render those. The learned sampler predicts its distribution from an image-shaped probe, so
such a loop splits the work in two:

1. once per image, ``proposal = sampler.predict(rays, field)``: the probe at 1/4 resolution and the
   CNN give ``proposal.distribution``, one distribution over depth bins per pixel ``(B, H, W, K)``;
2. for every chunk of shuffled rays, ``sampler.sample_from_distribution(chunk_rays, chunk_distribution)``
   with the matching rows, then ``render(chunk_rays, intervals, field)``. With the adaptive budget
   (16 samples, 32 for the hardest 10 %) the hard fraction is taken over each 1-D chunk.

The field learned here is a voxel grid of signed distances and colours (density through
``learned_sampler.volsdf_density``) fitted to images of an analytic scene; the sampler's CNN is
trained at the same time with ``supervision_loss`` on the field as it currently is. Every step
prints the photometric loss of the field and the samples per ray; the loss falls as the grid
learns the scene. About half a minute on a CPU::

    python examples/ray_batches.py --steps 60 --chunk 1024

On a machine shared with other jobs, ``OMP_NUM_THREADS=1`` keeps torch's threads from
oversubscribing the cores (which can slow small workloads like this one down several times).
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import learned_sampler as ls

CAMERA_RADIUS = 2.7
FOV_DEGREES = 40.0
NEAR, FAR = CAMERA_RADIUS - 0.6, CAMERA_RADIUS + 0.6
SCENE_EXTENT = 0.6
"""The grid covers the cube [-0.6, 0.6]^3, which holds the target scene."""
BACKGROUND = 1.0  # white: the field must learn to be empty where the target shows background


def target_scene(positions: Tensor, directions: Tensor) -> dict[str, Tensor]:
    """The scene the grid learns, a plain function: a red sphere in front of a blue-green box."""
    sphere = (positions - positions.new_tensor([0.12, 0.05, 0.15])).norm(dim=-1) - 0.22
    q = (positions - positions.new_tensor([-0.12, -0.05, -0.1])).abs() - 0.2
    box = q.clamp_min(0.0).norm(dim=-1) + q.max(dim=-1).values.clamp_max(0.0)
    sdf = torch.minimum(sphere, box)
    stripes = 0.8 + 0.2 * torch.sin(20.0 * positions[..., 1:2])
    sphere_rgb = positions.new_tensor([0.9, 0.25, 0.2]).expand_as(positions)
    box_rgb = positions.new_tensor([0.15, 0.55, 0.7]).expand_as(positions)
    rgb = torch.where((sphere < box)[..., None], sphere_rgb, box_rgb) * stripes
    return {"density": ls.volsdf_density(sdf, 0.005), "rgb": rgb}


class GridField(nn.Module):
    """A learnable field: trilinearly interpolated grids of signed distance and colour.

    Starts as a grey sphere, so that the very first probe already sees a surface to sample around.
    """

    def __init__(self, resolution: int = 40, beta: float = 0.02):
        super().__init__()
        axis = torch.linspace(-SCENE_EXTENT, SCENE_EXTENT, resolution)
        z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")  # grid_sample's (D, H, W) = (z, y, x)
        sphere_sdf = torch.stack([x, y, z], dim=-1).norm(dim=-1) - 0.35
        self.sdf = nn.Parameter(sphere_sdf[None, None])  # (1, 1, D, H, W)
        self.colour_logits = nn.Parameter(torch.zeros(1, 3, resolution, resolution, resolution))
        self.beta = beta

    def forward(self, positions: Tensor, directions: Tensor) -> dict[str, Tensor]:
        sample_shape = positions.shape[:-1]
        # grid_sample wants coordinates in [-1, 1] ordered (x, y, z), laid out as (1, 1, 1, N, 3).
        coords = (positions / SCENE_EXTENT).reshape(1, 1, 1, -1, 3)
        # "border" extends the boundary values outwards: outside the cube stays empty space.
        sdf = F.grid_sample(self.sdf, coords, align_corners=True, padding_mode="border").reshape(sample_shape)
        logits = F.grid_sample(self.colour_logits, coords, align_corners=True, padding_mode="border")
        rgb = torch.sigmoid(logits.reshape(3, -1).T).reshape(*sample_shape, 3)
        return {"density": ls.volsdf_density(sdf, self.beta), "rgb": rgb}


def without_gradients(field: nn.Module) -> ls.Field:
    """The same field, evaluated under ``torch.no_grad()``.

    ``sampler.predict`` keeps the gradients of the probe's field outputs (a GAN uses them for
    losses on the probe); this loop does not, so it hands the sampler a no-grad view of the field
    and saves the autograd graph of every probe sample.
    """

    def evaluate(positions: Tensor, directions: Tensor) -> dict[str, Tensor]:
        with torch.no_grad():
            return field(positions, directions)

    return evaluate


def random_camera_rays(resolution: int, generator: torch.Generator) -> ls.Rays:
    """Rays of one random orbit camera, batch ``(1, H, W)``."""
    cam2world = ls.sample_orbit_cameras(1, yaw_std=0.5, pitch_std=0.25, radius=CAMERA_RADIUS, generator=generator)
    return ls.rays_from_cameras(cam2world, ls.intrinsics_from_fov(FOV_DEGREES), resolution, resolution, NEAR, FAR)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60, help="training images (one random camera each)")
    parser.add_argument("--chunk", type=int, default=1024, help="rays per rendered chunk")
    parser.add_argument("--resolution", type=int, default=64, help="image side (a multiple of 4)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.resolution % 4:
        parser.error("--resolution must be a multiple of the downscale factor 4")
    if args.steps < 1 or args.chunk < 1:
        parser.error("--steps and --chunk must be >= 1")
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)

    field = GridField()
    field_optimizer = torch.optim.Adam(field.parameters(), lr=0.02)
    config = ls.LearnedSamplerConfig(
        num_bins=32, probe_samples=192, downscale=4, cnn_width=32, patch_size=32, target_samples=192
    )
    sampler = ls.LearnedSampler(config, generator=generator)
    sampler_optimizer = torch.optim.Adam(sampler.parameters(), lr=5e-3)
    reference_sampler = ls.UniformSampler(256, stratified=False)

    print(f"{'step':>4} {'photometric':>11} {'PSNR':>7} {'sampler':>7} {'spp':>5}  (+{config.probe_samples_per_ray:.1f} probe)")
    start = time.perf_counter()
    losses, samples_per_ray = [], []
    for step in range(1, args.steps + 1):
        rays = random_camera_rays(args.resolution, generator)
        with torch.no_grad():
            # The training image: stands in for a dataset's photograph of this camera.
            target_rgb = ls.render(rays, reference_sampler.sample(rays), target_scene, background=BACKGROUND).rgb

        # 1. Once per image: probe + CNN, and the sampler's own loss on the same prediction.
        frozen_field = without_gradients(field)
        proposal = sampler.predict(rays, frozen_field)
        sampler_loss = sampler.supervision_loss(rays, frozen_field, proposal)
        sampler_optimizer.zero_grad(set_to_none=True)
        sampler_loss.backward()
        sampler_optimizer.step()

        # 2. Flatten the image to unordered rays and keep each ray's row of the distribution.
        flat_rays = rays.flatten()
        flat_distribution = proposal.distribution.detach().reshape(-1, config.num_bins)
        flat_target = target_rgb.reshape(-1, 3)
        num_rays = flat_rays.batch_shape[0]
        order = torch.randperm(num_rays, generator=generator)

        # 3. Random ray chunks, one field update each, as a nerfacc / nerfstudio loop would do.
        step_loss = step_samples = 0.0
        for chunk in order.split(args.chunk):
            chunk_rays = flat_rays[chunk]
            intervals = sampler.sample_from_distribution(chunk_rays, flat_distribution[chunk])
            result = ls.render(chunk_rays, intervals, field, background=BACKGROUND)
            loss = F.mse_loss(result.rgb, flat_target[chunk])
            field_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            field_optimizer.step()
            # Weighted by chunk size: the last chunk may be smaller than the others.
            step_loss += loss.item() * len(chunk) / num_rays
            step_samples += result.samples_per_ray * len(chunk) / num_rays

        losses.append(step_loss)
        samples_per_ray.append(step_samples)
        psnr = -10.0 * math.log10(max(step_loss, 1e-12))
        print(f"{step:4d} {step_loss:11.5f} {psnr:5.1f}dB {sampler_loss.item():7.3f} {step_samples:5.1f}")

    # Averages over a few steps: each step sees a different camera, so single steps are noisy.
    window = max(1, min(5, len(losses) // 3))
    first, last = sum(losses[:window]) / window, sum(losses[-window:]) / window
    print(f"total time {time.perf_counter() - start:.1f} s")
    print(
        f"photometric loss {first:.5f} -> {last:.5f} (mean of the first / last {window} steps), "
        f"learned: {sum(samples_per_ray) / len(samples_per_ray):.1f} (+{config.probe_samples_per_ray:.1f} probe) spp"
    )


if __name__ == "__main__":
    main()
