"""``WysiwygSamplerModel``: nerfacto's field and losses, sampled by the learned sampler.

nerfacto's two proposal networks and PDF resampling are replaced by ``learned_sampler``: a
low-resolution probe of the field itself, the proposal CNN that turns it into a per-pixel
distribution over depth bins at full resolution, and robust stratified sampling with adaptive
budgets (16 samples for most rays, 32 for the 10 % hardest of each image: 17.6 field samples per
ray against nerfacto's 48).

Image structure
---------------
The probe and the CNN need rays laid out as images, but the field learns far faster from rays
drawn at random over all training images than from patches (so does nerfacto's own field:
``benchmarks/RESULTS.md``, nerfstudio section). nerfstudio hands a model a flat ``RayBundle``, so
the structure comes from how the rays were drawn:

* Training: ``WysiwygDataManager`` sends ``sampler_rays_per_batch`` rays as row-major square
  patches of ``train_patch_size`` pixels, then ``train_num_rays_per_batch`` random rays, marked in
  the bundle's metadata. ``_outputs_for_training_batch`` reshapes the patches to
  ``(num_patches, P, P)``, probes each at ``P / downscale``, runs the CNN and supervises it with
  ``LearnedSampler.supervision_loss`` on a sub-patch of each; the patches are not rendered, but
  their predictions are returned (``PATCH_*`` outputs) and ``WysiwygPipeline`` keeps them in the
  datamanager's ``FieldRayPool``. The random rays are pixels of that pool and carry the
  distribution and hit probability predicted for them in recent iterations: they are rendered with
  samples from that distribution, with adaptive budgets chosen over the batch, and alone carry the
  RGB loss. No image is predicted for them alone.
* ``next_eval`` batches (patches only), bundles without the marks, and the first training batch
  (the pool still empty): the patches are probed and rendered with samples from their own prediction.
* Images (evaluation, ``ns-eval``, ``ns-render``, the viewer): ``get_outputs_for_camera`` probes
  the whole image once and stores the per-pixel distribution and adaptive budgets in the ray
  bundle's metadata; nerfstudio then renders the image in chunks of rows, and each chunk's samples
  are drawn from its rows of the distribution (the library's ray-level entry point), as the field
  rays' are from theirs.

Patches rather than full low-resolution images for the CNN: the whole-image layout
(``GridPixelSampler``) strides ``image size / train_patch_size`` pixels (2 at 32 px, 50 at 800 px),
so the CNN would train on pixel spacings many times wider than the full-resolution images it
predicts for, while patches keep the evaluation spacing at any resolution and lose only context at
their borders (replicate padding). In the benchmark the two layouts tie on short low-resolution
runs and patches lead on longer ones, smaller patches included (``benchmarks/RESULTS.md``,
``nerfstudio_vs_nerfacto.py --layout images``).

Samples in nerfstudio
---------------------
The intervals fill ``RaySamples``' ``starts``/``ends`` and ``spacing_starts``/``spacing_ends``
(each ray's ``[near, far]`` in the normalised coordinate in which the bins are equal), so
nerfstudio's renderers and ``nerfstudio_distortion_loss`` work unchanged (see ``ray_samples``).
With ``scene_bounds="box"`` the per-ray near/far come from the scene box (``AABBBoxCollider``) and
the bins are equal in depth over the part of each ray inside it; with ``"unbounded"`` every ray
spans ``near_plane`` to ``far_plane`` (``NearFarCollider``, nerfacto's 0.05 to 1000) in nerfacto's
lin-disp bins, through the contracted field. The field is evaluated only at real samples
(``evaluate_real_samples``).

Colour warm-up and background
-----------------------------
The rays end at the scene box, with ``background_color`` behind them (white by default, as the
images are composited). Early in training that is a trap for nerfacto's sigmoid colour head: the
field starts hazy, every foreground pixel renders too bright, every step says "darker", and the
colour head saturates to black before a surface forms; hit rays then stay half transparent,
rendering the average grey, for a long plateau. (nerfacto's own
rays end in its contracted far region, opaque and mid-grey from the start, so its colour head sees
errors of both signs.) For the first ``colour_warmup_iterations`` the RGB loss therefore reaches
only the density: the colour head keeps its initial weights (colours near mid-grey), so the errors
have both signs and the density carves the scene's silhouettes; then the colours are fitted on
surfaces that exist. Its effect is measured in ``benchmarks/RESULTS.md`` (nerfstudio section).

``background_color="last_sample"`` (nerfacto's default: each ray over its deepest real sample's
colour) also removes the plateau on occluder, but on mostly empty scenes (thin_structures) a white
haze then explains the background, the colour head saturates to white and the scene never forms.

Parameters: ``get_param_groups`` returns ``"fields"`` (nerfacto's field), ``"learned_sampler"``
(the proposal CNN, trained only by the supervision loss) and ``"camera_opt"`` when the camera
optimiser is on; the method config has an optimiser entry for each.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, List, Literal, Tuple, Type

import torch
from jaxtyping import Float, Int
from torch import Tensor
from torch.nn import Parameter

from learned_sampler import LearnedSampler, LearnedSamplerConfig, Proposal, RayIntervals, Rays
from nerfstudio.cameras.camera_optimizers import CameraOptimizer, CameraOptimizerConfig
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import OrientedBox
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.field_components.spatial_distortions import SceneContraction
from nerfstudio.fields.nerfacto_field import NerfactoField
from nerfstudio.model_components.losses import MSELoss, nerfstudio_distortion_loss
from nerfstudio.model_components.renderers import AccumulationRenderer, DepthRenderer, RGBRenderer
from nerfstudio.model_components.scene_colliders import AABBBoxCollider, NearFarCollider
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils import colormaps

from wysiwyg_nerfstudio.datamanager import BUDGET_KEY, DISTRIBUTION_KEY, FIELD_RAY_KEY, HIT_PROBABILITY_KEY, PIXEL_KEY
from wysiwyg_nerfstudio.field_adapter import NerfstudioFieldAdapter
from wysiwyg_nerfstudio.offline_lpips import lpips_if_available
from wysiwyg_nerfstudio.pipeline import PATCH_DISTRIBUTION, PATCH_HIT_PROBABILITY, PATCH_PIXELS
from wysiwyg_nerfstudio.ray_samples import (
    evaluate_real_samples,
    intervals_to_ray_samples,
    last_real_sample_values,
    rays_from_bundle,
)

def default_sampler_config() -> LearnedSamplerConfig:
    """The sampler sized for per-scene NeRFs on 16x16 training patches (CPU-sized CNN).

    64 equal depth bins over the ray's span in the scene box, a probe of 64 samples at 1/2
    resolution (16 density samples per full-resolution ray), a 32-channel CNN with the probe skip
    (narrower than the bins, see ``ProposalNetwork``) and a skip floor of 1e-5, supervision on one
    8x8 sub-patch per training patch with 128 dense density-only samples, the paper's tau and
    adaptive 16/32 budgets.

    The probe at 1/2 rather than the paper's 1/4: with the field trained on random rays, the CNN's
    predictions are what limits the field's fit (samples drawn from the exact targets instead fit
    the training images much better), and a finer probe makes the predictions much better.

    The floor: at the library's 1e-3 the kept set of a sharp probe holds most of the bins
    (``ProposalNetwork``), so a field still being learned gets its samples spread over the whole
    ray and learns thin structures and textures slowly; 1e-5 lets the CNN focus them.

    Both choices are measured in ``benchmarks/RESULTS.md`` (nerfstudio section). The library
    default's depth-guided skip prior and depth margin are not measured with this method yet, so
    it keeps the plain skip and no margin.
    """
    return LearnedSamplerConfig(
        num_bins=64,
        probe_samples=64,
        downscale=2,
        cnn_width=32,
        cnn_probe_skip=True,
        cnn_probe_skip_floor=1e-5,
        cnn_probe_skip_depth_share=0.0,
        depth_margin=0,
        patch_size=8,
        target_samples=128,
        target_blur_sigma=0.5,
    )


@dataclass
class WysiwygSamplerModelConfig(ModelConfig):
    """Configuration of ``WysiwygSamplerModel`` (field options as nerfacto's)."""

    _target: Type = field(default_factory=lambda: WysiwygSamplerModel)
    """target class to instantiate"""
    sampler: LearnedSamplerConfig = field(default_factory=default_sampler_config)
    """The learned sampler (bins, probe, CNN, tau, budgets, supervision patch and targets)."""
    train_patch_size: int = 16
    """Side of the square patches of training batches; must equal the datamanager's
    ``pixel_sampler.patch_size`` and be a multiple of ``sampler.downscale``."""
    sampler_loss_mult: float = 1.0
    """Weight of the CNN's supervision loss (it reaches only the CNN's parameters)."""
    distortion_loss_mult: float = 0.002
    """Distortion loss multiplier (as nerfacto), on the final samples."""
    background_color: Literal["white", "black", "random", "last_sample"] = "white"
    """Colour behind each ray's samples. "last_sample" (nerfacto's default): the colour of the ray's
    deepest real sample; it can turn mostly empty scenes into a white haze (module docstring).
    "random" needs images whose alpha reaches the model, e.g. ``blender-data --alpha-color None``."""
    colour_warmup_iterations: int = 100
    """Training iterations during which the RGB loss reaches the density only (the colour head keeps
    its initial weights, colours near mid-grey), so the geometry forms before the colours are fitted
    (module docstring; 0 turns the warm-up off)."""
    scene_bounds: Literal["box", "unbounded"] = "box"
    """Where the samples lie. ``"box"``: each ray's span inside the dataset's scene box, with depth
    bins equal in depth (object-centred scenes, Blender's). ``"unbounded"``: from ``near_plane`` to
    ``far_plane`` with nerfacto's linear-then-disparity bins (``sampler.spacing`` becomes
    ``"lin-disp"`` unless set to another non-linear one), for captures whose far content lies
    in the contracted field (``nerfstudio-data``, ``colmap``); use ``background_color
    last_sample`` there, as nerfacto does."""
    scene_box_near_plane: float = 0.0
    """Smallest near distance of training rays with ``scene_bounds="box"`` (the far end is where a
    ray leaves the scene box)."""
    near_plane: float = 0.05
    """Near distance of every ray with ``scene_bounds="unbounded"`` (nerfacto's)."""
    far_plane: float = 1000.0
    """Far distance of every ray with ``scene_bounds="unbounded"`` (nerfacto's)."""
    hidden_dim: int = 64
    """Dimension of hidden layers"""
    hidden_dim_color: int = 64
    """Dimension of hidden layers for color network"""
    hidden_dim_transient: int = 64
    """Dimension of hidden layers for transient network"""
    num_levels: int = 16
    """Number of levels of the hashmap for the base mlp."""
    base_res: int = 16
    """Resolution of the base grid for the hashgrid."""
    max_res: int = 2048
    """Maximum resolution of the hashmap for the base mlp."""
    log2_hashmap_size: int = 19
    """Size of the hashmap for the base mlp"""
    features_per_level: int = 2
    """How many hashgrid features per level"""
    use_appearance_embedding: bool = True
    """Whether to use an appearance embedding."""
    appearance_embed_dim: int = 32
    """Dimension of the appearance embedding."""
    use_average_appearance_embedding: bool = True
    """Whether to use average appearance embedding or zeros for inference."""
    average_init_density: float = 0.1
    """Average initial density output from MLP, between two failures. The learned sampler's rays
    end at the scene box, so at 0.01 the field starts nearly transparent, foreground pixels render
    as background and the colour head is driven to black until its sigmoid saturates (no gradient
    left; the trap the colour warm-up also guards against). At nerfacto's 1.0 the box starts as fog
    that the focused samples clear slowly on mostly empty scenes. Measured in
    ``benchmarks/RESULTS.md`` (nerfstudio section)."""
    disable_scene_contraction: bool = False
    """Whether to disable scene contraction or not."""
    implementation: Literal["tcnn", "torch"] = "tcnn"
    """Which implementation to use for the field (tcnn falls back to torch when tiny-cuda-nn is missing)."""
    camera_optimizer: CameraOptimizerConfig = field(default_factory=lambda: CameraOptimizerConfig(mode="off"))
    """Config of the camera optimizer to use (off: synthetic scenes have exact poses)."""

    def __post_init__(self) -> None:
        if self.scene_bounds not in ("box", "unbounded"):
            raise ValueError(f"scene_bounds must be 'box' or 'unbounded', got {self.scene_bounds!r}")
        if self.scene_bounds == "unbounded" and not 0 < self.near_plane < self.far_plane:
            raise ValueError(f"need 0 < near_plane < far_plane, got {self.near_plane} and {self.far_plane}")
        if self.colour_warmup_iterations < 0:
            raise ValueError(f"colour_warmup_iterations must be >= 0, got {self.colour_warmup_iterations}")
        if self.train_patch_size < 1 or self.train_patch_size % self.sampler.downscale:
            raise ValueError(
                f"train_patch_size ({self.train_patch_size}) must be a positive multiple of "
                f"sampler.downscale ({self.sampler.downscale})"
            )


    def sampler_config(self) -> LearnedSamplerConfig:
        """``sampler`` with the spacing ``scene_bounds`` needs: lin-disp for unbounded scenes unless
        another non-linear spacing is set."""
        if self.scene_bounds == "unbounded" and self.sampler.spacing == "linear":
            return replace(self.sampler, spacing="lin-disp")
        return self.sampler


class WysiwygSamplerModel(Model):
    """nerfacto's field rendered at the learned sampler's samples (see the module docstring)."""

    config: WysiwygSamplerModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        config = self.config
        contraction = None if config.disable_scene_contraction else SceneContraction(order=float("inf"))
        self.field = NerfactoField(
            self.scene_box.aabb,
            hidden_dim=config.hidden_dim,
            num_levels=config.num_levels,
            max_res=config.max_res,
            base_res=config.base_res,
            features_per_level=config.features_per_level,
            log2_hashmap_size=config.log2_hashmap_size,
            hidden_dim_color=config.hidden_dim_color,
            hidden_dim_transient=config.hidden_dim_transient,
            spatial_distortion=contraction,
            num_images=self.num_train_data,
            use_average_appearance_embedding=config.use_average_appearance_embedding,
            appearance_embedding_dim=config.appearance_embed_dim if config.use_appearance_embedding else 0,
            average_init_density=config.average_init_density,
            implementation=config.implementation,
        )
        self.sampler = LearnedSampler(config.sampler_config())
        self.training_step = 0  # set by the training callback (the colour warm-up)
        self.camera_optimizer: CameraOptimizer = config.camera_optimizer.setup(
            num_cameras=self.num_train_data, device="cpu"
        )
        # The bins tile each ray's span between the collider's near and far.
        if config.scene_bounds == "box":
            self.collider = AABBBoxCollider(self.scene_box, near_plane=config.scene_box_near_plane)
        else:
            self.collider = NearFarCollider(near_plane=config.near_plane, far_plane=config.far_plane)
        self.renderer_rgb = RGBRenderer(background_color=config.background_color)
        self.renderer_accumulation = AccumulationRenderer()
        self.renderer_depth = DepthRenderer(method="median")
        self.renderer_expected_depth = DepthRenderer(method="expected")
        self.rgb_loss = MSELoss()
        from torchmetrics.functional import structural_similarity_index_measure
        from torchmetrics.image import PeakSignalNoiseRatio

        self.psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.ssim = structural_similarity_index_measure
        # Kept out of the module tree: LPIPS weights exist on some machines only, and a checkpoint
        # must load on every machine (strict state dicts), so they never enter the state dict.
        self.unsaved_metrics = {"lpips": lpips_if_available()}

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        param_groups = {
            "fields": list(self.field.parameters()),
            "learned_sampler": list(self.sampler.parameters()),
        }
        self.camera_optimizer.get_param_groups(param_groups=param_groups)
        return param_groups

    # ---- sampling -------------------------------------------------------------------------------

    def _patch_layout(self, ray_bundle: RayBundle) -> tuple[int, int]:
        """``(num_patches, P)`` of a flat training bundle made of row-major ``P x P`` patches."""
        size = self.config.train_patch_size
        num_rays = ray_bundle.shape[0]
        if len(ray_bundle.shape) != 1 or num_rays % (size * size):
            raise ValueError(
                f"wysiwyg-sampler needs batches of row-major {size}x{size} patches (num rays a multiple of "
                f"{size * size}), got a bundle of shape {tuple(ray_bundle.shape)}. Use "
                f"PatchPixelSamplerConfig(patch_size={size}) as the datamanager's pixel_sampler, with at least "
                f"{size * size} rays per batch, or change the model's train_patch_size to match it."
            )
        return num_rays // (size * size), size

    def _field_for(self, camera_indices: Tensor, density_only: bool = False) -> NerfstudioFieldAdapter:
        return NerfstudioFieldAdapter(
            self.field, camera_indices, density_only, max_points=max(self.config.eval_num_rays_per_chunk, 1) * 64
        )

    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        if self.training:
            self.camera_optimizer.apply_to_raybundle(ray_bundle)
        metadata = ray_bundle.metadata or {}
        if self.training and FIELD_RAY_KEY in metadata:
            return self._outputs_for_training_batch(ray_bundle)
        if DISTRIBUTION_KEY in metadata:
            return self._outputs_for_image_chunk(ray_bundle)
        return self._outputs_for_patches(ray_bundle)

    def _outputs_for_training_batch(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        """A ``WysiwygDataManager`` batch: the patches train the CNN and give the pool their
        predictions; the field rays, sampled from the predictions they carry, are rendered. Without
        field rays (the first iteration, the pool still empty) the patches are rendered."""
        is_field_ray = ray_bundle.metadata[FIELD_RAY_KEY][:, 0]
        patch_bundle = ray_bundle[~is_field_ray]
        patch_rays, camera_indices, proposal = self._predict_patches(patch_bundle)
        if bool(is_field_ray.any()):
            field_bundle = ray_bundle[is_field_ray]
            # Adaptive budgets over the batch: the field rays are uniform over the training
            # images, so their hardest fraction stands for every image's.
            budgets = self.sampler.budgets_for(
                field_bundle.metadata[DISTRIBUTION_KEY], field_bundle.metadata[HIT_PROBABILITY_KEY][:, 0]
            )
            outputs = self._render_predicted_rays(field_bundle, budgets)
            outputs["rendered_ray_mask"] = is_field_ray
        else:
            outputs = self._render_patches(patch_bundle, patch_rays, proposal)
            outputs["rendered_ray_mask"] = ~is_field_ray
        outputs["sampler_loss"] = self._supervision_loss(patch_rays, camera_indices, proposal)
        distribution = proposal.distribution.detach()
        outputs[PATCH_PIXELS] = patch_bundle.metadata[PIXEL_KEY]
        outputs[PATCH_DISTRIBUTION] = distribution.reshape(-1, distribution.shape[-1])
        outputs[PATCH_HIT_PROBABILITY] = proposal.hit_probability.detach().reshape(-1)
        return outputs

    def _outputs_for_image_chunk(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        """A chunk of an image whose distribution and budgets were predicted for the whole image."""
        return self._render_predicted_rays(ray_bundle, ray_bundle.metadata[BUDGET_KEY][..., 0].round().long())

    def _render_predicted_rays(self, ray_bundle: RayBundle, budgets: Tensor | int) -> Dict[str, Tensor]:
        """Rays rendered with samples from the distributions they carry (field rays, image chunks)."""
        rays = rays_from_bundle(ray_bundle)
        intervals = self.sampler.sample_from_distribution(rays, ray_bundle.metadata[DISTRIBUTION_KEY], budgets=budgets)
        return self._render(ray_bundle, rays, intervals)

    def _outputs_for_patches(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        """A bundle of row-major patches (``next_eval``, unmarked bundles): probed and rendered with
        samples from their own prediction; in training the CNN's loss too."""
        patch_rays, camera_indices, proposal = self._predict_patches(ray_bundle)
        outputs = self._render_patches(ray_bundle, patch_rays, proposal)
        if self.training:
            outputs["sampler_loss"] = self._supervision_loss(patch_rays, camera_indices, proposal)
        return outputs

    def _render_patches(self, ray_bundle: RayBundle, patch_rays: Rays, proposal: Proposal) -> Dict[str, Tensor]:
        """Render patches with samples from their own (detached) prediction."""
        intervals = self.sampler.sample_from_distribution(
            patch_rays, proposal.distribution.detach(), hit_probability=proposal.hit_probability
        ).reshape(-1)
        return self._render(ray_bundle, patch_rays.flatten(), intervals)

    def _render(self, ray_bundle: RayBundle, rays: Rays, intervals: RayIntervals) -> Dict[str, Tensor]:
        """The field at the real samples of ``intervals``, composited: colour, accumulation, depths, losses."""
        outputs: Dict[str, Tensor] = {}
        ray_samples = intervals_to_ray_samples(ray_bundle, rays, intervals, self.sampler.config.spacing)
        field_outputs = evaluate_real_samples(self.field, ray_samples, intervals.mask)
        weights = ray_samples.get_weights(field_outputs[FieldHeadNames.DENSITY])
        rgb = field_outputs[FieldHeadNames.RGB]
        if self.training and self.training_step < self.config.colour_warmup_iterations:
            rgb = rgb.detach()
        last_sample = self.renderer_rgb.background_color == "last_sample"
        background = last_real_sample_values(rgb, intervals.mask) if last_sample else None
        outputs["rgb"] = self.renderer_rgb(rgb=rgb, weights=weights, background_color=background)
        outputs["accumulation"] = self.renderer_accumulation(weights=weights)
        with torch.no_grad():
            outputs["depth"] = self.renderer_depth(weights=weights, ray_samples=ray_samples)
        outputs["expected_depth"] = self.renderer_expected_depth(weights=weights, ray_samples=ray_samples)
        outputs["field_samples"] = intervals.samples_per_ray()[..., None]
        if self.training:
            outputs["distortion"] = nerfstudio_distortion_loss(ray_samples, weights=weights).mean()
        return outputs

    def _predict_patches(self, ray_bundle: RayBundle) -> tuple[Rays, Tensor, Proposal]:
        """Probe and CNN on a bundle of row-major patches: the patch rays, their cameras, the proposal."""
        num_patches, size = self._patch_layout(ray_bundle)
        patch_rays = rays_from_bundle(ray_bundle, (num_patches, size, size))
        camera_indices = ray_bundle.camera_indices.reshape(num_patches, size * size)[:, 0]
        proposal = self.sampler.predict(patch_rays, self._field_for(camera_indices), field_gradients=False)
        return patch_rays, camera_indices, proposal

    def _supervision_loss(self, patch_rays: Rays, camera_indices: Tensor, proposal: Proposal) -> Tensor:
        """The CNN's loss on the patches, against dense density-only renders of the field."""
        return self.sampler.supervision_loss(patch_rays, self._field_for(camera_indices, density_only=True), proposal)

    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        def set_training_step(step: int) -> None:
            self.training_step = step

        return [
            TrainingCallback(
                where_to_run=[TrainingCallbackLocation.BEFORE_TRAIN_ITERATION],
                update_every_num_iters=1,
                func=set_training_step,
            )
        ]

    @torch.no_grad()
    def get_outputs_for_camera(self, camera: Cameras, obb_box: OrientedBox | None = None) -> Dict[str, Tensor]:
        """Render one camera: probe and CNN on the whole image, then samples in chunks of rows."""
        ray_bundle = camera.generate_rays(camera_indices=0, keep_shape=True, obb_box=obb_box)
        return self.get_outputs_for_camera_ray_bundle(ray_bundle.to(self.device))

    @torch.no_grad()
    def get_outputs_for_camera_ray_bundle(self, camera_ray_bundle: RayBundle) -> Dict[str, Tensor]:
        """Outputs for an image-shaped bundle ``(H, W)``; the distribution is predicted for the whole image."""
        if len(camera_ray_bundle.shape) != 2:
            raise ValueError(f"expected an image ray bundle (H, W), got shape {tuple(camera_ray_bundle.shape)}")
        height, width = camera_ray_bundle.shape
        flat = camera_ray_bundle.flatten().to(self.device)
        distribution, budgets = self._predict_camera_rays(camera_ray_bundle)
        metadata = dict(flat.metadata or {})
        metadata[DISTRIBUTION_KEY] = distribution.reshape(height * width, -1)
        metadata[BUDGET_KEY] = budgets.reshape(height * width, 1).to(distribution.dtype)
        flat.metadata = metadata
        return super().get_outputs_for_camera_ray_bundle(flat.reshape((height, width)))

    @torch.no_grad()
    def _predict_camera_rays(
        self, camera_ray_bundle: RayBundle
    ) -> tuple[Float[Tensor, "height width num_bins"], Int[Tensor, "height width"]]:
        """The learned distribution and adaptive budgets of an image-shaped bundle ``(H, W)``."""
        height, width = camera_ray_bundle.shape
        flat = self.collider(camera_ray_bundle.flatten().to(self.device))
        image_rays = rays_from_bundle(flat, (1, height, width))
        camera_indices = flat.camera_indices[:1, 0] if flat.camera_indices is not None else torch.zeros(1, dtype=torch.long)
        distribution, budgets = self.predict_image(image_rays, camera_indices.to(self.device))
        return distribution[0], budgets[0]

    def predict_image(
        self, image_rays: Rays, camera_indices: Tensor
    ) -> tuple[Float[Tensor, "1 height width num_bins"], Tensor]:
        """The learned distribution and adaptive budgets of one image's rays ``(1, H, W)``.

        Images whose sides are not multiples of ``downscale`` are padded by repeating their last
        row/column of rays for the probe, and the prediction is cropped back.
        """
        _, height, width = image_rays.batch_shape
        downscale = self.sampler.config.downscale
        padded_h, padded_w = -(-height // downscale) * downscale, -(-width // downscale) * downscale
        rows = torch.arange(padded_h, device=image_rays.device).clamp_max(height - 1)
        cols = torch.arange(padded_w, device=image_rays.device).clamp_max(width - 1)
        padded = image_rays[:, rows][:, :, cols]
        proposal = self.sampler.predict(padded, self._field_for(camera_indices), field_gradients=False)
        distribution = proposal.distribution[:, :height, :width]
        hit_probability = proposal.hit_probability[:, :height, :width]
        budgets = self.sampler.budgets_for(distribution, hit_probability)
        if isinstance(budgets, int):
            budgets = torch.full((1, height, width), budgets, device=distribution.device)
        return distribution, budgets

    # ---- losses and metrics ---------------------------------------------------------------------

    @staticmethod
    def _rendered_pixels(outputs: Dict[str, Tensor], batch: Dict[str, Tensor]) -> Tensor:
        """The batch's ground-truth pixels of the rays ``outputs`` rendered (in training batches, the field rays)."""
        image = batch["image"]
        if "rendered_ray_mask" in outputs:
            image = image[outputs["rendered_ray_mask"].to(image.device)]
        return image

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        gt_rgb = self.renderer_rgb.blend_background(self._rendered_pixels(outputs, batch).to(self.device))
        metrics = {"psnr": self.psnr(outputs["rgb"], gt_rgb), "field_samples_per_ray": outputs["field_samples"].mean()}
        if self.training:
            metrics["distortion"] = outputs["distortion"]
            metrics["sampler_loss"] = outputs["sampler_loss"].detach()
        self.camera_optimizer.get_metrics_dict(metrics)
        return metrics

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        pred_rgb, gt_rgb = self.renderer_rgb.blend_background_for_loss_computation(
            pred_image=outputs["rgb"],
            pred_accumulation=outputs["accumulation"],
            gt_image=self._rendered_pixels(outputs, batch).to(self.device),
        )
        loss_dict = {"rgb_loss": self.rgb_loss(gt_rgb, pred_rgb)}
        if self.training:
            loss_dict["distortion_loss"] = self.config.distortion_loss_mult * outputs["distortion"]
            loss_dict["sampler_loss"] = self.config.sampler_loss_mult * outputs["sampler_loss"]
            self.camera_optimizer.get_loss_dict(loss_dict)
        return loss_dict

    def get_image_metrics_and_images(
        self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]
    ) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        gt_rgb = self.renderer_rgb.blend_background(batch["image"].to(self.device))
        predicted_rgb = outputs["rgb"]
        accumulation = colormaps.apply_colormap(outputs["accumulation"])
        depth = colormaps.apply_depth_colormap(outputs["depth"], accumulation=outputs["accumulation"])
        gt_nchw = torch.moveaxis(gt_rgb, -1, 0)[None]
        predicted_nchw = torch.moveaxis(predicted_rgb, -1, 0)[None]
        metrics = {
            "psnr": float(self.psnr(gt_nchw, predicted_nchw).item()),
            "ssim": float(self.ssim(gt_nchw, predicted_nchw)),
            "field_samples_per_ray": float(outputs["field_samples"].mean()),
            "probe_samples_per_ray": float(self.sampler.config.probe_samples_per_ray),
        }
        lpips = self.unsaved_metrics["lpips"]
        if lpips is not None:
            lpips = lpips.to(gt_nchw.device)
            metrics["lpips"] = float(lpips(gt_nchw.clamp(0, 1), predicted_nchw.clamp(0, 1)))
        images = {"img": torch.cat([gt_rgb, predicted_rgb], dim=1), "accumulation": accumulation, "depth": depth}
        return metrics, images
