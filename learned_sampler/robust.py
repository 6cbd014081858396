"""Robust stratified sampling from a predicted per-ray distribution over depth bins (paper §4.4, A3.5).

Given ``p_hat`` over ``K`` equal depth bins of ``[near, far]``:

1. ``robust_distribution``: keep the smallest set ``I`` of bins whose mass reaches ``tau`` (top-p,
   as nucleus sampling) and make ``q`` uniform over it. Flattening ``q`` is what lets few samples
   reach every mode of a multimodal pdf (edges of an occluder).
2. ``robust_stratified_sample``: one stratum per kept bin. With a budget of ``s`` samples and
   ``c = |I|`` kept bins, every kept bin gets ``floor(s / c)`` samples and the ``s mod c`` kept
   bins of largest ``p_hat`` one more. A bin holding ``n`` samples is split into ``n`` equal
   sub-intervals, one sample in each, so no sample's interval (its quadrature spacing) exceeds
   the bin width, and gaps between kept bins are skipped. When ``s < c`` (the paper leaves it
   open and calls it biased) the kept bins, in depth order, are cut into ``s`` strata of
   ``floor`` or ``ceil(c / s)`` consecutive kept bins, one sample per stratum, so every group of
   kept bins (every mode) is still reached. A stratum is made of kept bins only: its sample is
   drawn from ``q`` restricted to it (one of its kept bins uniformly at random, a uniform depth
   inside that bin) and its interval is that one bin, as the paper clips every ``delta`` to the
   bin width. Without jitter it is the midpoint of the stratum's kept bin of largest ``p_hat``.
   The quadrature weight of a stratum of ``m`` kept bins is then one bin, not ``m``: the bias the
   paper accepts for ``s < c``.

``depth_margin`` (0, the paper's, by default) widens the kept set by that many bins on each side of
every kept bin before the samples are allocated: a predicted mode one bin off the true surface then
still covers it. The sampling functions widen only the rays whose budget holds a sample for every
widened bin (``s >= c`` after widening), so the margin spends spare samples and never makes a ray
merge its kept bins into strata; ``robust_distribution``, which has no budget, widens every ray.
The widened bins count as kept everywhere (``q``, the allocation), ranked after the top-``tau`` bins.

Two other modes exist for the paper's Table 4 ablations:

* ``robust_iid_sample`` ("- stratification"): ``s`` independent draws from ``q`` (inverse CDF of
  ``q`` at independent uniform numbers), sorted along the ray.
* ``p_hat_stratified_sample`` ("- robust sampling"): stratified inverse-CDF samples of ``p_hat``
  itself, with no top-p set and no flattening.

Their samples fall anywhere the distribution has mass, so a bin may hold none, one or many. A
sample's interval is its share of its own bin: the bin is split at the midpoints between
consecutive samples inside it, and its first and last samples extend to the bin's edges. The
intervals of a bin with samples tile it, no interval is wider than a bin (the paper's clipping of
``delta``) and none reaches into a bin without samples, so empty bins are never weighted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from learned_sampler.validation import check_finite, check_floating, check_positive_int, check_probability, check_tensor
from learned_sampler.intervals import RayIntervals
from learned_sampler.sampling import normalize_distribution

_TAU_TOLERANCE = 1e-6  # mass rounding, so that tau = 1 keeps exactly the non-empty bins


def _rank_and_keep(
    p_hat: Float[Tensor, "*batch num_bins"],
    tau: float,
    depth_margin: int = 0,
    budgets: Int[Tensor, "*batch"] | None = None,
) -> tuple[Float[Tensor, "*batch num_bins"], Int[Tensor, "*batch num_bins"], Bool[Tensor, "*batch num_bins"]]:
    """Normalised ``p_hat``, the rank of every bin (kept bins first, each group by decreasing mass,
    ties by depth), and the kept set: the top-``tau`` set widened by ``depth_margin`` bins on each
    side, on the rays whose ``budgets`` (if given) hold at least one sample per widened bin."""
    _check_p_hat(p_hat)
    tau = check_probability("tau", tau)
    depth_margin = check_positive_int("depth_margin", depth_margin, minimum=0)
    p = normalize_distribution(p_hat)
    sorted_p, order = torch.sort(p, dim=-1, descending=True, stable=True)
    mass_before = torch.cumsum(sorted_p, dim=-1) - sorted_p
    kept_sorted = mass_before < tau - _TAU_TOLERANCE
    if tau >= 1.0:
        # Every bin with mass, however small (the tolerance alone drops bins under 1e-6 of the mass).
        kept_sorted = kept_sorted | (sorted_p > 0)
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(p.shape[-1], device=p.device).expand_as(order))
    keep = kept_sorted.gather(-1, ranks)
    if depth_margin > 0:
        flat = keep.reshape(-1, 1, keep.shape[-1]).to(p.dtype)
        window = 2 * depth_margin + 1
        widened = F.max_pool1d(flat, window, stride=1, padding=depth_margin).reshape(keep.shape) > 0
        if budgets is not None:
            # The margin only spends spare samples: a ray whose budget would have to merge the
            # widened bins into strata (s < c) keeps its top-tau set.
            widened = torch.where((widened.sum(dim=-1) <= budgets)[..., None], widened, keep)
        keep = widened
        # p <= 1, so adding 2 to kept bins ranks every one of them before every other bin.
        order = torch.sort(p + 2.0 * keep.to(p.dtype), dim=-1, descending=True, stable=True).indices
        ranks.scatter_(-1, order, torch.arange(p.shape[-1], device=p.device).expand_as(order))
    return p, ranks, keep


def robust_distribution(
    p_hat: Float[Tensor, "*batch num_bins"], tau: float = 0.98, depth_margin: int = 0
) -> Float[Tensor, "*batch num_bins"]:
    """The paper's ``q`` (Eq. 9): uniform over the smallest top-mass bin set with mass ``>= tau``,
    widened by ``depth_margin`` bins on each side of every kept bin (0 is the paper's; the sampling
    functions widen only rays whose budget covers the widened set).

    Non-finite entries of ``p_hat`` count as zero and all-zero rays keep every bin.
    """
    _, _, keep = _rank_and_keep(p_hat, tau, depth_margin)
    keep = keep.to(p_hat.dtype)
    return keep / keep.sum(dim=-1, keepdim=True)


def _allocate_samples(
    p_hat: Float[Tensor, "*batch num_bins"], budgets: Int[Tensor, "*batch"] | int, tau: float = 0.98, depth_margin: int = 0
) -> tuple[
    Bool[Tensor, "*batch num_bins"], Int[Tensor, "*batch"], Int[Tensor, "*batch"], Int[Tensor, "*batch num_bins"], Int[Tensor, "*batch num_bins"]
]:
    """Kept bins, their number ``c``, the budgets, the samples per bin for rays with ``s >= c``, and
    each bin's rank by ``p_hat``."""
    budgets = _check_budgets(budgets, p_hat.shape[:-1], p_hat.device)
    _, ranks, keep = _rank_and_keep(p_hat, tau, depth_margin, budgets)
    kept = keep.sum(dim=-1, keepdim=True)
    per_bin = torch.div(budgets[..., None], kept, rounding_mode="floor")
    leftover = budgets[..., None] - per_bin * kept
    # Kept bins hold ranks 0..c-1, so "rank < leftover" picks the leftover bins of largest p_hat.
    counts = torch.where(keep, per_bin + (ranks < leftover).long(), torch.zeros_like(ranks))
    return keep, kept[..., 0], budgets, counts, ranks


