"""Image regions with the learned sampler's predictions, from which the field's random rays are drawn.

A random ray has no image around it for the probe and the CNN, so its distribution comes from a
prediction made for an image region around it. ``FieldRayPool`` keeps one region per chosen
training image (up to ``num_regions`` images, each a random ``region_size`` square, the whole
image when smaller) and draws the field's rays uniformly over the pooled pixels; every
``refresh_every`` iterations new regions are chosen and predicted. The cost is bounded whatever the
dataset: at most ``num_regions * region_size**2`` pixels are probed per refresh (16 probe samples
each with the probe at 1/2 resolution) and kept (``num_bins`` half floats each: 128 MiB at 64
regions of 128x128 and 64 bins). On small datasets the regions are the whole training images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor


@dataclass
class Region:
    """A square region of one training image, in pixels."""

    camera: int
    top: int
    left: int
    height: int
    width: int


@dataclass
class RegionPrediction:
    """A region and the learned sampler's prediction for its pixels."""

    region: Region
    distribution: Float[Tensor, "height width num_bins"]
    budgets: Int[Tensor, "height width"]


class FieldRayPool:
    """Regions of training images with their predictions (module docstring)."""

    def __init__(self, num_regions: int, region_size: int, refresh_every: int) -> None:
        for name, value in (("num_regions", num_regions), ("region_size", region_size), ("refresh_every", refresh_every)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.num_regions = num_regions
        self.region_size = region_size
        self.refresh_every = refresh_every
        self.predictions: dict[int, RegionPrediction] = {}
        self.refreshed_at: int | None = None

    def needs_refresh(self, step: int) -> bool:
        return self.refreshed_at is None or step - self.refreshed_at >= self.refresh_every

    def choose_regions(self, heights: Int[Tensor, " num_images"], widths: Int[Tensor, " num_images"]) -> list[Region]:
        """One random ``region_size`` square in each of up to ``num_regions`` distinct random images."""
        cameras = torch.randperm(len(heights))[: self.num_regions].sort().values.tolist()
        regions = []
        for camera in cameras:
            height, width = min(int(heights[camera]), self.region_size), min(int(widths[camera]), self.region_size)
            top = int(torch.randint(0, int(heights[camera]) - height + 1, ()))
            left = int(torch.randint(0, int(widths[camera]) - width + 1, ()))
            regions.append(Region(camera, top, left, height, width))
        return regions

    def refresh(self, predictions: list[RegionPrediction], step: int) -> None:
        """Replace the pool by ``predictions`` (one region per image), made at ``step``."""
        if not predictions:
            raise ValueError("a refresh needs at least one region")
        cameras = [prediction.region.camera for prediction in predictions]
        if len(set(cameras)) != len(cameras):
            raise ValueError(f"one region per image, got cameras {cameras}")
        for prediction in predictions:
            region = prediction.region
            if prediction.distribution.shape[:2] != (region.height, region.width):
                raise ValueError(
                    f"prediction of shape {tuple(prediction.distribution.shape)} for a {region.height}x{region.width} region"
                )
        # All regions' pixels in one table, so drawing and looking rays up are single gathers; each
        # region's prediction is a view of it. Half precision halves the memory; rows are
        # renormalised on lookup.
        num_bins = predictions[0].distribution.shape[-1]
        self.distributions = torch.cat([p.distribution.reshape(-1, num_bins).half() for p in predictions])
        self.budgets = torch.cat([p.budgets.reshape(-1).to(torch.int16) for p in predictions])
        regions = [prediction.region for prediction in predictions]
        self.predictions = {}
        start = 0
        for region in regions:
            end = start + region.height * region.width
            self.predictions[region.camera] = RegionPrediction(
                region,
                self.distributions[start:end].view(region.height, region.width, num_bins),
                self.budgets[start:end].view(region.height, region.width),
            )
            start = end
        self.region_table = torch.tensor([[r.camera, r.top, r.left, r.height, r.width] for r in regions])
        areas = self.region_table[:, 3] * self.region_table[:, 4]
        self.region_ends = areas.cumsum(0)
        self.region_of_camera = torch.full((max(cameras) + 1,), -1, dtype=torch.long)
        self.region_of_camera[torch.tensor(cameras)] = torch.arange(len(cameras))
        self.refreshed_at = step

    def sample_pixels(self, num_rays: int, device: torch.device | str = "cpu") -> Int[Tensor, "num_rays 3"]:
        """``(camera, row, column)`` of ``num_rays`` pixels drawn uniformly over the pooled regions."""
        if not self.predictions:
            raise RuntimeError(
                "the field-ray pool is empty: WysiwygSamplerModel fills it in its training callback "
                "(get_training_callbacks, run before each iteration by nerfstudio's Trainer)"
            )
        flat = torch.randint(0, int(self.region_ends[-1]), (num_rays,))
        which = torch.searchsorted(self.region_ends, flat, right=True)
        table = self.region_table[which]
        local = flat - (self.region_ends[which] - table[:, 3] * table[:, 4])
        rows = table[:, 1] + local // table[:, 4]
        columns = table[:, 2] + local % table[:, 4]
        return torch.stack([table[:, 0], rows, columns], dim=-1).to(device)

    def lookup(
        self, pixels: Int[Tensor, "num_rays 3"]
    ) -> tuple[Float[Tensor, "num_rays num_bins"], Int[Tensor, " num_rays"]]:
        """Distributions (float32, rows summing to 1) and budgets of the rays at ``pixels``."""
        if pixels.ndim != 2 or pixels.shape[-1] != 3:
            raise ValueError(f"pixels must be (num_rays, 3) rows of (camera, row, column), got {tuple(pixels.shape)}")
        if not self.predictions:
            raise RuntimeError("the field-ray pool is empty")
        pixels = pixels.cpu()
        cameras = pixels[:, 0]
        known = (cameras >= 0) & (cameras < len(self.region_of_camera))
        region = torch.where(known, self.region_of_camera[cameras.clamp(0, len(self.region_of_camera) - 1)], -1)
        if bool((region < 0).any()):
            camera = int(cameras[region < 0][0])
            raise KeyError(f"training image {camera} has no region in the field-ray pool")
        table = self.region_table[region]
        y, x = pixels[:, 1] - table[:, 1], pixels[:, 2] - table[:, 2]
        outside = (y < 0) | (y >= table[:, 3]) | (x < 0) | (x >= table[:, 4])
        if bool(outside.any()):
            camera = int(cameras[outside][0])
            raise KeyError(f"pixels of training image {camera} outside its pooled region {self.predictions[camera].region}")
        start = self.region_ends[region] - table[:, 3] * table[:, 4]
        rows = (start + y * table[:, 4] + x).to(self.distributions.device)
        distribution = self.distributions[rows].float()
        return distribution / distribution.sum(-1, keepdim=True), self.budgets[rows].long()
