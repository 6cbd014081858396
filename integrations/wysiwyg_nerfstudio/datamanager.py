"""Training batches of two kinds: image-structured rays for the sampler, random rays for the field.

The probe and the proposal CNN need rays laid out as images (patches), but a field trained on
patches learns far more slowly than on rays drawn at random over the training images, nerfacto's
own field included (``benchmarks/RESULTS.md``, nerfstudio section). So each training batch holds
both:

* ``sampler_rays_per_batch`` rays from ``pixel_sampler`` (patches by default), which train the
  proposal CNN through the sampler's supervision loss;
* ``train_num_rays_per_batch`` rays drawn from the datamanager's ``FieldRayPool``: pixels of
  recent training patches with the distribution and budget the model predicted for them. They
  alone carry the RGB loss. The pipeline (``WysiwygPipeline``) hands the model's patch predictions
  to ``keep_field_ray_predictions`` after each iteration; on the first iteration the pool is empty,
  the batch is patches only and the model renders them.

The patch rays come first. The bundle's metadata marks the field rays (``FIELD_RAY_KEY``), gives
every ray's ``(camera, row, column)`` (``PIXEL_KEY``) and, for the field rays, their distribution
(``DISTRIBUTION_KEY``) and hit probability (``HIT_PROBABILITY_KEY``; zeros for the patch rays). Evaluation batches
(``next_eval``) stay patches only, rendered as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Tuple, Type

import torch
from jaxtyping import Float, Int
from torch import Tensor

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig

from wysiwyg_nerfstudio.field_ray_pool import FieldRayPool

FIELD_RAY_KEY = "wysiwyg_field_ray"
"""Ray-bundle metadata ``(N, 1)`` bool: the ray trains the field (else it is a sampler ray)."""
PIXEL_KEY = "wysiwyg_pixel"
"""Ray-bundle metadata ``(N, 3)`` long: the ray's training image, row and column."""
DISTRIBUTION_KEY = "wysiwyg_distribution"
"""Ray-bundle metadata ``(N, num_bins)``: each ray's distribution over depth bins, predicted
beforehand (field rays: from the pool; image chunks: for the whole image)."""
BUDGET_KEY = "wysiwyg_budget"
"""Ray-bundle metadata ``(N, 1)`` float: each ray's sample budget, chosen with its image's distribution."""
HIT_PROBABILITY_KEY = "wysiwyg_hit_probability"
"""Ray-bundle metadata ``(N, 1)`` float: the predicted probability that the ray hits something, from
which the model chooses the field rays' budgets over the batch."""