def _most_likely_bins(
    ranks: Int[Tensor, "*batch num_bins"],
    keep: Bool[Tensor, "*batch num_bins"],
    kept: Int[Tensor, "*batch"],
    budgets: Int[Tensor, "*batch"],
    width: int,
) -> Int[Tensor, "*batch width"]:
    """For ``s < c``: the bin of largest ``p_hat`` (ties by depth) in each stratum of kept bins.

    Kept bin ``k`` (0-based, depth order) lies in stratum ``floor(k s / c)``; a scatter-min of the
    ranks per stratum avoids a ``(width, num_bins)`` tensor per ray.
    """
    num_bins = ranks.shape[-1]
    kept_index = torch.cumsum(keep.long(), dim=-1) - 1
    stratum = torch.div(kept_index * budgets[..., None], kept[..., None], rounding_mode="floor")
    stratum = torch.where(keep, stratum, torch.full_like(stratum, width))  # width: a slot for the rest
    best_rank = torch.full((*ranks.shape[:-1], width + 1), num_bins, dtype=ranks.dtype, device=ranks.device)
    best_rank = best_rank.scatter_reduce(-1, stratum, ranks, reduce="amin")[..., :width]
    order = torch.empty_like(ranks)
    order.scatter_(-1, ranks, torch.arange(num_bins, device=ranks.device).expand_as(ranks))
    # Padding slots (and rays with s >= c) have no stratum: their bin is never used.
    return order.gather(-1, best_rank.clamp_max(num_bins - 1))


