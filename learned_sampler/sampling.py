"""Sampling primitives: uniform bins along rays, uniform (stratified) intervals, inverse-CDF sampling."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from learned_sampler.validation import check_finite, check_floating, check_positive_int
from learned_sampler.intervals import RayIntervals
from learned_sampler.spacing import Spacing, check_spacing, intervals_to_depths


def uniform_bin_edges(
    nears: Float[Tensor, "*batch"], fars: Float[Tensor, "*batch"], num_bins: int
) -> Float[Tensor, "*batch num_bins_plus_one"]:
    """Edges of ``num_bins`` equal depth bins tiling ``[near, far]`` on every ray."""
    check_positive_int("num_bins", num_bins)
    steps = torch.linspace(0.0, 1.0, num_bins + 1, device=nears.device, dtype=nears.dtype)
    # lerp is exact at both ends (``near + (far - near) * 1`` can miss ``far`` by an ulp).
    return torch.lerp(nears[..., None], fars[..., None], steps)


def uniform_intervals(
    nears: Float[Tensor, "*batch"],
    fars: Float[Tensor, "*batch"],
    num_samples: int,
    stratified: bool = True,
    generator: torch.Generator | None = None,
    spacing: Spacing = "linear",
) -> RayIntervals:
    """``num_samples`` intervals tiling ``[near, far]``, equal in ``spacing`` (``learned_sampler.spacing``;
    equal in depth by default); each sample sits at a uniformly random position inside its interval
    (in that spacing) when ``stratified``, else at its centre."""
    if spacing != "linear":
        check_spacing(spacing, nears)
        unit = uniform_intervals(torch.zeros_like(nears), torch.ones_like(fars), num_samples, stratified, generator)
        return intervals_to_depths(unit, nears, fars, spacing)
    edges = uniform_bin_edges(nears, fars, num_samples)
    t_starts, t_ends = edges[..., :-1], edges[..., 1:]
    if not stratified:
        return RayIntervals.from_edges(t_starts, t_ends)
    jitter = _uniform_like(t_starts, generator)
    return RayIntervals(t_starts, t_ends, t_starts + jitter * (t_ends - t_starts))


def stratified_unit_samples(
    batch_shape: torch.Size,
    num_samples: int,
    stratified: bool,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> Float[Tensor, "*batch num_samples"]:
    """Sorted numbers in [0, 1): one per equal stratum, jittered inside it (or at its centre)."""
    offsets = torch.arange(num_samples, device=device, dtype=dtype).expand(*batch_shape, num_samples)
    if stratified:
        jitter = torch.rand(offsets.shape, generator=generator, device=device, dtype=dtype)
    else:
        jitter = torch.full_like(offsets, 0.5)
    return (offsets + jitter) / num_samples


def sample_inverse_cdf(
    bin_edges: Float[Tensor, "*batch num_bins_plus_one"],
    bin_weights: Float[Tensor, "*batch num_bins"],
    num_samples: int,
    stratified: bool = True,
    generator: torch.Generator | None = None,
) -> Float[Tensor, "*batch num_samples"]:
    """Depths drawn from the piecewise-constant pdf given by ``bin_weights`` (the paper's Eq. 3).

    ``t_i = Phi^{-1}(u_i)`` with ``Phi`` the piecewise-linear CDF and sorted ``u_i``: one per equal
    stratum of [0, 1) when ``stratified`` (the paper's improvement over EG3D's plain uniform
    ``u``), else at the strata centres. Rays whose weights are all zero (or non-finite) sample
    uniformly. The result is sorted along each ray.
    """
    check_floating("bin_edges", bin_edges)
    check_floating("bin_weights", bin_weights)
    check_positive_int("num_samples", num_samples)
    if bin_edges.shape[:-1] != bin_weights.shape[:-1] or bin_edges.shape[-1] != bin_weights.shape[-1] + 1:
        raise ValueError(
            f"bin_edges {tuple(bin_edges.shape)} must have one more entry per ray than bin_weights "
            f"{tuple(bin_weights.shape)}"
        )
    check_finite("bin_edges", bin_edges)
    pdf = normalize_distribution(bin_weights)
    cdf = torch.cat([torch.zeros_like(pdf[..., :1]), torch.cumsum(pdf, dim=-1)], dim=-1)
    cdf = cdf / cdf[..., -1:]  # exact 1 at the end despite rounding
    u = stratified_unit_samples(
        pdf.shape[:-1], num_samples, stratified, pdf.device, pdf.dtype, generator
    )
    upper = torch.searchsorted(cdf.contiguous(), u.contiguous(), right=True).clamp(1, pdf.shape[-1])
    lower = upper - 1
    cdf_low, cdf_high = cdf.gather(-1, lower), cdf.gather(-1, upper)
    edge_low, edge_high = bin_edges.gather(-1, lower), bin_edges.gather(-1, upper)
    span = cdf_high - cdf_low
    fraction = torch.where(span > 0, (u - cdf_low) / span.clamp_min(1e-12), torch.zeros_like(u))
    return edge_low + fraction.clamp(0.0, 1.0) * (edge_high - edge_low)


def normalize_distribution(weights: Float[Tensor, "*batch num_bins"]) -> Float[Tensor, "*batch num_bins"]:
    """Non-negative weights to a distribution over the last axis.

    Non-finite entries (e.g. NaN from a diverged network) count as zero; rays with no mass left get
    the uniform distribution, so downstream sampling always stays finite. Negative weights are a
    caller error.
    """
    finite = torch.isfinite(weights)
    weights = torch.where(finite, weights, torch.zeros_like(weights))
    if bool((weights < 0).any()):
        raise ValueError("distribution weights must be >= 0")
    total = weights.sum(dim=-1, keepdim=True)
    uniform = torch.full_like(weights, 1.0 / weights.shape[-1])
    # Divide by the total itself (not a clamped one): rows of tiny but positive mass normalise too.
    return torch.where(total > 0, weights / torch.where(total > 0, total, torch.ones_like(total)), uniform)


def _uniform_like(reference: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.rand(reference.shape, generator=generator, device=reference.device, dtype=reference.dtype)