@dataclass
class WysiwygDataManagerConfig(VanillaDataManagerConfig):
    """``VanillaDataManagerConfig`` whose training batches add random field rays to the sampler's patches."""

    _target: Type = field(default_factory=lambda: WysiwygDataManager)
    """target class to instantiate"""
    sampler_rays_per_batch: int = 1024
    """Training rays per batch drawn by ``pixel_sampler`` (patches) for the probe and the proposal
    CNN; a multiple of the patch area. ``train_num_rays_per_batch`` counts the field's random rays."""
    field_ray_pool_size: int = 65536
    """Patch pixels whose predictions the field rays are drawn from (the most recent ones). Memory:
    ``num_bins + 1`` half floats and a pixel each (8.6 MiB at 65536 pixels and 64 bins); no
    compute (the predictions are those the patches need anyway). A pixel stays
    ``field_ray_pool_size / sampler_rays_per_batch`` iterations (64 by default), so larger pools
    draw from more distinct pixels with older predictions."""

    def __post_init__(self) -> None:
        for name in ("sampler_rays_per_batch", "field_ray_pool_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.train_num_images_to_sample_from != -1:
            raise ValueError(
                "WysiwygDataManager draws field rays from patches of all training images: keep "
                f"train_num_images_to_sample_from at -1 (got {self.train_num_images_to_sample_from})"
            )


class WysiwygDataManager(VanillaDataManager):
    """Training batches of sampler patches followed by random field rays (module docstring)."""

    config: WysiwygDataManagerConfig
    field_ray_pool: FieldRayPool | None = None

    def setup_train(self) -> None:
        super().setup_train()
        self.train_pixel_sampler = self._get_pixel_sampler(self.train_dataset, self.config.sampler_rays_per_batch)

    def keep_field_ray_predictions(
        self,
        pixels: Int[Tensor, "num_pixels 3"],
        distributions: Float[Tensor, "num_pixels num_bins"],
        hit_probabilities: Float[Tensor, " num_pixels"],
    ) -> None:
        """Add the model's predictions for training pixels ``(camera, row, column)`` to the field-ray pool."""
        if self.field_ray_pool is None:
            self.field_ray_pool = FieldRayPool(self.config.field_ray_pool_size, distributions.shape[-1])
        self.field_ray_pool.add(pixels, distributions, hit_probabilities)

    def next_train(self, step: int) -> Tuple[RayBundle, Dict]:
        self.train_count += 1
        pool = self.field_ray_pool
        if pool is None and self.train_count > 1:
            raise RuntimeError(
                "the field-ray pool is still empty after a training iteration: WysiwygPipeline fills it from "
                "the model's patch predictions (use WysiwygPipelineConfig as the method's pipeline)"
            )
        image_batch = next(self.iter_train_image_dataloader)
        if "mask" in image_batch:
            raise ValueError("wysiwyg-sampler's field rays do not support masks yet; remove the dataset's masks")
        batch = self.train_pixel_sampler.sample(image_batch)
        num_sampler_rays = len(batch["indices"])
        if pool is not None:
            field_pixels, distributions, hit_probabilities = pool.draw(self.config.train_num_rays_per_batch)
            batch = concatenate_pixel_batches(batch, gather_pixels(image_batch, field_pixels))
        ray_bundle = self.train_ray_generator(batch["indices"])
        device = ray_bundle.origins.device
        num_rays = len(batch["indices"])
        is_field_ray = torch.zeros(num_rays, 1, dtype=torch.bool, device=device)
        is_field_ray[num_sampler_rays:] = True
        metadata = dict(ray_bundle.metadata or {})
        metadata[FIELD_RAY_KEY] = is_field_ray
        metadata[PIXEL_KEY] = batch["indices"].to(device)
        if pool is not None:
            metadata[DISTRIBUTION_KEY] = torch.cat(
                [torch.zeros(num_sampler_rays, pool.num_bins), distributions]
            ).to(device)
            metadata[HIT_PROBABILITY_KEY] = torch.cat([torch.zeros(num_sampler_rays), hit_probabilities])[:, None].to(device)
        ray_bundle.metadata = metadata
        return ray_bundle, batch


def gather_pixels(image_batch: Dict, pixels: Tensor) -> Dict[str, Tensor]:
    """A pixel batch (as nerfstudio's pixel samplers return) of ``image_batch`` at ``pixels`` ``(camera, row, column)``."""
    position = torch.full((int(image_batch["image_idx"].max()) + 1,), -1, dtype=torch.long)
    position[image_batch["image_idx"].cpu().long()] = torch.arange(len(image_batch["image_idx"]))
    slots = position[pixels[:, 0]]
    if bool((slots < 0).any()):
        raise KeyError("field-ray pixels of images missing from the image batch")
    rows, columns = pixels[:, 1], pixels[:, 2]
    gathered: Dict[str, Tensor] = {}
    for key, value in image_batch.items():
        if key == "image_idx" or value is None:
            continue
        if isinstance(value, list):  # images of different sizes
            gathered[key] = torch.stack([value[s][r, c] for s, r, c in zip(slots.tolist(), rows.tolist(), columns.tolist())])
        else:
            gathered[key] = value[slots.to(value.device), rows.to(value.device), columns.to(value.device)]
    gathered["indices"] = pixels
    return gathered


def concatenate_pixel_batches(first: Dict[str, Tensor], second: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """The per-ray entries of two pixel batches, ``first``'s rays then ``second``'s."""
    if first.keys() != second.keys():
        raise ValueError(f"pixel batches with different keys: {sorted(first)} and {sorted(second)}")
    return {key: torch.cat([first[key], second[key].to(first[key].device)]) for key in first}