def robust_stratified_sample(
    p_hat: Float[Tensor, "*batch num_bins"],
    nears: Float[Tensor, "*batch"],
    fars: Float[Tensor, "*batch"],
    budgets: Int[Tensor, "*batch"] | int,
    tau: float = 0.98,
    stratified: bool = True,
    generator: torch.Generator | None = None,
    depth_margin: int = 0,
) -> RayIntervals:
    """Sample intervals from ``p_hat`` over equal bins of ``[near, far]`` (see the module docstring).

    Args:
        p_hat: predicted distribution per ray (need not be normalised).
        nears, fars: the depth range the bins tile, per ray.
        budgets: samples per ray, an int or a per-ray integer tensor, every value ``>= 1``.
        tau: mass of the kept bin set, in (0, 1].
        stratified: jitter each sample uniformly inside its sub-interval (training); else midpoints
            (for ``s < c``, of each stratum's kept bin of largest ``p_hat``).
        generator: random generator for the jitter.
        depth_margin: bins kept on each side of every bin of the top-``tau`` set (0 is the
            paper's) on rays whose budget covers the widened set: cover for a prediction whose
            mode is a bin off the surface.

    Returns:
        ``RayIntervals`` with exactly ``budget`` samples per ray, sorted by depth; ``mask`` is set
        when budgets differ between rays.
    """
    _check_ranges(p_hat, nears, fars)
    keep, kept, budgets, counts, ranks = _allocate_samples(p_hat, budgets, tau, depth_margin)
    num_bins = p_hat.shape[-1]
    width = int(budgets.max()) if budgets.numel() else 0
    slots = torch.arange(width, device=p_hat.device).expand(*p_hat.shape[:-1], width).contiguous()
    bin_width = ((fars - nears) / num_bins)[..., None]

    # s >= c: the bin of slot j is the first whose cumulative count exceeds j.
    cumulative = torch.cumsum(counts, dim=-1)
    bins = torch.searchsorted(cumulative.contiguous(), slots, right=True).clamp_max(num_bins - 1)
    in_bin = counts.gather(-1, bins).clamp_min(1)
    index_in_bin = slots - (cumulative.gather(-1, bins) - counts.gather(-1, bins))
    sub_width = bin_width / in_bin
    split_starts = nears[..., None] + bins * bin_width + index_in_bin * sub_width

    # s < c: slot j is the stratum of kept bins ceil(j c / s) .. ceil((j + 1) c / s) - 1 (in
    # depth order, 0-based among kept bins); its sample lies in exactly one of them.
    s, c = budgets[..., None], kept[..., None]
    first_kept = torch.div(slots * c + s - 1, s, rounding_mode="floor")
    last_kept = torch.div((slots + 1) * c + s - 1, s, rounding_mode="floor") - 1
    in_stratum = (last_kept - first_kept + 1).clamp_min(1)
    if stratified:
        jitter = torch.rand(slots.shape, generator=generator, device=p_hat.device, dtype=nears.dtype)
        # One uniform number picks a kept bin of the stratum and the depth inside it, so the
        # sample is distributed as q restricted to the stratum.
        scaled = jitter * in_stratum
        pick = scaled.floor().long().clamp(max=in_stratum - 1)
        merged_jitter = (scaled - pick).clamp(0.0, 1.0)
        kept_cumulative = torch.cumsum(keep.long(), dim=-1).contiguous()
        chosen_bin = torch.searchsorted(kept_cumulative, (first_kept + pick + 1).contiguous())
        chosen_bin = chosen_bin.clamp_max(num_bins - 1)
    else:
        jitter = torch.full(slots.shape, 0.5, device=p_hat.device, dtype=nears.dtype)
        merged_jitter = jitter
        chosen_bin = _most_likely_bins(ranks, keep, kept, budgets, width)

    merged = s < c
    t_starts = torch.where(merged, nears[..., None] + chosen_bin * bin_width, split_starts)
    spans = torch.where(merged, bin_width.expand_as(sub_width), sub_width)
    jitter = torch.where(merged, merged_jitter, jitter)
    mask = slots < budgets[..., None]
    far = fars[..., None].expand_as(t_starts)
    t_ends = torch.where(mask, torch.minimum(t_starts + spans, far), far)
    t_starts = torch.where(mask, t_starts, far)
    t_samples = t_starts + jitter * (t_ends - t_starts)
    uniform_budget = budgets.numel() == 0 or bool((budgets == width).all())
    return RayIntervals(t_starts, t_ends, t_samples, None if uniform_budget else mask)


