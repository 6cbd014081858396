"""Whole images at low resolution as the sampler's training batches: the alternative to patches.

``GridPixelSampler`` draws ``grid_size x grid_size`` pixels from each chosen image, spaced
``stride = min(H, W) // grid_size`` apart from a random offset: a full view of the image at
``1/stride`` resolution whose rays go through real pixel centres (exact ground truth, no
averaging). The rays come row-major per image, the layout ``WysiwygSamplerModel`` reshapes as it
does patches (``train_patch_size = grid_size``). Used as ``WysiwygDataManagerConfig.pixel_sampler``
it replaces the patches that train the probe and the CNN; the field's random rays are unchanged.
The model uses patches by default (why: the model module's docstring); the comparison is in
``benchmarks/RESULTS.md`` (``nerfstudio_vs_nerfacto.py --layout images``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Type, Union

import torch
from jaxtyping import Int
from torch import Tensor

from nerfstudio.data.pixel_samplers import PixelSampler, PixelSamplerConfig


@dataclass
class GridPixelSamplerConfig(PixelSamplerConfig):
    """Config of ``GridPixelSampler``."""

    _target: Type = field(default_factory=lambda: GridPixelSampler)
    """target class to instantiate"""
    grid_size: int = 16
    """Pixels per side of each strided image grid (the model's ``train_patch_size``)."""


class GridPixelSampler(PixelSampler):
    """Samples strided full-image grids (see the module docstring)."""

    config: GridPixelSamplerConfig

    def set_num_rays_per_batch(self, num_rays_per_batch: int) -> None:
        per_image = self.config.grid_size**2
        if num_rays_per_batch < per_image:
            raise ValueError(f"num_rays_per_batch ({num_rays_per_batch}) is below one {self.config.grid_size}^2 grid")
        self.num_rays_per_batch = (num_rays_per_batch // per_image) * per_image

    def sample_method(
        self,
        batch_size: int,
        num_images: int,
        image_height: int,
        image_width: int,
        mask: Optional[Tensor] = None,
        device: Union[torch.device, str] = "cpu",
    ) -> Int[Tensor, "batch_size 3"]:
        grid = self.config.grid_size
        stride = min(image_height, image_width) // grid
        if stride < 1:
            raise ValueError(f"images of {image_height}x{image_width} are smaller than the {grid}x{grid} grid")
        count = batch_size // (grid * grid)
        cameras = torch.randint(0, num_images, (count,), device=device)
        # A random offset inside one stride cell, and a random placement when the grid spans less than the image.
        top = torch.randint(0, image_height - stride * (grid - 1), (count,), device=device)
        left = torch.randint(0, image_width - stride * (grid - 1), (count,), device=device)
        steps = torch.arange(grid, device=device) * stride
        rows = (top[:, None, None] + steps[None, :, None]).expand(count, grid, grid)
        cols = (left[:, None, None] + steps[None, None, :]).expand(count, grid, grid)
        indices = torch.stack([cameras[:, None, None].expand(count, grid, grid), rows, cols], dim=-1)
        return indices.reshape(-1, 3)
