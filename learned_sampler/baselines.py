"""Baseline samplers: uniform, and EG3D's two-pass importance sampling.

Both follow the sampler interface ``sampler.sample(rays, field) -> RayIntervals``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from learned_sampler.validation import check_positive_int
from learned_sampler.intervals import RayIntervals
from learned_sampler.rays import Rays
from learned_sampler.rendering import Field, evaluate_field, render_weights_from_density
from learned_sampler.sampling import sample_inverse_cdf, uniform_intervals
from learned_sampler.spacing import Spacing, check_spacing


class UniformSampler:
    """``num_samples`` intervals between near and far, equal in ``spacing`` (``learned_sampler.spacing``);
    stratified jitter when ``stratified``."""

    def __init__(
        self, num_samples: int, stratified: bool = True, generator: torch.Generator | None = None, spacing: Spacing = "linear"
    ):
        self.num_samples = check_positive_int("num_samples", num_samples)
        self.stratified = stratified
        self.generator = generator
        self.spacing = check_spacing(spacing)

    def sample(self, rays: Rays, field: Field | None = None) -> RayIntervals:
        """Samples for ``rays``; the field is not needed and may be ``None``."""
        return uniform_intervals(rays.nears, rays.fars, self.num_samples, self.stratified, self.generator, self.spacing)


def smooth_weights_eg3d(weights: torch.Tensor, padding: float = 0.01) -> torch.Tensor:
    """EG3D's smoothing of coarse weights before the fine pass.

    A max filter over neighbouring bins (width 2), a box filter (width 2), then ``padding`` added
    to every bin, so some fine samples always land away from the coarse peak.
    """
    shape = weights.shape
    flat = weights.reshape(-1, 1, shape[-1])
    flat = F.max_pool1d(flat, kernel_size=2, stride=1, padding=1)
    flat = F.avg_pool1d(flat, kernel_size=2, stride=1)
    return flat.reshape(shape) + padding


class ImportanceSampler:
    """EG3D's two-pass sampler: ``num_coarse`` stratified samples, then ``num_fine`` samples drawn
    from the smoothed coarse weights; the renderer gets all of them, sorted.

    The coarse field outputs are handed to the renderer with the intervals (``reuse_coarse``), so
    a render costs ``num_coarse + num_fine`` field evaluations per ray, as in EG3D. When gradients
    are enabled the coarse evaluation keeps them, so coarse samples are trained too (EG3D does the
    same). The fine pass inverts the CDF with stratified ``u`` when ``stratified`` (the paper's
    improvement; EG3D draws ``u`` independently). ``spacing`` tiles the coarse pass
    (``learned_sampler.spacing``); the fine samples are uniform in depth within each coarse interval.
    """

    def __init__(
        self,
        num_coarse: int = 48,
        num_fine: int = 48,
        stratified: bool = True,
        weight_padding: float = 0.01,
        reuse_coarse: bool = True,
        generator: torch.Generator | None = None,
        spacing: Spacing = "linear",
    ):
        self.num_coarse = check_positive_int("num_coarse", num_coarse, minimum=2)
        self.num_fine = check_positive_int("num_fine", num_fine)
        if weight_padding < 0:
            raise ValueError(f"weight_padding must be >= 0, got {weight_padding}")
        self.stratified = stratified
        self.weight_padding = weight_padding
        self.reuse_coarse = reuse_coarse
        self.generator = generator
        self.spacing = check_spacing(spacing)

    def sample(self, rays: Rays, field: Field) -> RayIntervals:
        coarse = uniform_intervals(rays.nears, rays.fars, self.num_coarse, self.stratified, self.generator, self.spacing)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.reuse_coarse):
            coarse_outputs = evaluate_field(field, rays, coarse)
        weights = render_weights_from_density(coarse.deltas, coarse_outputs["density"].detach())
        bin_edges = torch.cat([coarse.t_starts, coarse.t_ends[..., -1:]], dim=-1)
        fine_t = sample_inverse_cdf(
            bin_edges, smooth_weights_eg3d(weights, self.weight_padding), self.num_fine, self.stratified, self.generator
        )
        merged_t, order = torch.sort(torch.cat([coarse.t_samples, fine_t], dim=-1), dim=-1)
        intervals = RayIntervals.from_points(merged_t, rays.nears, rays.fars)
        if not self.reuse_coarse:
            return intervals
        is_coarse = order < self.num_coarse
        sample_dim = merged_t.dim() - 1
        cached = {}
        for key, value in coarse_outputs.items():
            fine_shape = list(value.shape)
            fine_shape[sample_dim] = self.num_fine
            padded = torch.cat([value, value.new_zeros(fine_shape)], dim=sample_dim)
            index = order.reshape(*order.shape, *([1] * (value.dim() - order.dim()))).expand(*order.shape, *value.shape[order.dim():])
            cached[key] = padded.gather(sample_dim, index)
        return RayIntervals(intervals.t_starts, intervals.t_ends, intervals.t_samples, None, is_coarse, cached)