def robust_iid_sample(
    p_hat: Float[Tensor, "*batch num_bins"],
    nears: Float[Tensor, "*batch"],
    fars: Float[Tensor, "*batch"],
    budgets: Int[Tensor, "*batch"] | int,
    tau: float = 0.98,
    generator: torch.Generator | None = None,
    depth_margin: int = 0,
) -> RayIntervals:
    """Independent samples from the robust distribution ``q``: the paper's "- stratification" ablation.

    Each ray draws ``budget`` independent uniform numbers and maps them through the inverse CDF of
    ``q`` (uniform over the kept bins, see ``robust_distribution``), so each sample picks a kept bin
    uniformly at random and a uniform depth inside it. Nothing spreads the samples over the kept
    bins: some hold several, others none. There is no deterministic version, so this draws in
    evaluation too. Intervals: see the module docstring.

    Args:
        p_hat: predicted distribution per ray (need not be normalised).
        nears, fars: the depth range the bins tile, per ray.
        budgets: samples per ray, an int or a per-ray integer tensor, every value ``>= 1``.
        tau: mass of the kept bin set, in (0, 1].
        generator: random generator for the draws.
        depth_margin: bins kept on each side of every bin of the top-``tau`` set (see
            ``robust_stratified_sample``).

    Returns:
        ``RayIntervals`` with exactly ``budget`` samples per ray, sorted by depth; ``mask`` is set
        when budgets differ between rays.
    """
    _check_ranges(p_hat, nears, fars)
    budgets = _check_budgets(budgets, p_hat.shape[:-1], p_hat.device)
    _, _, keep = _rank_and_keep(p_hat, tau, depth_margin, budgets)
    u = _independent_unit_samples(budgets, nears.dtype, generator)
    bins, fraction = _locate_in_kept_bins(keep, u)
    return _split_bins_between_samples(bins, fraction, nears, fars, budgets, p_hat.shape[-1])


def p_hat_stratified_sample(
    p_hat: Float[Tensor, "*batch num_bins"],
    nears: Float[Tensor, "*batch"],
    fars: Float[Tensor, "*batch"],
    budgets: Int[Tensor, "*batch"] | int,
    stratified: bool = True,
    generator: torch.Generator | None = None,
) -> RayIntervals:
    """Stratified inverse-CDF samples of ``p_hat`` itself: the paper's "- robust sampling" ablation.

    No top-p set and no flattening: sample ``j`` of ``s`` is ``Phi^{-1}(u_j)`` with ``Phi`` the
    piecewise-linear CDF of ``p_hat`` over the bins and ``u_j`` uniform in ``[j / s, (j + 1) / s)``
    (its centre when not ``stratified``), as the paper's Eq. 3. Every bin with ``p_hat > 0`` can be
    reached and holds ``s p_hat`` samples on average, so a low-mass mode (an occluder's edge) gets
    samples only in proportion to its mass. Non-finite entries count as zero; all-zero rays sample
    uniformly. Intervals: see the module docstring.

    Args:
        p_hat: predicted distribution per ray (need not be normalised).
        nears, fars: the depth range the bins tile, per ray.
        budgets: samples per ray, an int or a per-ray integer tensor, every value ``>= 1``.
        stratified: jitter each ``u_j`` inside its stratum (training); else the stratum centres.
        generator: random generator for the jitter.

    Returns:
        ``RayIntervals`` with exactly ``budget`` samples per ray, sorted by depth; ``mask`` is set
        when budgets differ between rays.
    """
    _check_ranges(p_hat, nears, fars)
    p = normalize_distribution(p_hat)
    budgets = _check_budgets(budgets, p_hat.shape[:-1], p_hat.device)
    u = _stratified_unit_samples(budgets, stratified, nears.dtype, generator)
    bins, fraction = _locate_by_inverse_cdf(p, u)
    return _split_bins_between_samples(bins, fraction, nears, fars, budgets, p_hat.shape[-1])


