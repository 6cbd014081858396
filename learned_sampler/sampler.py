"""``LearnedSampler``: probe + proposal CNN + robust stratified adaptive sampling (the paper's sampler).

Image level::

    proposal = sampler.predict(rays, field)          # probe at H/r, CNN -> p_hat at (H, W)
    intervals = sampler.sample_from_distribution(
        rays, proposal.distribution, hit_probability=proposal.hit_probability
    )
    result = render(rays, intervals, field)
    loss = sampler.supervision_loss(rays, field, proposal)   # trains the CNN only

``sampler.sample(rays, field)`` does the first two lines. Ray level (nerfacc / nerfstudio style
loops over unordered ray chunks): predict the distribution once per image, then call
``sample_from_distribution`` on any subset of rays with the matching rows of the distribution.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from learned_sampler.validation import check_positive_int, check_probability
from learned_sampler.adaptive import adaptive_budgets
from learned_sampler.intervals import RayIntervals
from learned_sampler.probe import ProbeResult, render_probe
from learned_sampler.proposal_network import ProposalNetwork
from learned_sampler.rays import Rays
from learned_sampler.rendering import Field, render
from learned_sampler.robust import p_hat_stratified_sample, robust_iid_sample, robust_stratified_sample
from learned_sampler.sampling import uniform_intervals
from learned_sampler.spacing import Spacing, check_spacing, intervals_to_depths
from learned_sampler.supervision import proposal_loss, proposal_targets


SamplingMode = Literal["robust_stratified", "robust_iid", "p_hat_stratified"]
"""The ways ``LearnedSampler`` draws samples from its prediction (see ``LearnedSamplerConfig.sampling``)."""

SAMPLING_MODES: tuple[str, ...] = typing.get_args(SamplingMode)


@dataclass
class LearnedSamplerConfig:
    """Configuration of ``LearnedSampler`` for 512x512 images from a 128x128 probe.

    The defaults are the paper's except for three additions that bring the CNN's distribution
    closer to the exact one (``benchmarks/RESULTS.md``, sampler efficiency): the probe skip
    (``cnn_probe_skip``) with a depth-guided prior (``cnn_probe_skip_depth_share``), and a margin of
    one bin around the kept set (``depth_margin``). They were measured with a CPU-sized CNN (64
    channels) on the analytic scenes. ``LearnedSamplerConfig.paper()`` is the paper's exact
    configuration.
    """

    num_bins: int = 192
    """K, depth bins of the predicted distribution over ``[near, far]`` (paper: 192 in the text,
    191 in Table A4 because its probe renderer averages adjacent samples; here bins are the probe's
    own intervals)."""
    probe_samples: int = 192
    """Uniform samples per probe ray (paper: 192); a multiple of ``num_bins``."""
    downscale: int = 4
    """Full-resolution / probe-resolution ratio, a power of two (paper: 4, 512 from 128)."""
    cnn_width: int = 256
    """Channels of the proposal CNN's hidden convolutions (paper: 256)."""
    cnn_low_res_layers: int = 4
    """Convolutions at probe resolution before the first upsampling (paper: 4)."""
    cnn_upsample_layers: tuple[int, ...] | None = None
    """Convolutions after each x2 upsampling; ``None`` is the paper's (3, 1) pattern."""
    cnn_refine_layers: int = 3
    """Convolutions after the residual on the upsampled probe weights (paper: 3)."""
    cnn_probe_skip: bool = True
    """Add the log of a prior made from the probe to the CNN's logits, so the CNN learns corrections
    to it (not in the paper, which has no skip; see ``ProposalNetwork``)."""
    cnn_probe_skip_floor: float = 1e-3
    """Floor added to the prior before the skip's log, in (0, 1): large keeps a safety net of
    samples over the whole ray, small lets sharp predictions focus them (see ``ProposalNetwork``)."""
    cnn_probe_skip_depth_share: float = 0.5
    """Share of the skip's prior given to a Gaussian around the depth interpolated between probe
    pixels, in [0, 1]; the rest is the bilinearly upsampled probe distribution (0: that alone). The
    interpolated depth puts the mode where a sloped surface is between probe pixels; the upsampled
    distribution keeps both sides of depth edges (``depth_guided_prior``)."""
    cnn_probe_skip_depth_sigma: float = 2.0
    """Std of that Gaussian, in bins."""
    tau: float = 0.98
    """Mass of the kept bin set of the robust distribution, in (0, 1] (paper: 0.98)."""
    depth_margin: int = 1
    """Bins added on each side of every kept bin (paper: 0), on the rays whose budget holds a sample
    for each of the widened bins: the kept set of a prediction whose mode is a bin off the surface
    still covers it, with spare samples only. Acts on the two robust sampling modes."""
    spacing: Spacing = "linear"
    """How the bins (and the probe's and the targets' uniform samples) tile each ray's
    ``[near, far]`` (``learned_sampler.spacing``): ``"linear"``, equal in depth (the paper's, for a
    bounded scene); ``"lin-disp"``, nerfacto's linear-then-disparity spacing, for unbounded scenes
    whose far content lies in a contracted field; ``"disparity"``, equal in inverse depth."""
    quadrature: Literal["bins", "points"] = "bins"
    """The interval each sample weighs in the volume rendering sum. ``"bins"`` (the paper's): inside
    its own bin (``delta`` clipped to the bin width), so empty bins are never weighted; exact for
    surfaces, but when a budget is smaller than the kept set (``s < c``) the bins between samples
    are not counted, which makes semi-transparent content too transparent. ``"points"``: from the
    midpoint with the previous sample to the midpoint with the next (NeRF's quadrature, tiling
    ``[near, far]``). For semi-transparent content (smoke, hair, fuzzy volumes) use ``tau=1.0``
    with ``"points"`` (``LearnedSamplerConfig.volumetric()``); measured in ``benchmarks/RESULTS.md``."""
    sampling: SamplingMode = "robust_stratified"
    """How samples are drawn from the predicted ``p_hat`` (the paper's Table 4 ablations, FFHQ):
    ``robust_stratified``: the paper's sampling (``robust_stratified_sample``): one stratum per bin
    of the top-``tau`` set, ``floor(s / c)`` samples each; midpoints in eval mode.
    ``robust_iid``: "- stratification", independent draws from the same robust ``q``
    (``robust_iid_sample``), random in eval mode too; the paper reports degenerate geometry (FID
    5.60, FID-N 86.02, NFS 5.97 against 4.97, 60.76, 29.35).
    ``p_hat_stratified``: "- robust sampling", stratified inverse-CDF samples of ``p_hat`` itself
    with no top-p set (``p_hat_stratified_sample``), stratum centres in eval mode; the paper reports
    a worse FID (5.67) and occasional floaters with similar geometry (FID-N 60.78, NFS 24.79).
    ``tau`` and ``depth_margin`` only act on the two robust modes."""
    budget: int | Literal["adaptive"] = "adaptive"
    """Samples per ray: a fixed number, or ``"adaptive"`` for the low/high split below."""
    adaptive_low: int = 16
    """Adaptive budget of most rays (paper: 16)."""
    adaptive_high: int = 32
    """Adaptive budget of the hardest rays (paper: 32)."""
    adaptive_fraction: float = 0.1
    """Share of each image's rays given the high budget (paper: 0.1, so 17.6 samples per ray)."""
    adaptive_top_k: int | None = None
    """Bins whose mass counts as covered when ranking rays; ``None`` uses ``adaptive_low`` (paper: 16)."""
    patch_size: int = 64
    """Side of the full-resolution patch supervised per step (paper: 64); clipped to the image."""
    target_samples: int = 192
    """Dense uniform samples per ray for the supervision targets (paper: 192); a multiple of ``num_bins``."""
    target_blur_sigma: float = 1.0
    """Std of the Gaussian blur of the targets along depth, in bins (not given by the paper)."""
    target_suppress: float = 5e-3
    """Target weights below this are zeroed before normalising (paper: 5e-3)."""
    target_empty: Literal["far", "uniform"] = "far"
    """Target of rays that hit nothing: all mass in the last bin, or uniform (see ``proposal_targets``)."""

    def __post_init__(self) -> None:
        check_positive_int("num_bins", self.num_bins, minimum=2)
        check_positive_int("probe_samples", self.probe_samples)
        check_positive_int("downscale", self.downscale)
        check_positive_int("cnn_width", self.cnn_width)
        check_positive_int("patch_size", self.patch_size)
        check_positive_int("target_samples", self.target_samples)
        check_probability("tau", self.tau)
        if self.sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {', '.join(SAMPLING_MODES)}, got {self.sampling!r}")
        check_probability("cnn_probe_skip_floor", self.cnn_probe_skip_floor, open_high=True)
        check_probability("cnn_probe_skip_depth_share", self.cnn_probe_skip_depth_share, open_low=False)
        if not self.cnn_probe_skip_depth_sigma > 0:
            raise ValueError(f"cnn_probe_skip_depth_sigma must be > 0 bins, got {self.cnn_probe_skip_depth_sigma}")
        check_positive_int("depth_margin", self.depth_margin, minimum=0)
        check_probability("adaptive_fraction", self.adaptive_fraction, open_low=False)
        if self.probe_samples % self.num_bins:
            raise ValueError(f"probe_samples ({self.probe_samples}) must be a multiple of num_bins ({self.num_bins})")
        if self.target_samples % self.num_bins:
            raise ValueError(f"target_samples ({self.target_samples}) must be a multiple of num_bins ({self.num_bins})")
        if self.budget != "adaptive":
            check_positive_int("budget", self.budget)
        check_positive_int("adaptive_low", self.adaptive_low)
        check_positive_int("adaptive_high", self.adaptive_high)
        if self.adaptive_high < self.adaptive_low:
            raise ValueError(f"adaptive_high ({self.adaptive_high}) must be >= adaptive_low ({self.adaptive_low})")
        check_spacing(self.spacing)
        if self.quadrature not in ("bins", "points"):
            raise ValueError(f"quadrature must be 'bins' or 'points', got {self.quadrature!r}")
        if self.target_empty not in ("far", "uniform"):
            raise ValueError(f"target_empty must be 'far' or 'uniform', got {self.target_empty!r}")
        if self.target_blur_sigma < 0 or self.target_suppress < 0:
            raise ValueError("target_blur_sigma and target_suppress must be >= 0")

    @classmethod
    def paper(cls, **changes) -> LearnedSamplerConfig:
        """The paper's configuration (no probe skip, no depth margin), with ``changes`` applied."""
        return cls(**{"cnn_probe_skip": False, "cnn_probe_skip_depth_share": 0.0, "depth_margin": 0, **changes})

    @classmethod
    def volumetric(cls, **changes) -> LearnedSamplerConfig:
        """The default with the setting for semi-transparent content: every bin with mass kept
        (``tau = 1``) and samples weighted over the spans between them (``quadrature="points"``)."""
        return cls(**{"tau": 1.0, "quadrature": "points", **changes})

    @property
    def mean_budget(self) -> float:
        """Expected field samples per ray of the final render (probe excluded)."""
        if self.budget == "adaptive":
            return self.adaptive_low + self.adaptive_fraction * (self.adaptive_high - self.adaptive_low)
        return float(self.budget)

    @property
    def probe_samples_per_ray(self) -> float:
        """Probe cost per full-resolution ray: ``probe_samples / downscale^2`` (paper: 12)."""
        return self.probe_samples / self.downscale**2


