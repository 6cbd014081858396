"""Adaptive per-ray sample budgets (paper A3.4).

A ray whose predicted distribution keeps much mass outside its ``top_k`` largest bins is hard
(multimodal: depth discontinuities). Per group of rays (one image), the ``fraction`` of rays with
the largest leftover mass ``1 - sum(top_k largest p_hat)`` get the ``high`` budget, the rest the
``low`` one. The paper uses 16 / 32 / 10 % with ``top_k = 16``: 17.6 samples per ray on average.

Rays that hit nothing have flat distributions and so the most leftover mass, yet extra samples
cannot change their (empty) colour. In the paper's data every ray hits the subject or its
background; in scenes with empty space the score can be weighted by a per-ray probability of
hitting anything (``hit_probability``, e.g. the upsampled probe opacity), which leaves the
paper's ranking unchanged wherever that probability is 1.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from learned_sampler.validation import check_floating, check_positive_int, check_probability
from learned_sampler.sampling import normalize_distribution


def adaptive_budgets(
    p_hat: Float[Tensor, "*groups num_rays num_bins"],
    low: int = 16,
    high: int = 32,
    fraction: float = 0.1,
    top_k: int | None = None,
    hit_probability: Float[Tensor, "*groups num_rays"] | None = None,
) -> Int[Tensor, "*groups num_rays"]:
    """Per-ray budgets: ``high`` for the ``round(fraction * num_rays)`` hardest rays of each group.

    Args:
        p_hat: predicted distributions; the fraction is taken over the ``num_rays`` axis of every
            group (flatten an image's pixels into it for per-image allocation).
        low: budget of most rays (``>= 1``).
        high: budget of the hardest rays (``>= low``).
        fraction: share of rays of each group given ``high``, in [0, 1].
        top_k: bins counted as covered by the low budget; defaults to ``low``.
        hit_probability: optional weight in [0, 1] per ray multiplying its score (see above).
    """
    check_floating("p_hat", p_hat)
    if p_hat.dim() < 2 or p_hat.shape[-1] < 2:
        raise ValueError(f"p_hat must have shape (..., num_rays, num_bins >= 2), got {tuple(p_hat.shape)}")
    check_positive_int("low", low)
    check_positive_int("high", high)
    if high < low:
        raise ValueError(f"high ({high}) must be >= low ({low})")
    fraction = check_probability("fraction", fraction, open_low=False)
    top_k = check_positive_int("top_k", low if top_k is None else top_k)
    num_rays = p_hat.shape[-2]
    budgets = torch.full(p_hat.shape[:-1], low, dtype=torch.long, device=p_hat.device)
    num_high = int(round(fraction * num_rays))
    if num_high == 0 or high == low:
        return budgets
    p = normalize_distribution(p_hat)
    covered = torch.topk(p, min(top_k, p.shape[-1]), dim=-1).values.sum(dim=-1)
    score = 1.0 - covered
    if hit_probability is not None:
        check_floating("hit_probability", hit_probability)
        if hit_probability.shape != score.shape:
            raise ValueError(
                f"hit_probability must have the ray shape {tuple(score.shape)}, got {tuple(hit_probability.shape)}"
            )
        score = score * torch.nan_to_num(hit_probability.detach(), nan=1.0).clamp(0.0, 1.0)
    hardest = torch.topk(score, num_high, dim=-1).indices
    return budgets.scatter(-1, hardest, high)
