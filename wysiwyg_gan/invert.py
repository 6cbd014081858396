"""``python -m wysiwyg_gan.invert``: single-view 3D reconstruction by pivotal tuning (PTI).

Fits a trained generator to one posed image (supplement A2.3), then renders the fit from the
input camera and from novel views and extracts its SDF as a mesh::

    python -m wysiwyg_gan.invert --checkpoint runs/cpu/checkpoint-000003200.pt --image photo.png
    python -m wysiwyg_gan.invert --checkpoint CKPT --data held_out/ --images img00000003.png
    python -m wysiwyg_gan.invert --checkpoint CKPT --data held_out/ --num-images 4 --first-index 2

Two stages per image (Roich et al. 2022, "Pivotal Tuning for Latent-based Editing of Real Images"):

1. **Latent** (``--latent-steps``, 600): Adam on a latent ``w`` (one ``w`` for every layer, or
   one per layer with ``--latent-space w+``), started at the generator's mean ``w``; on the camera
   (a rotation about the origin and a translation, relative to the input camera); and on the
   constant noise images of the generator. As in the StyleGAN2 projector (Karras et al. 2020,
   Appendix D): the learning rate warms up linearly over the first 5% of the steps and decays with
   a half cosine over the last 25%; Gaussian noise of std ``w_std * 0.05 * max(0, 1 - t/0.75)^2``
   (``t`` the fraction of the steps done, ``w_std = sqrt(E|w - w_avg|^2)``) is added to ``w`` so
   the early steps explore; the noise images are penalised for spatial autocorrelation at every
   scale (``sum_scales mean(n * roll_x(n))^2 + mean(n * roll_y(n))^2``, weight
   ``--noise-regularization``) and renormalised to zero mean and unit variance after every step,
   so the noise cannot absorb the image.
2. **Tuning** (``--tune-steps``, 350): with ``w`` fixed (the pivot) and the noise images frozen,
   Adam at a constant learning rate on a copy of every generator weight and on the camera. The
   loaded checkpoint and its in-memory model are never modified.

The loss is ``MSE + LPIPS`` on the images in ``[-1, 1]`` when LPIPS weights are already on disk
(torch's hub cache: VGG16, else AlexNet; nothing is downloaded) and MSE alone otherwise; stdout
and ``invert.json`` say which. Outputs in ``--out``: per image ``<stem>_reconstruction.png``
(input camera), ``<stem>_views.png`` (yaw offsets ``--view-yaws`` around the fitted camera, left
to right), ``<stem>.ply`` (the tuned generator's SDF by marching cubes, coloured by its colour
MLP), optionally ``<stem>_generator.pt``; and ``invert.json``::

    {"data": DATASET or null, "checkpoint": PATH, "loss": "mse" | "mse+lpips",
     "results": [{"image": NAME, "mesh": FILE, "camera": [25 numbers], "mse": M, "psnr": P,
                  "chamfer": C, "normal_consistency": N, ...}, ...]}

``mesh`` is null when ``--mesh-resolution 0`` or the SDF has no surface in the box. ``mse`` and
``psnr`` compare the final reconstruction with the target in ``[0, 1]`` pixel units;
``chamfer`` and ``normal_consistency`` (``wysiwyg_gan.geometry_metrics.mesh_accuracy``) appear when the
dataset is synthetic (has ``geometry.json``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field as dataclass_field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from wysiwyg_gan.camera_pose import CameraPose, novel_view_labels
from wysiwyg_gan.checkpoint import CheckpointError, write_atomically
from wysiwyg_gan.data.dataset import LABEL_SIZE, CameraImageDataset, DatasetError, split_camera_labels
from wysiwyg_gan.distributed import resolve_device
from wysiwyg_gan.images import to_hwc_uint8
from wysiwyg_gan.inference import TrainedGAN, load_trained_gan
from wysiwyg_gan.networks.triplane import TriplaneField, TriplaneGenerator
from wysiwyg_gan.noise_images import freeze_noise, make_noise_trainable, noise_regularization, normalize_noise
from wysiwyg_gan.orbit_cameras import frontal_labels
from wysiwyg_gan.perceptual_loss import PerceptualLoss, load_lpips

INVERT_JSON = "invert.json"
"""Name of the summary file in the output folder."""


@dataclass
class InvertConfig:
    """Single-view reconstruction of images with a trained generator (PTI)."""

    checkpoint: Path
    """Checkpoint written by ``python -m wysiwyg_gan.train`` (its EMA generator is inverted)."""
    out: Path = Path("runs/invert")
    """Output folder (created): images, meshes and invert.json."""
    image: Path | None = None
    """One square PNG/JPG to reconstruct (resized to the model's resolution); excludes --data."""
    camera: tuple[float, ...] | None = None
    """Camera label of --image, 25 numbers (16 of the OpenCV cam2world, 9 of the normalised
    intrinsics); the frontal camera when omitted."""
    data: Path | None = None
    """EG3D-format dataset (folder or zip with dataset.json) to take images and cameras from."""
    images: tuple[str, ...] = ()
    """Images of --data to reconstruct, by file name as in dataset.json; else --num-images from
    --first-index."""
    num_images: int = 1
    """With --data and no --images: how many consecutive images to reconstruct."""
    first_index: int = 0
    """With --data and no --images: index of the first image in dataset.json's order."""
    latent_space: Literal["w", "w+"] = "w"
    """Optimise one w shared by all layers (``w``, PTI's choice) or one per layer (``w+``)."""
    latent_steps: int = 600
    """Steps of stage 1 (latent, camera and noise images)."""
    tune_steps: int = 350
    """Steps of stage 2 (generator weights and camera, w fixed)."""
    latent_lr: float = 0.01
    """Peak Adam learning rate of w and the noise images in stage 1 (warm-up, cosine decay)."""
    camera_lr: float = 3e-4
    """Peak Adam learning rate of the camera in stage 1 (radians of rotation, world units of
    translation). Small on purpose: a single view cannot tell a turned camera from a turned
    object, and 10x larger rates let the camera drift 15-20 degrees off a correct label."""
    tune_lr: float = 3e-4
    """Constant Adam learning rate of the generator weights in stage 2 (PTI: 3e-4)."""
    tune_camera_lr: float = 3e-5
    """Constant Adam learning rate of the camera in stage 2."""
    optimize_camera: bool = True
    """Refine the camera (rotation about the origin and translation) in both stages."""
    camera_translation: bool = True
    """Also refine the camera's position along its own axes (not only its rotation about the origin)."""
    optimize_noise: bool = True
    """Optimise the generator's constant noise images in stage 1."""
    noise_regularization: float = 1e5
    """Weight of the noise images' autocorrelation penalty (StyleGAN2 projector: 1e5)."""
    initial_noise_factor: float = 0.05
    """Std of the exploration noise on w at the start of stage 1, in units of w_std."""
    noise_ramp: float = 0.75
    """Fraction of stage 1 after which the exploration noise on w is zero."""
    w_stats_samples: int = 10000
    """Latents sampled (frontal condition) to estimate w_std, and w_avg when the checkpoint's
    running mean was never updated."""
    mse_weight: float = 1.0
    """Weight of the MSE term (images in [-1, 1])."""
    lpips_weight: float = 1.0
    """Weight of the LPIPS term, when LPIPS is used."""
    perceptual: bool = True
    """Use LPIPS when its weights are on disk (never downloaded); --no-perceptual: MSE alone."""
    view_yaws: tuple[float, ...] = (-0.6, -0.3, 0.0, 0.3, 0.6)
    """Yaw offsets (radians, about the world y axis through the origin) of the novel views."""
    mesh_resolution: int = 128
    """Marching-cubes grid points per axis over the generator's box; 0 skips the mesh."""
    mesh_format: Literal["ply", "obj"] = "ply"
    """Mesh file format."""
    largest_component: bool = False
    """Keep only the mesh's largest connected piece (drops floaters, e.g. at the box faces outside
    every camera's view); off by default: the mesh is the SDF's whole zero set."""
    mesh_points: int = 10000
    """Surface points sampled per shape for chamfer distance and normal consistency."""
    save_generator: bool = False
    """Also save each tuned generator (plain state dict, the pivot w and the camera) as <stem>_generator.pt."""
    seed: int = 0
    """Random seed (the exploration noise on w); results are deterministic for it."""
    device: str = "auto"
    """auto (CUDA when available), cpu, cuda or cuda:N."""
    progress: bool = True
    """Show rich progress bars (--no-progress in logs and CI)."""


# ----- inputs -----


def load_image(path: str | os.PathLike, resolution: int) -> Tensor:
    """A square image file as ``(3, resolution, resolution)`` in ``[-1, 1]`` (antialiased resize);
    ``SystemExit`` with a one-line message when it is missing, unreadable or not square."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"--image {path}: no such file")
    try:
        with Image.open(path) as image:
            pixels = np.array(image.convert("RGB"))
    except Exception as error:  # noqa: BLE001 - PIL reports corrupt files with many exception types
        raise SystemExit(f"--image {path}: not a readable image ({error})") from None
    height, width = pixels.shape[:2]
    if height != width:
        raise SystemExit(f"--image {path}: image is {width}x{height}; it must be square")
    image = torch.from_numpy(pixels).permute(2, 0, 1).float()[None]
    if width != resolution:
        image = F.interpolate(image, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    return (image[0] / 127.5 - 1.0).clamp(-1.0, 1.0)


def check_camera_label(values: Sequence[float], where: str = "--camera") -> Tensor:
    """25 finite numbers as a float32 label; ``SystemExit`` otherwise."""
    values = list(values)
    if len(values) != LABEL_SIZE:
        raise SystemExit(f"{where} needs {LABEL_SIZE} numbers (16 of cam2world, 9 of intrinsics), got {len(values)}")
    label = torch.tensor(values, dtype=torch.float32)
    if not torch.isfinite(label).all():
        raise SystemExit(f"{where} holds a non-finite number")
    cam2world, intrinsics = split_camera_labels(label)
    if abs(float(torch.linalg.det(cam2world[:3, :3].double())) - 1.0) > 1e-2:
        raise SystemExit(f"{where}: the rotation part of the cam2world matrix is not a rotation")
    if float(intrinsics[0, 0]) == 0.0 or float(intrinsics[1, 1]) == 0.0:
        raise SystemExit(f"{where}: the intrinsics have a zero focal length")
    return label


# ----- latents -----


@torch.no_grad()
def latent_statistics(generator: TriplaneGenerator, num_samples: int, seed: int = 0) -> tuple[Tensor, float]:
    """``(w_avg (w_dim,), w_std)`` of the mapping network, conditioned on the frontal camera.

    ``w_avg`` is the checkpoint's running mean, or the mean of ``num_samples`` sampled latents when
    the running mean was never updated (all zero); ``w_std = sqrt(mean |w - w_avg|^2)`` over them.
    """
    mapping = generator.mapping
    device = mapping.w_avg.device
    z = torch.randn(num_samples, mapping.z_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    condition = frontal_labels(num_samples).to(device) if mapping.c_dim > 0 else None
    w = mapping(z if mapping.z_dim > 0 else None, condition)[:, 0]
    w_avg = mapping.w_avg.detach().clone()
    if not bool(w_avg.any()):
        w_avg = w.mean(dim=0)
    w_std = float((w - w_avg).square().sum(dim=1).mean().sqrt())
    return w_avg, w_std


def learning_rate(base: float, step: int, num_steps: int, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """StyleGAN2 projector schedule: linear warm-up over the first ``rampup`` of the steps, half-cosine
    decay over the last ``rampdown`` (step ``i`` of ``n``; the warm-up counts the step being taken)."""
    t = step / num_steps
    down = 0.5 - 0.5 * math.cos(math.pi * min(1.0, (1.0 - t) / rampdown))
    up = min(1.0, (step + 1) / num_steps / rampup) if rampup > 0 else 1.0
    return base * down * up


# ----- the two stages -----


@dataclass
class Inversion:
    """The fit of one image."""

    w: Tensor
    """The pivot ``(1, num_ws, w_dim)``."""
    camera: Tensor
    """The fitted camera label ``(1, 25)``."""
    generator: TriplaneGenerator
    """The tuned copy of the generator (eval mode, no gradients)."""
    reconstruction: Tensor
    """The tuned generator's image from the fitted camera, ``(1, 3, R, R)`` in ``[-1, 1]``."""
    losses: dict[str, list[float]] = dataclass_field(default_factory=dict)
    """Per-step losses: ``latent`` and ``tune`` (the image loss, weighted MSE + LPIPS), their parts
    ``latent_mse``, ``tune_mse`` (and ``*_lpips``), and ``latent_noise_penalty`` (unweighted)."""

    def field(self) -> TriplaneField:
        """The tuned generator's field at the pivot (constant noise)."""
        return self.generator.synthesize(self.w, noise_mode="const")


StepCallback = Callable[[str, int, float], None]
"""``callback(stage, step, loss)`` after every optimisation step (``stage``: latent or tune)."""


def _image_loss(
    images: Tensor, target: Tensor, config: InvertConfig, perceptual: PerceptualLoss | None
) -> tuple[Tensor, dict[str, float]]:
    mse = F.mse_loss(images, target)
    loss = config.mse_weight * mse
    parts = {"mse": float(mse.detach())}
    if perceptual is not None:
        lpips_value = perceptual(images, target)
        loss = loss + config.lpips_weight * lpips_value
        parts["lpips"] = float(lpips_value.detach())
    return loss, parts


def _check_target(target: Tensor, resolution: int) -> None:
    if target.shape != (1, 3, resolution, resolution):
        raise ValueError(f"target must have shape (1, 3, {resolution}, {resolution}), got {tuple(target.shape)}")


def _with_generator(gan: TrainedGAN, generator: TriplaneGenerator) -> TrainedGAN:
    return dataclasses.replace(gan, generator=generator)


def optimize_latent(
    gan: TrainedGAN,
    generator: TriplaneGenerator,
    target: Tensor,
    camera: CameraPose,
    config: InvertConfig,
    perceptual: PerceptualLoss | None = None,
    callback: StepCallback | None = None,
) -> tuple[Tensor, dict[str, list[float]]]:
    """Stage 1: fit ``w`` (from the mean), ``camera`` and ``generator``'s noise images (in place,
    ``generator`` being the caller's copy) to ``target (1, 3, R, R)``. Returns the pivot
    ``(1, num_ws, w_dim)`` and per-step losses."""
    _check_target(target, gan.resolution)
    device = target.device
    model = _with_generator(gan, generator)
    w_avg, w_std = latent_statistics(generator, config.w_stats_samples, config.seed)
    num_ws = generator.num_ws
    rows = 1 if config.latent_space == "w" else num_ws
    w_opt = w_avg.to(device)[None, None].repeat(1, rows, 1).requires_grad_(True)
    noises = make_noise_trainable(generator) if config.optimize_noise else []
    groups = [{"params": [w_opt, *noises], "lr": 0.0, "base_lr": config.latent_lr}]
    camera_params = [p for p in camera.parameters() if p.requires_grad] if config.optimize_camera else []
    if camera_params:
        groups.append({"params": camera_params, "lr": 0.0, "base_lr": config.camera_lr})
    optimizer = torch.optim.Adam(groups, betas=(0.9, 0.999))
    rng = torch.Generator().manual_seed(config.seed)
    losses: dict[str, list[float]] = {"latent": []}
    steps = config.latent_steps
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(group["base_lr"], step, steps)
        noise_scale = w_std * config.initial_noise_factor * max(0.0, 1.0 - step / max(steps * config.noise_ramp, 1e-8)) ** 2
        exploration = torch.randn(w_opt.shape, generator=rng).to(device) * noise_scale
        ws = (w_opt + exploration).expand(1, num_ws, -1)
        images = model.render(model.field(ws, noise_mode="const"), camera()).image
        image_loss, parts = _image_loss(images, target, config, perceptual)
        loss = image_loss
        if noises and config.noise_regularization > 0:
            penalty = noise_regularization(noises)
            loss = loss + config.noise_regularization * penalty
            parts["noise_penalty"] = float(penalty.detach())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        normalize_noise(noises)
        losses["latent"].append(float(image_loss.detach()))
        for key, value in parts.items():
            losses.setdefault(f"latent_{key}", []).append(value)
        if callback is not None:
            callback("latent", step, losses["latent"][-1])
    freeze_noise(generator)
    return w_opt.detach().expand(1, num_ws, -1).clone(), losses


def tune_generator(
    gan: TrainedGAN,
    generator: TriplaneGenerator,
    w: Tensor,
    target: Tensor,
    camera: CameraPose,
    config: InvertConfig,
    perceptual: PerceptualLoss | None = None,
    callback: StepCallback | None = None,
) -> dict[str, list[float]]:
    """Stage 2 (pivotal tuning): fit ``generator``'s weights (in place: pass a copy) and ``camera``
    to ``target`` with ``w`` fixed. Returns per-step losses; ``generator`` ends without gradients."""
    _check_target(target, gan.resolution)
    model = _with_generator(gan, generator)
    generator.requires_grad_(True)
    groups = [{"params": [p for p in generator.parameters() if p.requires_grad], "lr": config.tune_lr}]
    camera_params = [p for p in camera.parameters() if p.requires_grad] if config.optimize_camera else []
    if camera_params:
        groups.append({"params": camera_params, "lr": config.tune_camera_lr})
    optimizer = torch.optim.Adam(groups, betas=(0.9, 0.999))
    losses: dict[str, list[float]] = {"tune": []}
    w = w.detach()
    try:
        for step in range(config.tune_steps):
            images = model.render(model.field(w, noise_mode="const"), camera()).image
            loss, parts = _image_loss(images, target, config, perceptual)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses["tune"].append(float(loss.detach()))
            for key, value in parts.items():
                losses.setdefault(f"tune_{key}", []).append(value)
            if callback is not None:
                callback("tune", step, losses["tune"][-1])
    finally:
        generator.requires_grad_(False)
    return losses


def invert_image(
    gan: TrainedGAN,
    target: Tensor,
    label: Tensor,
    config: InvertConfig,
    perceptual: PerceptualLoss | None = None,
    callback: StepCallback | None = None,
) -> Inversion:
    """Both stages on one image ``target (3, R, R)`` in ``[-1, 1]`` seen from camera ``label (25,)``.

    ``gan`` is left untouched: the noise images and weights are fitted on a deep copy of its generator.
    """
    device = gan.device
    if target.shape != (3, gan.resolution, gan.resolution):
        raise ValueError(f"target must have shape (3, {gan.resolution}, {gan.resolution}), got {tuple(target.shape)}")
    torch.manual_seed(config.seed)
    target = target.to(device)[None]
    camera = CameraPose(label.to(torch.float32), translation=config.camera_translation).to(device)
    generator = copy.deepcopy(gan.generator).requires_grad_(False)
    w, losses = optimize_latent(gan, generator, target, camera, config, perceptual, callback)
    losses.update(tune_generator(gan, generator, w, target, camera, config, perceptual, callback))
    camera.requires_grad_(False)
    with torch.no_grad():
        final_label = camera().detach()
        model = _with_generator(gan, generator)
        reconstruction = model.render(model.field(w, noise_mode="const"), final_label).image
    return Inversion(w=w, camera=final_label, generator=generator.eval(), reconstruction=reconstruction, losses=losses)


@torch.no_grad()
def render_views(gan: TrainedGAN, inversion: Inversion, yaw_offsets: Sequence[float]) -> Tensor:
    """The tuned generator seen from the fitted camera orbited by ``yaw_offsets``: ``(V, 3, R, R)``."""
    labels = novel_view_labels(inversion.camera[0], yaw_offsets).to(gan.device)
    model = _with_generator(gan, inversion.generator)
    views = [model.render(model.field(inversion.w, noise_mode="const"), label[None]).image for label in labels]
    return torch.cat(views)


def extract_inversion_mesh(
    inversion: Inversion, resolution: int, largest_component: bool = False, chunk_points: int = 2**16
):
    """The tuned generator's SDF zero set over its box as a ``trimesh.Trimesh`` with vertex colours
    (``wysiwyg_gan.mesh``), optionally only its largest piece (by area); raises ``ValueError`` when
    the SDF has no surface in the box."""
    from wysiwyg_gan.mesh import extract_mesh, largest_piece, vertex_colors

    inverted_field = inversion.field()
    device = inversion.w.device

    def sdf_fn(points: Tensor) -> Tensor:
        return inverted_field.sdf_outputs(points.to(device)[None])[0][0]

    box = inversion.generator.config.box_size
    mesh = extract_mesh(sdf_fn, resolution, box, chunk_points=chunk_points, device=device)
    if largest_component:
        mesh, _ = largest_piece(mesh)
    mesh.visual.vertex_colors = vertex_colors(inverted_field, mesh.vertices)
    return mesh


# ----- outputs -----


def file_stem(name: str) -> str:
    """Output file stem of an input image name (sub-folders flattened)."""
    return Path(name).with_suffix("").as_posix().replace("/", "_")


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB of a mean squared error of ``[0, 1]`` pixel values."""
    return float("inf") if mse <= 0 else 10.0 * math.log10(1.0 / mse)


def _write_json(path: Path, content: dict) -> None:
    """Write atomically (a reader never sees a partial file)."""
    write_atomically(path, lambda handle: handle.write(json.dumps(content, indent=2).encode()))


@dataclass
class _Target:
    name: str
    image: Tensor
    label: Tensor


def _load_targets(config: InvertConfig, resolution: int) -> list[_Target]:
    if (config.image is None) == (config.data is None):
        raise SystemExit("give either --image PATH or --data DIR (not both)")
    if config.image is not None:
        if config.images:
            raise SystemExit("--images selects images of --data; with --image give one file")
        label = frontal_labels(1)[0] if config.camera is None else check_camera_label(config.camera)
        return [_Target(Path(config.image).name, load_image(config.image, resolution), label)]
    if config.camera is not None:
        raise SystemExit("--camera is for --image; images of --data use their dataset.json labels")
    dataset = CameraImageDataset(config.data, xflip=False, resolution=resolution)
    names = list(dataset.names)
    if config.images:
        missing = [name for name in config.images if name not in names]
        if missing:
            raise SystemExit(f"--images: {', '.join(missing)} not in {config.data}/dataset.json")
        indices = [names.index(name) for name in config.images]
    else:
        if config.num_images < 1 or config.first_index < 0:
            raise SystemExit("--num-images must be >= 1 and --first-index >= 0")
        if config.first_index + config.num_images > len(names):
            raise SystemExit(
                f"--first-index {config.first_index} --num-images {config.num_images}: {config.data} has {len(names)} images"
            )
        indices = list(range(config.first_index, config.first_index + config.num_images))
    targets = []
    for index in indices:
        image, label = dataset[index]
        targets.append(_Target(names[index], image, label))
    return targets


def _check_config(config: InvertConfig) -> None:
    for name in ("latent_steps", "tune_steps", "mesh_resolution"):
        if getattr(config, name) < 0:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 0")
    if config.mesh_resolution == 1:
        raise SystemExit("--mesh-resolution must be 0 (no mesh) or >= 2")
    for name in ("w_stats_samples", "mesh_points"):
        if getattr(config, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("latent_lr", "camera_lr", "tune_lr", "tune_camera_lr", "mse_weight", "lpips_weight", "noise_regularization"):
        value = getattr(config, name)
        if not (math.isfinite(value) and value >= 0):
            raise SystemExit(f"--{name.replace('_', '-')} must be a finite number >= 0, got {value}")
    if not 0.0 < config.noise_ramp <= 1.0:
        raise SystemExit(f"--noise-ramp must be in (0, 1], got {config.noise_ramp}")


def run(config: InvertConfig) -> dict:
    """Reconstruct the images of ``config``; write the outputs and return ``invert.json``'s content."""
    _check_config(config)
    device = resolve_device(config.device)
    try:
        gan = load_trained_gan(config.checkpoint, device)
    except CheckpointError as error:
        raise SystemExit(str(error)) from None
    try:
        targets = _load_targets(config, gan.resolution)
        specs = {}
        if config.data is not None:
            from wysiwyg_gan.data.synthetic import GEOMETRY_JSON, load_shape_specs

            data = Path(config.data)
            has_geometry = (data / GEOMETRY_JSON).is_file() if data.is_dir() else GEOMETRY_JSON in _zip_names(data)
            specs = load_shape_specs(data) if has_geometry else {}
    except DatasetError as error:
        raise SystemExit(str(error)) from None

    perceptual, description = load_lpips(device) if config.perceptual else (None, "disabled by --no-perceptual")
    loss_name = "mse" if perceptual is None else "mse+lpips"
    print(f"loss: {loss_name} ({description})")

    out = Path(config.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SystemExit(f"--out {out}: cannot create the output folder ({error})") from None
    summary = {
        "data": None if config.data is None else str(config.data),
        "checkpoint": str(config.checkpoint),
        "loss": loss_name,
        "results": [],
    }
    progress = None
    if config.progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        progress.start()
    try:
        for target in targets:
            summary["results"].append(_invert_one(gan, target, config, perceptual, specs, out, progress))
            _write_json(out / INVERT_JSON, summary)
    finally:
        if progress is not None:
            progress.stop()
    _write_json(out / INVERT_JSON, summary)
    return summary


def _zip_names(path: Path) -> set[str]:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return set(archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return set()


def _invert_one(gan, target: _Target, config: InvertConfig, perceptual, specs: dict, out: Path, progress) -> dict:
    start = time.perf_counter()
    callback = None
    if progress is not None:
        tasks = {
            "latent": progress.add_task(f"{target.name} latent", total=config.latent_steps, loss="-"),
            "tune": progress.add_task(f"{target.name} tune", total=config.tune_steps, loss="-"),
        }

        def callback(stage: str, step: int, loss: float) -> None:
            progress.update(tasks[stage], completed=step + 1, loss=f"{loss:.4f}")

    inversion = invert_image(gan, target.image, target.label, config, perceptual, callback)
    stem = file_stem(target.name)
    target_image = target.image.to(gan.device)[None]
    mse = float(F.mse_loss((inversion.reconstruction + 1) / 2, (target_image + 1) / 2))
    result = {
        "image": target.name,
        "mesh": None,
        "camera": [float(value) for value in inversion.camera[0].tolist()],
        "mse": mse,
        "psnr": psnr_from_mse(mse),
    }
    if perceptual is not None:
        with torch.no_grad():
            result["lpips"] = float(perceptual(inversion.reconstruction, target_image))
    Image.fromarray(to_hwc_uint8((inversion.reconstruction[0] + 1) / 2)).save(out / f"{stem}_reconstruction.png")
    result["reconstruction"] = f"{stem}_reconstruction.png"
    if config.view_yaws:
        views = render_views(gan, inversion, config.view_yaws)
        strip = torch.cat(list(views), dim=2)
        Image.fromarray(to_hwc_uint8((strip + 1) / 2)).save(out / f"{stem}_views.png")
        result["views"] = f"{stem}_views.png"
        result["view_yaws"] = [float(angle) for angle in config.view_yaws]
    if config.mesh_resolution > 0:
        try:
            mesh = extract_inversion_mesh(inversion, config.mesh_resolution, config.largest_component)
        except ValueError as error:
            print(f"{target.name}: no mesh ({error})")
        else:
            from wysiwyg_gan.mesh import save_mesh

            mesh_name = f"{stem}.{config.mesh_format}"
            save_mesh(mesh, out / mesh_name)
            result["mesh"] = mesh_name
            spec = specs.get(target.name)
            if spec is not None:
                from wysiwyg_gan.geometry_metrics import mesh_accuracy

                try:
                    accuracy = mesh_accuracy(mesh, spec, num_points=config.mesh_points, seed=config.seed)
                except ValueError as error:
                    print(f"{target.name}: no geometry metrics ({error})")
                else:
                    for key in ("chamfer", "normal_consistency", "accuracy", "completeness"):
                        if key in accuracy:
                            result[key] = float(accuracy[key])
    if config.save_generator:
        weights = {
            "generator": {key: value.detach().cpu() for key, value in inversion.generator.state_dict().items()},
            "w": inversion.w.detach().cpu(),
            "camera": inversion.camera.detach().cpu(),
        }
        torch.save(weights, out / f"{stem}_generator.pt")
        result["generator"] = f"{stem}_generator.pt"
    result["final_losses"] = {key: values[-1] for key, values in inversion.losses.items() if values}
    result["seconds"] = time.perf_counter() - start
    line = f"{target.name}: psnr {result['psnr']:.2f} dB, mse {mse:.5f}"
    if "chamfer" in result:
        line += f", chamfer {result['chamfer']:.5f}, normal consistency {result['normal_consistency']:.4f}"
    print(f"{line}, {result['seconds']:.1f} s")
    return result


def parse_config(argv: Sequence[str] | None = None) -> InvertConfig:
    """The command line (``sys.argv[1:]`` by default) as an ``InvertConfig``."""
    import tyro

    args = list(sys.argv[1:] if argv is None else argv)
    return tyro.cli(InvertConfig, args=args, prog="python -m wysiwyg_gan.invert", description=__doc__.split("\n\n")[0])


def main(argv: Sequence[str] | None = None) -> dict:
    """Command-line entry point; returns ``invert.json``'s content."""
    return run(parse_config(argv))


if __name__ == "__main__":
    main()
