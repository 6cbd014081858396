"""Whole-image predictions of the learned sampler, kept so random training rays can be sampled.

A random ray has no image around it for the probe and the CNN, so its distribution is read from
a prediction made for its whole training image. ``DistributionCache`` keeps one per image with the
iteration it was made at; predictions older than ``max_age`` iterations are dropped and made
again when a ray of that image next needs one, so memory holds only the images used recently
(``num_bins`` half floats per pixel: 8 MiB for a 256x256 image with 64 bins).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor


@dataclass
class ImagePrediction:
    """One training image's prediction and the iteration it was made at."""

    distribution: Float[Tensor, "height width num_bins"]
    budgets: Int[Tensor, "height width"]
    step: int


class DistributionCache:
    """Per-image distributions and adaptive budgets, indexed by ``(camera, row, column)``."""

    def __init__(self, max_age: int) -> None:
        if max_age < 1:
            raise ValueError(f"max_age must be >= 1 iteration, got {max_age}")
        self.max_age = max_age
        self.images: dict[int, ImagePrediction] = {}

    def drop_stale(self, step: int) -> None:
        """Forget predictions made ``max_age`` or more iterations before ``step``."""
        self.images = {camera: image for camera, image in self.images.items() if step - image.step < self.max_age}

    def missing(self, cameras: Int[Tensor, " num_rays"]) -> list[int]:
        """The distinct cameras among ``cameras`` that have no prediction."""
        return [camera for camera in torch.unique(cameras).tolist() if camera not in self.images]

    def store(
        self,
        camera: int,
        distribution: Float[Tensor, "height width num_bins"],
        budgets: Int[Tensor, "height width"],
        step: int,
    ) -> None:
        # Half precision halves the memory; the rows are renormalised on lookup.
        self.images[camera] = ImagePrediction(distribution.half(), budgets.to(torch.int16), step)

    def lookup(
        self, pixels: Int[Tensor, "num_rays 3"]
    ) -> tuple[Float[Tensor, "num_rays num_bins"], Int[Tensor, " num_rays"]]:
        """Distributions (float32, rows summing to 1) and budgets of the rays at ``pixels``."""
        if pixels.ndim != 2 or pixels.shape[-1] != 3:
            raise ValueError(f"pixels must be (num_rays, 3) rows of (camera, row, column), got {tuple(pixels.shape)}")
        cameras = pixels[:, 0]
        absent = self.missing(cameras)
        if absent:
            raise KeyError(f"no cached prediction for training images {absent}")
        first = next(iter(self.images.values()))
        distribution = torch.empty(len(pixels), first.distribution.shape[-1], device=first.distribution.device)
        budgets = torch.empty(len(pixels), dtype=torch.long, device=first.budgets.device)
        for camera in torch.unique(cameras).tolist():
            rows = (cameras == camera).nonzero()[:, 0]
            image = self.images[camera]
            y, x = pixels[rows, 1], pixels[rows, 2]
            distribution[rows] = image.distribution[y, x].float()
            budgets[rows] = image.budgets[y, x].long()
        return distribution / distribution.sum(-1, keepdim=True), budgets