@dataclass
class Proposal:
    """The sampler's prediction for a batch of images."""

    logits: Float[Tensor, "batch num_bins height width"]
    """CNN logits over depth bins at full resolution."""
    probe: ProbeResult
    """The probe the prediction was made from (its ``sample_outputs`` keep their gradients)."""

    @property
    def distribution(self) -> Float[Tensor, "batch height width num_bins"]:
        """``p_hat``: the softmax over bins, ray-major (matches image rays ``(B, H, W)``)."""
        return torch.softmax(self.logits, dim=1).permute(0, 2, 3, 1)

    @property
    def hit_probability(self) -> Float[Tensor, "batch height width"]:
        """Chance that a full-resolution ray hits anything: the probe opacity, max-pooled over
        neighbouring probe pixels (so silhouettes and thin structures next to a hit count) and
        upsampled bilinearly. Weights the adaptive-budget score (see ``adaptive_budgets``)."""
        opacity = F.max_pool2d(self.probe.opacity.detach()[:, None], 3, stride=1, padding=1)
        scale = self.logits.shape[-1] // opacity.shape[-1]
        if scale > 1:
            opacity = F.interpolate(opacity, scale_factor=scale, mode="bilinear", align_corners=False)
        return opacity[:, 0].clamp(0.0, 1.0)


