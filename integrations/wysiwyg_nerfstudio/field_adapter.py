"""A nerfstudio field seen as a ``learned_sampler`` field: ``field(positions, directions) -> dict``.

The learned sampler's probe and supervision targets call the field on plain position/direction
tensors ``(*B, S, 3)``; nerfstudio fields take ``RaySamples``. This adapter builds zero-length
frustums at the positions (so ``get_positions()`` returns them exactly) and carries the camera
index of each image, which nerfacto's appearance embedding needs.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from nerfstudio.cameras.rays import Frustums, RaySamples
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.fields.base_field import Field as NerfstudioField


class NerfstudioFieldAdapter:
    """Calls a nerfstudio field on ``(*B, S, 3)`` positions, in chunks of ``max_points``.

    Args:
        field: the nerfstudio field (e.g. ``NerfactoField``).
        camera_indices: camera index of each image, ``(B,)``: the learned sampler keeps the first
            batch dimension as the image index in every call, so position ``[b, ...]`` belongs to
            camera ``camera_indices[b]``.
        density_only: return only the density (and zero colour): the supervision targets need
            weights alone, and skipping nerfacto's colour MLP makes them cheaper.
        max_points: points per field call; bounds the memory of whole-image probes.
    """

    def __init__(
        self,
        field: NerfstudioField,
        camera_indices: Int[Tensor, " batch"],
        density_only: bool = False,
        max_points: int = 1 << 18,
    ):
        if camera_indices.dim() != 1:
            raise ValueError(f"camera_indices must have shape (B,), got {tuple(camera_indices.shape)}")
        if max_points < 1:
            raise ValueError(f"max_points must be >= 1, got {max_points}")
        self.field = field
        self.camera_indices = camera_indices
        self.density_only = density_only
        self.max_points = max_points

    def __call__(
        self, positions: Float[Tensor, "*batch samples 3"], directions: Float[Tensor, "*batch samples 3"]
    ) -> dict[str, Tensor]:
        if positions.shape != directions.shape or positions.shape[-1] != 3:
            raise ValueError(f"positions {tuple(positions.shape)} and directions {tuple(directions.shape)} must be (*B, S, 3)")
        if positions.shape[0] != self.camera_indices.shape[0]:
            raise ValueError(
                f"positions have {positions.shape[0]} images in their first dimension, camera_indices {self.camera_indices.shape[0]}"
            )
        sample_shape = positions.shape[:-1]
        cameras = self.camera_indices.view(-1, *([1] * (len(sample_shape) - 1))).expand(sample_shape).reshape(-1, 1)
        flat_positions, flat_directions = positions.reshape(-1, 3), directions.reshape(-1, 3)
        densities, colours = [], []
        for start in range(0, flat_positions.shape[0], self.max_points):
            chunk = slice(start, start + self.max_points)
            density, rgb = self._evaluate(flat_positions[chunk], flat_directions[chunk], cameras[chunk])
            densities.append(density)
            colours.append(rgb)
        density = torch.cat(densities).reshape(sample_shape)
        rgb = torch.cat(colours).reshape(*sample_shape, 3)
        return {"density": density, "rgb": rgb}

    def _evaluate(self, positions: Tensor, directions: Tensor, cameras: Tensor) -> tuple[Tensor, Tensor]:
        zeros = positions.new_zeros((positions.shape[0], 1))
        frustums = Frustums(
            origins=positions, directions=directions, starts=zeros, ends=zeros, pixel_area=torch.ones_like(zeros)
        )
        samples = RaySamples(frustums=frustums, camera_indices=cameras.to(positions.device), deltas=zeros)
        if self.density_only:
            density, _ = self.field.get_density(samples)
            return density[..., 0], positions.new_zeros(positions.shape)
        outputs = self.field(samples)
        return outputs[FieldHeadNames.DENSITY][..., 0], outputs[FieldHeadNames.RGB]
