"""``RayIntervals``: the samples a sampler hands to the renderer.

Every sample is an interval ``[t_start, t_end]`` along its ray plus the depth ``t`` inside it at
which the field is evaluated: the renderer uses ``delta = t_end - t_start`` in the quadrature and
``t`` for the position. Stratified samplers place ``t`` uniformly at random inside its interval,
which keeps the quadrature of a piecewise-constant integrand unbiased.

Rays may carry different numbers of samples (variable budgets). Samples are stored padded to the
largest budget, shape ``(*B, S)``, with ``mask`` marking the real ones; the real samples of a ray
come first, sorted by depth. The renderer evaluates the field only on masked samples, so the cost
follows the mean number of samples per ray, not ``S``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor


@dataclass
class RayIntervals:
    """Sample intervals along a batch of rays (depths in world units along unit directions)."""

    t_starts: Float[Tensor, "*batch num_samples"]
    """Start depth of each sample's interval."""
    t_ends: Float[Tensor, "*batch num_samples"]
    """End depth of each sample's interval (``>= t_starts``)."""
    t_samples: Float[Tensor, "*batch num_samples"]
    """Depth at which the field is evaluated, inside ``[t_starts, t_ends]``."""
    mask: Bool[Tensor, "*batch num_samples"] | None = None
    """Which samples are real when rays have different budgets; ``None`` means all are."""
    evaluated: Bool[Tensor, "*batch num_samples"] | None = None
    """Samples whose field outputs a sampler already computed (e.g. the coarse pass of two-pass
    importance sampling); the renderer reuses ``field_outputs`` there instead of evaluating again."""
    field_outputs: dict[str, Tensor] | None = None
    """Field outputs at the ``evaluated`` samples, laid out like ``t_samples`` (``(*B, S)`` or
    ``(*B, S, C)``); entries elsewhere are ignored."""

    @classmethod
    def from_edges(
        cls,
        t_starts: Float[Tensor, "*batch num_samples"],
        t_ends: Float[Tensor, "*batch num_samples"],
        mask: Bool[Tensor, "*batch num_samples"] | None = None,
    ) -> RayIntervals:
        """Intervals evaluated at their midpoints."""
        return cls(t_starts, t_ends, 0.5 * (t_starts + t_ends), mask)

    @classmethod
    def from_points(
        cls,
        t_samples: Float[Tensor, "*batch num_samples"],
        nears: Float[Tensor, "*batch"],
        fars: Float[Tensor, "*batch"],
        mask: Bool[Tensor, "*batch num_samples"] | None = None,
    ) -> RayIntervals:
        """Intervals around sorted sample points: each point owns the span to the midpoints with its
        neighbours, the first and last extend to ``near`` and ``far``.

        This turns point samplers (two-pass importance sampling) into a quadrature whose weights
        tile ``[near, far]``. With a ``mask`` (real samples first, as everywhere), each ray's last
        real sample extends to ``far`` and the padding becomes zero-length intervals at ``far``.
        """
        mids = 0.5 * (t_samples[..., 1:] + t_samples[..., :-1])
        far = fars[..., None].expand_as(t_samples)
        t_starts = torch.cat([nears[..., None], mids], dim=-1)
        t_ends = torch.cat([mids, fars[..., None]], dim=-1)
        if mask is None:
            return cls(t_starts, t_ends, t_samples, None)
        last_real = mask & ~torch.cat([mask[..., 1:], torch.zeros_like(mask[..., :1])], dim=-1)
        t_ends = torch.where(last_real, far, t_ends)
        t_starts, t_ends, t_samples = (torch.where(mask, value, far) for value in (t_starts, t_ends, t_samples))
        return cls(t_starts, t_ends, t_samples, mask)

    @property
    def batch_shape(self) -> torch.Size:
        return self.t_starts.shape[:-1]

    @property
    def num_samples(self) -> int:
        """Padded number of samples per ray (the largest budget)."""
        return self.t_starts.shape[-1]

    @property
    def deltas(self) -> Float[Tensor, "*batch num_samples"]:
        return self.t_ends - self.t_starts

    def samples_per_ray(self) -> Float[Tensor, "*batch"]:
        """Number of real samples of each ray."""
        if self.mask is None:
            return torch.full(self.batch_shape, float(self.num_samples), device=self.t_starts.device)
        return self.mask.sum(dim=-1).to(self.t_starts.dtype)

    def _map(self, per_sample) -> RayIntervals:
        """Apply ``per_sample`` to every tensor laid out as ``(*B, S, ...)``."""
        optional = lambda x: None if x is None else per_sample(x)  # noqa: E731
        return RayIntervals(
            per_sample(self.t_starts),
            per_sample(self.t_ends),
            per_sample(self.t_samples),
            optional(self.mask),
            optional(self.evaluated),
            None if self.field_outputs is None else {k: per_sample(v) for k, v in self.field_outputs.items()},
        )

    def __getitem__(self, index) -> RayIntervals:
        """Index the ray batch dimensions."""
        return self._map(lambda x: x[index])

    def reshape(self, *batch_shape: int) -> RayIntervals:
        """Reshape the ray batch dimensions, keeping the sample dimension (and channels)."""
        depth_dims = len(self.batch_shape)
        return self._map(lambda x: x.reshape(*batch_shape, *x.shape[depth_dims:]))
