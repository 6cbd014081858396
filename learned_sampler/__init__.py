"""learned-sampler: a learned ray sampler for neural volume rendering.

The sampler of *What You See is What You GAN* (CVPR 2024): render a cheap low-resolution probe,
let a CNN predict a per-pixel distribution over depth bins at full resolution, and draw a few
samples per ray from it with robust, stratified, adaptive sampling. Every piece is usable alone.

The public surface is this package's namespace, ``learned_sampler.validation`` (the argument checks
that raise one-line ``ValueError``s, for code built on the library) and ``learned_sampler.scenes``
(analytic test scenes with exact answers).
"""

from learned_sampler.adaptive import adaptive_budgets
from learned_sampler.baselines import ImportanceSampler, UniformSampler, smooth_weights_eg3d
from learned_sampler.cameras import (
    EG3D_CAMERA_RADIUS,
    EG3D_FOV_DEGREES,
    EG3D_RAY_FAR,
    EG3D_RAY_NEAR,
    intrinsics_from_fov,
    look_at,
    orbit_cameras,
    sample_orbit_cameras,
)
from learned_sampler.density import volsdf_density
from learned_sampler.depth_prior import depth_guided_prior, probe_median_depth
from learned_sampler.hub_cache import hub_checkpoint_path
from learned_sampler.intervals import RayIntervals
from learned_sampler.probe import ProbeResult, render_probe
from learned_sampler.proposal_network import ProposalNetwork
from learned_sampler.rays import Rays, downsample_rays, rays_from_cameras
from learned_sampler.rendering import (
    Field,
    RenderResult,
    accumulate_along_rays,
    evaluate_field,
    render,
    render_transmittance_from_density,
    render_weights_from_density,
)
from learned_sampler.robust import (
    p_hat_stratified_sample,
    robust_distribution,
    robust_iid_sample,
    robust_stratified_sample,
)
from learned_sampler.sampler import SAMPLING_MODES, LearnedSampler, LearnedSamplerConfig, Proposal, SamplingMode
from learned_sampler.sampling import normalize_distribution, sample_inverse_cdf, uniform_bin_edges, uniform_intervals
from learned_sampler.spacing import SPACINGS, Spacing, depths_to_spacing, intervals_to_depths, spacing_to_depths
from learned_sampler.supervision import gaussian_blur_bins, proposal_loss, proposal_targets

__version__ = "0.1.0"

__all__ = [
    "EG3D_CAMERA_RADIUS",
    "EG3D_FOV_DEGREES",
    "EG3D_RAY_FAR",
    "EG3D_RAY_NEAR",
    "Field",
    "ImportanceSampler",
    "LearnedSampler",
    "LearnedSamplerConfig",
    "ProbeResult",
    "Proposal",
    "ProposalNetwork",
    "RayIntervals",
    "Rays",
    "RenderResult",
    "SAMPLING_MODES",
    "SPACINGS",
    "SamplingMode",
    "Spacing",
    "UniformSampler",
    "accumulate_along_rays",
    "adaptive_budgets",
    "depth_guided_prior",
    "depths_to_spacing",
    "downsample_rays",
    "evaluate_field",
    "gaussian_blur_bins",
    "hub_checkpoint_path",
    "intervals_to_depths",
    "intrinsics_from_fov",
    "look_at",
    "normalize_distribution",
    "orbit_cameras",
    "p_hat_stratified_sample",
    "probe_median_depth",
    "proposal_loss",
    "proposal_targets",
    "rays_from_cameras",
    "render",
    "render_probe",
    "render_transmittance_from_density",
    "render_weights_from_density",
    "robust_distribution",
    "robust_iid_sample",
    "robust_stratified_sample",
    "sample_inverse_cdf",
    "sample_orbit_cameras",
    "smooth_weights_eg3d",
    "spacing_to_depths",
    "uniform_bin_edges",
    "uniform_intervals",
    "volsdf_density",
]