def _independent_unit_samples(
    budgets: Int[Tensor, "*batch"], dtype: torch.dtype, generator: torch.Generator | None
) -> Float[Tensor, "*batch width"]:
    """``budget`` sorted independent uniform numbers in [0, 1) per ray, then padding (ones)."""
    width = int(budgets.max()) if budgets.numel() else 0
    u = torch.rand((*budgets.shape, width), generator=generator, device=budgets.device, dtype=dtype)
    real = torch.arange(width, device=budgets.device) < budgets[..., None]
    # Padding sorts after every real number; it is masked out later.
    return torch.sort(torch.where(real, u, torch.ones_like(u)), dim=-1).values


def _stratified_unit_samples(
    budgets: Int[Tensor, "*batch"], stratified: bool, dtype: torch.dtype, generator: torch.Generator | None
) -> Float[Tensor, "*batch width"]:
    """``u_j = (j + jitter_j) / s`` for ``j < s`` per ray (jitter 1/2 without ``stratified``)."""
    width = int(budgets.max()) if budgets.numel() else 0
    slots = torch.arange(width, device=budgets.device, dtype=dtype).expand(*budgets.shape, width)
    if stratified:
        jitter = torch.rand(slots.shape, generator=generator, device=budgets.device, dtype=dtype)
    else:
        jitter = torch.full_like(slots, 0.5)
    return (slots + jitter) / budgets[..., None].to(dtype)


def _locate_in_kept_bins(
    keep: Bool[Tensor, "*batch num_bins"], u: Float[Tensor, "*batch width"]
) -> tuple[Int[Tensor, "*batch width"], Float[Tensor, "*batch width"]]:
    """``Phi_q^{-1}(u)`` as (bin, position in the bin in [0, 1]): ``q`` is uniform over the kept bins,
    so ``u c`` counts kept bins exactly, without a float CDF that rounding could shift."""
    kept = keep.sum(dim=-1, keepdim=True)
    scaled = u * kept.to(u.dtype)
    index = scaled.floor().long().clamp(min=0)
    index = torch.minimum(index, kept - 1)
    fraction = (scaled - index.to(u.dtype)).clamp(0.0, 1.0)
    kept_cumulative = torch.cumsum(keep.long(), dim=-1).contiguous()
    bins = torch.searchsorted(kept_cumulative, (index + 1).contiguous()).clamp_max(keep.shape[-1] - 1)
    return bins, fraction


def _locate_by_inverse_cdf(
    p: Float[Tensor, "*batch num_bins"], u: Float[Tensor, "*batch width"]
) -> tuple[Int[Tensor, "*batch width"], Float[Tensor, "*batch width"]]:
    """``Phi_p^{-1}(u)`` as (bin, position in the bin in [0, 1]) for a normalised ``p``.

    The bin is the last one whose CDF start is ``<= u``; its CDF end is then ``> u``, so it has mass
    (bins without mass are never chosen)."""
    num_bins = p.shape[-1]
    cdf = torch.cat([torch.zeros_like(p[..., :1]), torch.cumsum(p, dim=-1)], dim=-1)
    cdf = cdf / cdf[..., -1:]  # exactly 1 at the end, and on every bin after the last with mass
    # u = 1 (a jittered last stratum rounded up) would land past the last bin with mass.
    u = u.clamp(0.0, 1.0 - torch.finfo(u.dtype).eps / 2)
    bins = (torch.searchsorted(cdf.contiguous(), u.contiguous(), right=True) - 1).clamp(0, num_bins - 1)
    low, high = cdf.gather(-1, bins), cdf.gather(-1, bins + 1)
    span = high - low
    fraction = torch.where(span > 0, (u - low) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(u))
    return bins, fraction.clamp(0.0, 1.0)


