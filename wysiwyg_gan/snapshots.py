"""Snapshot grids: for a few fixed latents, colour, depth and normals from a few cameras.

Rows are latents; each camera gives three columns (image, depth, normals). Latents are
conditioned on the frontal camera, as the paper does at inference.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from wysiwyg_gan.images import depth_to_unit, to_hwc_uint8
from wysiwyg_gan.orbit_cameras import frontal_labels, orbit_camera_labels
from wysiwyg_gan.rendering import render_depth_normals
from wysiwyg_gan.schedule import ScheduleState
from wysiwyg_gan.training import GANTrainer, upsample_to


@torch.no_grad()
def render_snapshot(
    trainer: GANTrainer, schedule: ScheduleState, num_seeds: int, num_views: int, truncation_psi: float, yaw_range: float = 0.5
) -> np.ndarray:
    """The grid as ``(rows, columns, 3)`` uint8, rendered with the EMA generator in the current mode."""
    device = trainer.device
    config = trainer.config
    full = config.schedule.full_resolution
    generator = torch.Generator().manual_seed(1234)
    z = torch.randn(num_seeds, config.generator.z_dim, generator=generator).to(device)
    yaws = torch.linspace(-yaw_range, yaw_range, num_views) if num_views > 1 else torch.zeros(1)
    was_training = trainer.sampler.training
    trainer.sampler.eval()
    rows = []
    try:
        for index in range(num_seeds):
            view_labels = orbit_camera_labels(math.pi / 2 + yaws, torch.full((num_views,), math.pi / 2)).to(device)
            condition = frontal_labels(num_views).to(device)
            field, images, _ = trainer.render(
                trainer.generator_ema,
                z[index : index + 1].expand(num_views, -1),
                view_labels,
                condition,
                schedule,
                noise_mode="const",
                truncation_psi=truncation_psi,
            )
            normals = render_depth_normals(field, images, view_labels, config.render)
            mask = images.opacity
            near, far = config.render.near, config.render.far
            depth = depth_to_unit(images.depth, mask, near, far)
            panels = []
            for view in range(num_views):
                panels += [
                    (images.image[view] + 1) / 2,
                    depth[view].expand(3, -1, -1),
                    ((normals[view] + 1) / 2) * mask[view],
                ]
            row = torch.cat([upsample_to(p[None], full)[0] for p in panels], dim=2)
            rows.append(row)
    finally:
        trainer.sampler.train(was_training)
    grid = torch.cat(rows, dim=1).clamp(0, 1)
    return to_hwc_uint8(grid)
