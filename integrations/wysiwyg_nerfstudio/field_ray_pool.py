"""Recent sampler-patch predictions, from which the field's random rays are drawn.

A random ray has no image around it for the probe and the CNN, so its distribution must come from
a prediction made for an image neighbourhood of it. Every training iteration already predicts one:
the probe and the CNN run on the sampler's patches to train the CNN. ``FieldRayPool`` keeps those
predictions (pixel, distribution over depth bins, hit probability) for the last ``capacity`` patch
pixels, first in first out, and the field's rays are drawn from them. No image is predicted for
the field rays alone, so they cost nothing beyond the gathers.

Patches are placed uniformly, so a pixel near an image border lies in fewer possible patches than
one in the middle and enters the pool less often. Each pixel is drawn with a weight inversely
proportional to how often its position has entered the pool so far (counted over all insertions),
which makes the field's rays uniform over the image positions, as nerfacto's are, whatever the
pixel sampler's law.

Cost: ``capacity`` rows of ``num_bins + 1`` half floats plus a pixel (8.6 MiB at 65536 pixels
and 64 bins); drawing is a weighted choice over the rows. A pixel stays
``capacity / sampler_rays_per_batch`` iterations, so the predictions the field rays use are at
most that many iterations old.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor


class FieldRayPool:
    """First-in-first-out store of per-pixel predictions, drawn from uniformly over image positions."""

    def __init__(self, capacity: int, num_bins: int) -> None:
        for name, value in (("capacity", capacity), ("num_bins", num_bins)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.capacity = capacity
        self.num_bins = num_bins
        self.pixels = torch.zeros(capacity, 3, dtype=torch.long)
        self.distributions = torch.zeros(capacity, num_bins, dtype=torch.half)
        self.hit_probabilities = torch.zeros(capacity, dtype=torch.half)
        self.size = 0
        self._cursor = 0
        # Insertions so far at each (row, column), grown to the largest image seen.
        self.position_counts = torch.zeros(0, 0, dtype=torch.long)

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        pixels: Int[Tensor, "num_pixels 3"],
        distributions: Float[Tensor, "num_pixels num_bins"],
        hit_probabilities: Float[Tensor, " num_pixels"],
    ) -> None:
        """Keep the predictions of ``pixels`` ``(camera, row, column)``, dropping the oldest when full."""
        if pixels.ndim != 2 or pixels.shape[-1] != 3:
            raise ValueError(f"pixels must be (num_pixels, 3) rows of (camera, row, column), got {tuple(pixels.shape)}")
        if distributions.shape != (len(pixels), self.num_bins):
            raise ValueError(
                f"distributions must be ({len(pixels)}, {self.num_bins}), got {tuple(distributions.shape)}"
            )
        if hit_probabilities.shape != (len(pixels),):
            raise ValueError(f"hit_probabilities must be ({len(pixels)},), got {tuple(hit_probabilities.shape)}")
        pixels, distributions = pixels.detach().cpu().long(), distributions.detach().cpu()
        hit_probabilities = hit_probabilities.detach().cpu()
        if len(pixels) > self.capacity:
            pixels, distributions = pixels[-self.capacity :], distributions[-self.capacity :]
            hit_probabilities = hit_probabilities[-self.capacity :]
        rows = (self._cursor + torch.arange(len(pixels))) % self.capacity
        self.pixels[rows] = pixels
        self.distributions[rows] = distributions.half()
        self.hit_probabilities[rows] = hit_probabilities.half()
        self._cursor = (self._cursor + len(pixels)) % self.capacity
        self.size = min(self.size + len(pixels), self.capacity)
        height, width = int(pixels[:, 1].max()) + 1, int(pixels[:, 2].max()) + 1
        if height > self.position_counts.shape[0] or width > self.position_counts.shape[1]:
            grown = torch.zeros(max(height, self.position_counts.shape[0]), max(width, self.position_counts.shape[1]), dtype=torch.long)
            grown[: self.position_counts.shape[0], : self.position_counts.shape[1]] = self.position_counts
            self.position_counts = grown
        self.position_counts.index_put_((pixels[:, 1], pixels[:, 2]), torch.ones(len(pixels), dtype=torch.long), accumulate=True)

    def draw(
        self, num_rays: int, device: torch.device | str = "cpu"
    ) -> tuple[Int[Tensor, "num_rays 3"], Float[Tensor, "num_rays num_bins"], Float[Tensor, " num_rays"]]:
        """``num_rays`` pooled pixels drawn with replacement, uniform over image positions (module
        docstring): their ``(camera, row, column)``, distributions (float32, rows summing to 1) and
        hit probabilities (float32)."""
        if num_rays < 1:
            raise ValueError(f"num_rays must be >= 1, got {num_rays}")
        if self.size == 0:
            raise RuntimeError(
                "the field-ray pool is empty: WysiwygPipeline adds the model's patch predictions to it after "
                "each training iteration"
            )
        pixels = self.pixels[: self.size]
        weights = 1.0 / self.position_counts[pixels[:, 1], pixels[:, 2]].double()
        rows = torch.multinomial(weights, num_rays, replacement=True)
        distribution = self.distributions[rows].float()
        distribution = distribution / distribution.sum(-1, keepdim=True)
        return pixels[rows].to(device), distribution.to(device), self.hit_probabilities[rows].float().to(device)