class LearnedSampler(nn.Module):
    """The paper's learned sampler; the only trainable part is the proposal CNN.

    Sampling is stratified in training mode and uses interval midpoints in eval mode (except the
    ``robust_iid`` ablation, which always draws; see ``LearnedSamplerConfig.sampling``). Pass a
    ``generator`` for reproducible jitter and patch positions.
    """

    def __init__(self, config: LearnedSamplerConfig | None = None, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config or LearnedSamplerConfig()
        self.generator = generator
        self.proposal_network = ProposalNetwork(
            num_bins=self.config.num_bins,
            downscale=self.config.downscale,
            width=self.config.cnn_width,
            low_res_layers=self.config.cnn_low_res_layers,
            upsample_layers=self.config.cnn_upsample_layers,
            refine_layers=self.config.cnn_refine_layers,
            probe_skip=self.config.cnn_probe_skip,
            probe_skip_floor=self.config.cnn_probe_skip_floor,
            probe_skip_depth_share=self.config.cnn_probe_skip_depth_share,
            probe_skip_depth_sigma=self.config.cnn_probe_skip_depth_sigma,
        )

    def predict(self, rays: Rays, field: Field, field_gradients: bool = True) -> Proposal:
        """Probe ``field`` at ``1/downscale`` resolution and predict ``p_hat`` for image rays ``(B, H, W)``.

        The CNN sees the probe detached: the supervision loss trains only the CNN. With
        ``field_gradients`` the probe's ``sample_outputs`` keep their graph (e.g. for a
        decision-boundary loss on the probe's SDF values); turn it off when nothing uses them.
        """
        config = self.config
        with torch.set_grad_enabled(torch.is_grad_enabled() and field_gradients):
            probe = render_probe(
                rays,
                field,
                config.downscale,
                config.probe_samples,
                config.num_bins,
                self.training,
                self.generator,
                config.spacing,
            )
        view_directions = probe.rays.directions.permute(0, 3, 1, 2)
        logits = self.proposal_network(probe.weights.detach(), probe.rgb.detach(), view_directions)
        return Proposal(logits=logits, probe=probe)

    def budgets_for(
        self,
        distribution: Float[Tensor, "*batch num_bins"],
        hit_probability: Float[Tensor, "*batch"] | None = None,
    ) -> Int[Tensor, "*batch"] | int:
        """Per-ray budgets under the configured policy.

        Adaptive budgets pick the hardest fraction per image for image rays ``(B, H, W)`` and over
        the whole batch for unordered rays ``(N,)``; ``hit_probability`` (``Proposal.hit_probability``
        or its rows) keeps empty rays from taking the high budget.
        """
        config = self.config
        if config.budget != "adaptive":
            return config.budget
        batch_shape = distribution.shape[:-1]
        groups = batch_shape[0] if len(batch_shape) >= 2 else 1
        budgets = adaptive_budgets(
            distribution.reshape(groups, -1, distribution.shape[-1]),
            config.adaptive_low,
            config.adaptive_high,
            config.adaptive_fraction,
            config.adaptive_top_k,
            None if hit_probability is None else hit_probability.reshape(groups, -1),
        )
        return budgets.reshape(batch_shape)

    def sample_from_distribution(
        self,
        rays: Rays,
        distribution: Float[Tensor, "*batch num_bins"],
        budgets: Int[Tensor, "*batch"] | int | None = None,
        hit_probability: Float[Tensor, "*batch"] | None = None,
    ) -> RayIntervals:
        """Samples for any batch of rays from their predicted distributions, drawn as
        ``config.sampling`` says (robust stratified by default) and weighted as
        ``config.quadrature`` says.

        This is the ray-level entry point: ``distribution`` rows belong to ``rays`` (any batch
        shape), e.g. a chunk of an image's rays with the matching rows of ``Proposal.distribution``
        (and of ``Proposal.hit_probability``, which steers adaptive budgets away from empty rays).
        ``budgets`` overrides the configured policy (an int or a per-ray tensor).
        """
        if distribution.shape[:-1] != rays.batch_shape:
            raise ValueError(
                f"distribution {tuple(distribution.shape)} must be (*B, num_bins) with *B = rays {tuple(rays.batch_shape)}"
            )
        if distribution.shape[-1] != self.config.num_bins:
            raise ValueError(f"distribution has {distribution.shape[-1]} bins, the sampler {self.config.num_bins}")
        if budgets is None:
            budgets = self.budgets_for(distribution, hit_probability)
        config, p_hat = self.config, distribution.detach()
        # Linear bins are drawn in depth directly; other spacings in the normalised coordinate,
        # where the bins are equal, then mapped to depth.
        nears, fars = (rays.nears, rays.fars) if config.spacing == "linear" else (torch.zeros_like(rays.nears), torch.ones_like(rays.fars))
        if config.sampling == "robust_iid":
            intervals = robust_iid_sample(
                p_hat, nears, fars, budgets, config.tau, generator=self.generator, depth_margin=config.depth_margin
            )
        elif config.sampling == "p_hat_stratified":
            intervals = p_hat_stratified_sample(p_hat, nears, fars, budgets, stratified=self.training, generator=self.generator)
        else:
            intervals = robust_stratified_sample(
                p_hat,
                nears,
                fars,
                budgets,
                config.tau,
                stratified=self.training,
                generator=self.generator,
                depth_margin=config.depth_margin,
            )
        if config.spacing != "linear":
            intervals = intervals_to_depths(intervals, rays.nears, rays.fars, config.spacing)
        if config.quadrature == "points":
            return RayIntervals.from_points(intervals.t_samples, rays.nears, rays.fars, intervals.mask)
        return intervals

    def sample(self, rays: Rays, field: Field) -> RayIntervals:
        """Samples for image rays ``(B, H, W)``: probe, CNN, robust stratified (adaptive) sampling."""
        with torch.no_grad():
            proposal = self.predict(rays, field)
            distribution, hit_probability = proposal.distribution, proposal.hit_probability
        return self.sample_from_distribution(rays, distribution, hit_probability=hit_probability)

    def supervision_loss(self, rays: Rays, field: Field, proposal: Proposal | None = None) -> Tensor:
        """Cross-entropy of ``p_hat`` against dense targets on one random full-resolution patch.

        ``proposal`` reuses a prediction made for the same rays this step; otherwise one is made.
        The targets are computed without gradients and the probe is detached, so the gradient of
        this loss reaches only the CNN.
        """
        if len(rays.batch_shape) != 3:
            raise ValueError(f"rays must be image rays (B, H, W), got {tuple(rays.batch_shape)}")
        if proposal is None:
            proposal = self.predict(rays, field, field_gradients=False)
        config = self.config
        _, height, width = rays.batch_shape
        patch_h, patch_w = min(config.patch_size, height), min(config.patch_size, width)
        top = int(torch.randint(0, height - patch_h + 1, (1,), generator=self.generator))
        left = int(torch.randint(0, width - patch_w + 1, (1,), generator=self.generator))
        patch_rays = rays[:, top : top + patch_h, left : left + patch_w]
        with torch.no_grad():
            dense = uniform_intervals(
                patch_rays.nears, patch_rays.fars, config.target_samples, True, self.generator, config.spacing
            )
            dense_weights = render(patch_rays, dense, field, composite=()).weights
            targets = proposal_targets(
                dense_weights, config.num_bins, config.target_blur_sigma, config.target_suppress, config.target_empty
            )
        logits = proposal.logits[:, :, top : top + patch_h, left : left + patch_w].permute(0, 2, 3, 1)
        return proposal_loss(logits, targets)