def _split_bins_between_samples(
    bins: Int[Tensor, "*batch width"],
    fraction: Float[Tensor, "*batch width"],
    nears: Float[Tensor, "*batch"],
    fars: Float[Tensor, "*batch"],
    budgets: Int[Tensor, "*batch"],
    num_bins: int,
) -> RayIntervals:
    """Intervals of depth-sorted samples given as (bin, position in the bin): each bin holding
    samples is split at the midpoints between consecutive ones; its first and last extend to its
    edges. Slots past a ray's budget become zero-length padding at far."""
    width = bins.shape[-1]
    mask = torch.arange(width, device=bins.device) < budgets[..., None]
    bin_width = ((fars - nears) / num_bins)[..., None]
    far = fars[..., None].expand_as(fraction)
    bin_start = nears[..., None] + bins * bin_width
    bin_end = torch.minimum(nears[..., None] + (bins + 1) * bin_width, far)
    # The same arithmetic as the edges, so a sample at position 1 equals its bin's end.
    t = torch.minimum(nears[..., None] + (bins + fraction) * bin_width, far)
    owner = torch.where(mask, bins, torch.full_like(bins, -1))  # padding shares no bin
    same_as_next = owner[..., :-1] == owner[..., 1:]
    middle = 0.5 * (t[..., :-1] + t[..., 1:])
    t_starts, t_ends = bin_start.clone(), bin_end.clone()
    t_starts[..., 1:] = torch.where(same_as_next, middle, bin_start[..., 1:])
    t_ends[..., :-1] = torch.where(same_as_next, middle, bin_end[..., :-1])
    t_starts, t_ends, t = (torch.where(mask, value, far) for value in (t_starts, t_ends, t))
    uniform_budget = budgets.numel() == 0 or bool((budgets == width).all())
    return RayIntervals(t_starts, t_ends, t, None if uniform_budget else mask)


def _check_p_hat(p_hat: Tensor) -> None:
    check_floating("p_hat", p_hat)
    if p_hat.dim() < 1 or p_hat.shape[-1] < 2:
        raise ValueError(f"p_hat must have shape (..., num_bins) with num_bins >= 2, got {tuple(p_hat.shape)}")


def _check_ranges(p_hat: Tensor, nears: Tensor, fars: Tensor) -> None:
    _check_p_hat(p_hat)
    check_floating("nears", nears)
    check_floating("fars", fars)
    check_finite("nears", nears)
    check_finite("fars", fars)
    if nears.shape != p_hat.shape[:-1] or fars.shape != p_hat.shape[:-1]:
        raise ValueError(
            f"nears {tuple(nears.shape)} and fars {tuple(fars.shape)} must match p_hat's ray shape {tuple(p_hat.shape[:-1])}"
        )
    if not bool((fars > nears).all()):
        raise ValueError("near must be < far for every ray")


def _check_budgets(budgets: Int[Tensor, "*batch"] | int, batch_shape: torch.Size, device: torch.device) -> Tensor:
    if isinstance(budgets, bool):
        raise ValueError(f"budgets must be an int >= 1 or an integer tensor, got {budgets!r}")
    if isinstance(budgets, int):
        if budgets < 1:
            raise ValueError(f"budgets must be >= 1, got {budgets}")
        return torch.full(batch_shape, budgets, dtype=torch.long, device=device)
    check_tensor("budgets", budgets)
    if budgets.is_floating_point() or budgets.dtype == torch.bool:
        raise ValueError(f"budgets must be an integer tensor, got dtype {budgets.dtype}")
    if budgets.shape != batch_shape:
        raise ValueError(f"budgets must have the ray shape {tuple(batch_shape)}, got {tuple(budgets.shape)}")
    if budgets.numel() and int(budgets.min()) < 1:
        raise ValueError(f"budgets must be >= 1 for every ray, got a minimum of {int(budgets.min())}")
    return budgets.to(device=device, dtype=torch.long)
