"""The proposal CNN (paper Eq. 6 and Table A4).

Input: probe weights over ``K`` bins, probe rgb and per-pixel unit view directions, all at probe
resolution, concatenated to ``K + 6`` channels. Layout of Table A4 (for ``downscale = 4``)::

    4 x conv at probe res  ->  up x2 + conv, conv, conv  ->  up x2 + conv  ->  conv to K
    + bilinearly upsampled probe weights (residual)  ->  3 x conv  ->  conv to K logits

Every conv but the two projections to ``K`` is followed by a ReLU; the softmax over bins is
applied by the caller (``ProposalNetwork.forward`` returns logits, for a stable cross-entropy).
Choices the paper leaves open: 3x3 kernels with replicate padding (zero padding teaches the
network an image-border signal that misplaces the distribution at border pixels), bilinear x2 upsampling before the
convolution that follows it, the probe weights fed as they are (they sum to the probe opacity).
For other ``downscale`` powers of two the upsampled stages get ``upsample_layers`` convs each
(default: 3 for the first stage, 1 for the others, as the table).

``probe_skip`` (off by default, not in the paper) also adds ``log(prior + probe_skip_floor)`` to
the output logits, where ``prior`` is ``depth_guided_prior`` of the probe weights: the bilinearly
upsampled probe distribution, with ``probe_skip_depth_share`` of it moved to a Gaussian around the
depth interpolated between probe pixels (0 keeps the upsampled distribution alone). A CNN narrower
than ``num_bins`` cannot carry a sharp distribution through its hidden layers; with the skip it
starts from the prior and learns corrections, which makes small CPU-sized networks train in a few
hundred steps. Upsampled weights alone put the modes of a sloped surface at its probe pixels'
depths, not between them, where most full-resolution pixels' surfaces are; the interpolated depth
puts them there (``benchmarks/RESULTS.md``, sampler efficiency).

The floor sets how much mass the skip leaves on bins the probe saw empty, and robust sampling keeps
the top ``tau = 0.98`` of the mass, so it trades coverage for focus. At 1e-3 over 64 bins the floor
holds 6 % of the mass, more than ``1 - tau``: a sharp probe keeps ~43 of 64 bins unless the CNN
learns to remove them, a safety net where its peaks are a bin off (fixed analytic fields, whose
depth edges it must place exactly) but samples spread over the ray where a field is still being
learned. At 1e-5 (under 0.2 % up to 192 bins) only the CNN's own spread sets the kept set.
Measured in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from learned_sampler.validation import check_positive_int, check_probability
from learned_sampler.depth_prior import depth_guided_prior


class ProposalNetwork(nn.Module):
    """Predicts per-pixel logits over depth bins at ``downscale`` x the probe resolution."""

    def __init__(
        self,
        num_bins: int,
        downscale: int = 4,
        width: int = 256,
        low_res_layers: int = 4,
        upsample_layers: tuple[int, ...] | None = None,
        refine_layers: int = 3,
        probe_skip: bool = False,
        probe_skip_floor: float = 1e-3,
        probe_skip_depth_share: float = 0.0,
        probe_skip_depth_sigma: float = 2.0,
    ):
        super().__init__()
        check_positive_int("num_bins", num_bins, minimum=2)
        check_positive_int("downscale", downscale)
        check_positive_int("width", width)
        check_positive_int("low_res_layers", low_res_layers)
        check_positive_int("refine_layers", refine_layers, minimum=0)
        probe_skip_floor = check_probability("probe_skip_floor", probe_skip_floor, open_high=True)
        probe_skip_depth_share = check_probability("probe_skip_depth_share", probe_skip_depth_share, open_low=False)
        if not probe_skip_depth_sigma > 0:
            raise ValueError(f"probe_skip_depth_sigma must be > 0 bins, got {probe_skip_depth_sigma}")
        num_upsamples = int(round(math.log2(downscale)))
        if 2**num_upsamples != downscale:
            raise ValueError(f"downscale must be a power of two, got {downscale}")
        if upsample_layers is None:
            upsample_layers = tuple(3 if i == 0 else 1 for i in range(num_upsamples))
        if len(upsample_layers) != num_upsamples or any(n < 1 for n in upsample_layers):
            raise ValueError(
                f"upsample_layers needs {num_upsamples} entries >= 1 for downscale {downscale}, got {upsample_layers}"
            )
        self.num_bins = num_bins
        self.downscale = downscale
        self.probe_skip = probe_skip
        self.probe_skip_floor = probe_skip_floor
        self.probe_skip_depth_share = probe_skip_depth_share
        self.probe_skip_depth_sigma = probe_skip_depth_sigma

        def conv(in_channels: int, out_channels: int) -> nn.Conv2d:
            return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, padding_mode="replicate")

        channels = num_bins + 6
        self.low_res = nn.ModuleList()
        for _ in range(low_res_layers):
            self.low_res.append(conv(channels, width))
            channels = width
        self.upsample_stages = nn.ModuleList()
        for layers in upsample_layers:
            stage = nn.ModuleList([conv(channels if i == 0 else width, width) for i in range(layers)])
            self.upsample_stages.append(stage)
            channels = width
        self.to_bins = conv(channels, num_bins)
        self.refine = nn.ModuleList([conv(num_bins if i == 0 else width, width) for i in range(refine_layers)])
        self.to_logits = conv(width if refine_layers else num_bins, num_bins)

    def forward(
        self,
        probe_weights: Float[Tensor, "batch num_bins height width"],
        probe_rgb: Float[Tensor, "batch 3 height width"],
        view_directions: Float[Tensor, "batch 3 height width"],
    ) -> Float[Tensor, "batch num_bins height_out width_out"]:
        """Logits over bins at ``(H, W) = downscale * (h, w)``."""
        if probe_weights.dim() != 4 or probe_weights.shape[1] != self.num_bins:
            raise ValueError(
                f"probe_weights must have shape (B, {self.num_bins}, h, w), got {tuple(probe_weights.shape)}"
            )
        expected = (probe_weights.shape[0], 3, *probe_weights.shape[2:])
        for name, value in (("probe_rgb", probe_rgb), ("view_directions", view_directions)):
            if tuple(value.shape) != expected:
                raise ValueError(f"{name} must have shape {expected}, got {tuple(value.shape)}")
        x = torch.cat([probe_weights, probe_rgb, view_directions], dim=1)
        for layer in self.low_res:
            x = F.relu(layer(x))
        for stage in self.upsample_stages:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            for layer in stage:
                x = F.relu(layer(x))
        upsampled_weights = probe_weights
        if self.downscale > 1:
            upsampled_weights = F.interpolate(
                probe_weights, scale_factor=self.downscale, mode="bilinear", align_corners=False
            )
        x = self.to_bins(x) + upsampled_weights
        for layer in self.refine:
            x = F.relu(layer(x))
        logits = self.to_logits(x)
        if self.probe_skip:
            prior = depth_guided_prior(
                probe_weights, self.downscale, self.probe_skip_depth_share, self.probe_skip_depth_sigma
            )
            logits = logits + torch.log(prior + self.probe_skip_floor)
        return logits
