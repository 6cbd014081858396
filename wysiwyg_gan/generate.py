"""``python -m wysiwyg_gan.generate``: images, depth, normals, orbit videos and meshes of a trained GAN.

Examples::

    python -m wysiwyg_gan.generate --checkpoint runs/cpu                  # newest checkpoint of a run; seeds 0-3
    python -m wysiwyg_gan.generate --checkpoint runs/cpu/checkpoint-000003200.pt --seeds 0-7 11 --truncation-psi 0.5
    python -m wysiwyg_gan.generate --checkpoint runs/cpu --seeds 3 --yaw 20 --pitch -5 --resolution 128
    python -m wysiwyg_gan.generate --checkpoint runs/cpu --seeds 3 --video-frames 48            # + orbit video (mp4)
    python -m wysiwyg_gan.generate --checkpoint runs/cpu --video-frames 24 --video-format gif --no-images
    python -m wysiwyg_gan.generate --checkpoint runs/cpu --seeds 3 --mesh-resolution 256 --mesh-format ply obj
    python -m wysiwyg_gan.generate --checkpoint runs/cpu --renderer.mode two-pass --renderer.coarse-samples 48 --renderer.fine-samples 48
    python -m wysiwyg_gan.generate --checkpoint runs/cpu --renderer.mode learned --renderer.budget 32
    python -m wysiwyg_gan.generate --checkpoint runs/cpu --renderer.adaptive-low 16 --renderer.adaptive-high 32 --renderer.adaptive-fraction 0.1
    python -m wysiwyg_gan.generate --checkpoint runs/cpu --seeds 0 1 --splats 300 --no-images   # + Gaussian splats (.ply)
    python -m wysiwyg_gan.generate --help                                 # every option

Each seed's latent is conditioned on the frontal camera (as the paper does at inference), truncated
towards the average ``w`` by ``--truncation-psi``, and rendered the way the run rendered at the end
of its schedule (the learned sampler once it took over, two-pass sampling before), with constant
noise: the same checkpoint and seed give the same outputs.

``--renderer.*`` renders otherwise (``wysiwyg_gan.inference.RenderOverride``; the same options as
``python -m wysiwyg_gan.metrics``), e.g. for the paper's Table 3 (quality against samples per ray):
``--renderer.mode`` ``checkpoint`` (default: as saved), ``learned`` (the learned sampler, also on a
checkpoint that still rendered two-pass, once its CNN was trained) or ``two-pass``; the learned
sampler's ``--renderer.budget N`` (fixed samples per ray) or ``adaptive`` with
``--renderer.adaptive-low``, ``--renderer.adaptive-high`` and ``--renderer.adaptive-fraction`` (the
share of rays given the high budget); two-pass ``--renderer.coarse-samples`` and
``--renderer.fine-samples``. Options left out keep the checkpoint's values. For seed N, ``--out``
receives:

* ``seedNNNN.png``: the image (8-bit RGB) from the frontal camera offset by ``--yaw``/``--pitch``;
* ``seedNNNN_depth.png``: 16-bit greyscale ``65535 * (far - depth) / (far - near) * opacity``: bright
  is near, the far plane and the background are 0 (depth = far - value / 65535 * (far - near) where
  the opacity is 1; near/far are in ``generate.json``);
* ``seedNNNN_normals.png``: world-space unit normals (SDF gradients at the expected surface point)
  as ``255 * (n + 1) / 2``, times the opacity (background black);
* ``seedNNNN_orbit.mp4`` (or ``.gif``), with ``--video-frames N``: a looping camera path that sweeps
  the yaw by +-``--video-yaw-range`` around the view while bobbing the pitch by
  ``--video-pitch-range``; GIF when asked or when ffmpeg is unavailable;
* ``seedNNNN.ply`` / ``.obj``, with ``--mesh-resolution N``: marching cubes of the SDF's zero level set
  on an N^3 grid over the generator's box (``wysiwyg_gan.mesh``), vertex colours from the colour MLP
  seen along the normal (``--mesh-color-view camera``: from the image camera); watertight (a surface
  the box cuts is capped on the box faces; ``--mesh-largest-only`` drops such floaters).
* ``seedNNNN_splats.ply``, with ``--splats N``: 3D Gaussian splats in the reference 3D Gaussian
  Splatting layout (positions, log-scales, quaternions, logit opacities, SH colours) that common
  splat viewers open, fitted in N Adam steps to the generator's renders from ``--splat-fit.fit-views``
  orbit cameras (``wysiwyg_gan.splats``: initialised on the surface pixels the renderer finds;
  gsplat's rasterizer on CUDA, a pure-torch twin on the CPU), rendered at ``--resolution``.

``generate.json`` records the checkpoint, seeds, truncation, resolution, camera, the files written
per seed, mesh statistics, the splat fit's measurements (``splats``: Gaussians, fit steps and seconds,
PSNR/SSIM against the generator on held-out cameras, rasterizer time per frame), timings and the renderer in effect: ``renderer.mode`` (``learned sampler``
or ``two-pass``), ``renderer.source`` (``checkpoint`` or ``override``), the learned sampler's
``budget`` (with ``adaptive_low``/``adaptive_high``/``adaptive_fraction`` when adaptive) and
``probe_samples_per_ray`` or the two-pass ``coarse_samples``/``fine_samples``,
``expected_samples_per_ray``, and ``samples_per_ray``: the mean field samples per ray actually
taken (probe excluded), also per seed and at the top level.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from wysiwyg_gan.checkpoint import CheckpointError
from wysiwyg_gan.distributed import resolve_device
from wysiwyg_gan.images import depth_to_unit, to_hwc_uint8
from wysiwyg_gan.inference import RenderOverride, TrainedGAN, load_trained_gan
from wysiwyg_gan.orbit_cameras import frontal_labels, offset_orbit_labels
from wysiwyg_gan.splats.fitting import SplatFitConfig

MeshFormat = Literal["ply", "obj"]
VideoFormat = Literal["mp4", "gif"]


@dataclass
class GenerateConfig:
    """``python -m wysiwyg_gan.generate``: images, depth, normals, orbit videos and meshes of a trained GAN."""

    checkpoint: Path
    """Checkpoint written by ``wysiwyg_gan.train``, or a run folder (its newest checkpoint)."""
    seeds: list[str] = field(default_factory=lambda: ["0", "1", "2", "3"])
    """Seeds of the latents: integers >= 0 or inclusive ranges ``FIRST-LAST`` (``0-7``), space or
    comma separated."""
    truncation_psi: float = 0.7
    """Truncation towards the average w: 1 is none, 0 the average face (paper: 0.7)."""
    truncation_cutoff: int | None = None
    """Truncate only the first this many ws (the coarse layers); None truncates all."""
    out: Path = Path("out/generate")
    """Output folder (created; existing files of the same names are overwritten)."""
    resolution: int | None = None
    """Render resolution of images and videos; None is the checkpoint's output resolution. With the
    learned sampler it must be divisible by the sampler's downscale."""
    yaw: float = 0.0
    """Camera yaw offset from the frontal view in degrees (positive moves the camera towards +x)."""
    pitch: float = 0.0
    """Camera pitch offset from the frontal view in degrees (positive moves the camera down)."""
    images: bool = True
    """Write the image, depth and normals PNGs of each seed."""
    video_frames: int = 0
    """Frames of an orbit video per seed; 0 writes no video."""
    video_format: VideoFormat = "mp4"
    """``mp4`` (H.264 through imageio-ffmpeg; GIF instead, with a note, when ffmpeg is unavailable)
    or ``gif``. GIF writers merge consecutive identical frames."""
    video_fps: int = 24
    """Frames per second of the videos."""
    video_yaw_range: float = 30.0
    """The orbit sweeps the yaw by plus or minus this many degrees around the view."""
    video_pitch_range: float = 5.0
    """The camera rises by up to this many degrees (half-way round) while the yaw sweeps: a loop,
    so no two frames share a camera; 0 keeps the pitch fixed."""
    batch: int = 4
    """Video frames rendered at once."""
    mesh_resolution: int = 0
    """Marching-cubes grid points per axis (e.g. 256; the cost grows as its cube); 0 writes no mesh."""
    mesh_format: tuple[MeshFormat, ...] = ("ply",)
    """Mesh file formats: ``ply``, ``obj`` or both (vertex colours in both)."""
    mesh_colors: bool = True
    """Colour mesh vertices with the colour MLP."""
    mesh_color_view: Literal["normal", "camera"] = "normal"
    """View direction of the vertex colours: ``normal`` looks at each vertex from outside along its
    normal (-normal); ``camera`` from the image camera (the colours of the image, for models whose
    colour depends strongly on the view)."""
    mesh_largest_only: bool = False
    """Keep only the mesh's largest connected piece by area (drops floaters, e.g. blobs the box cuts)."""
    splats: int | None = None
    """Fit 3D Gaussian splats to each seed in this many optimisation steps (>= 1) and write them
    as ``seedNNNN_splats.ply``; None writes none."""
    splat_fit: SplatFitConfig = field(default_factory=SplatFitConfig)
    """How the splats are initialised and fitted (``wysiwyg_gan.splats.fitting``)."""
    renderer: RenderOverride = field(default_factory=RenderOverride)
    """Renderer and samples per ray (default: as the checkpoint rendered)."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    progress: bool = True
    """Show a rich progress bar over seeds and frames."""


def parse_seeds(values: Sequence[int | str]) -> list[int]:
    """Seeds from integers and strings like ``"3"``, ``"0-7"`` (inclusive) or ``"0-3,9"``; duplicates
    dropped, order kept. Raises ``ValueError`` with the offending part."""
    seeds: list[int] = []
    for value in values:
        parts = [value] if isinstance(value, int) else [p for p in str(value).replace(",", " ").split() if p]
        for part in parts:
            if isinstance(part, int):
                first = last = part
            else:
                head, dash, tail = part.partition("-")
                try:
                    first = int(head)
                    last = int(tail) if dash else first
                except ValueError:
                    raise ValueError(f"seed {part!r} is neither an integer >= 0 nor a range FIRST-LAST") from None
            if first < 0 or last < 0 or last >= 2**63:
                raise ValueError(f"seeds must be in [0, 2^63), got {part!r}")
            if last < first:
                raise ValueError(f"seed range {part!r} is empty (its last seed is below its first)")
            seeds.extend(range(first, last + 1))
    if not seeds:
        raise ValueError("no seeds given")
    return list(dict.fromkeys(seeds))


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _check(config: GenerateConfig) -> list[int]:
    """Validate the options that tyro cannot; returns the seeds."""
    try:
        seeds = parse_seeds(config.seeds)
    except ValueError as error:
        raise SystemExit(f"--seeds: {error}") from None
    if config.resolution is not None and config.resolution < 1:
        raise SystemExit(f"--resolution must be >= 1, got {config.resolution}")
    if config.video_frames < 0:
        raise SystemExit(f"--video-frames must be >= 0, got {config.video_frames}")
    if config.video_fps < 1:
        raise SystemExit(f"--video-fps must be >= 1, got {config.video_fps}")
    if config.batch < 1:
        raise SystemExit(f"--batch must be >= 1, got {config.batch}")
    if config.mesh_resolution < 0 or config.mesh_resolution == 1:
        raise SystemExit(f"--mesh-resolution must be 0 (no mesh) or >= 2, got {config.mesh_resolution}")
    if config.mesh_resolution and not config.mesh_format:
        raise SystemExit("--mesh-format needs at least one of ply, obj")
    if config.truncation_cutoff is not None and config.truncation_cutoff < 0:
        raise SystemExit(f"--truncation-cutoff must be >= 0, got {config.truncation_cutoff}")
    if not math.isfinite(config.truncation_psi):
        raise SystemExit(f"--truncation-psi must be finite, got {config.truncation_psi}")
    if config.splats is not None and (isinstance(config.splats, bool) or config.splats < 1):
        raise SystemExit(f"--splats takes the number of optimisation steps, >= 1; got {config.splats}")
    try:
        config.splat_fit.check()
    except ValueError as error:
        name, _, rest = _one_line(error).partition(" ")
        raise SystemExit(f"--splat-fit.{name.replace('_', '-')} {rest}") from None
    if not config.images and config.video_frames == 0 and config.mesh_resolution == 0 and config.splats is None:
        raise SystemExit("nothing to generate: --no-images with --video-frames 0, --mesh-resolution 0 and no --splats")
    try:
        config.renderer.check()
    except ValueError as error:
        raise SystemExit(_one_line(error)) from None
    return seeds


def orbit_angles(config: GenerateConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Yaw and pitch (degrees) of the video frames: a closed loop that starts at the view."""
    phase = 2 * math.pi * torch.arange(config.video_frames, dtype=torch.float64) / config.video_frames
    yaw = config.yaw + config.video_yaw_range * torch.sin(phase)
    pitch = config.pitch - config.video_pitch_range * (1 - torch.cos(phase)) / 2
    return yaw.float(), pitch.float()


def write_video(path: Path, frames: np.ndarray, fps: int) -> Path:
    """``frames (T, H, W, 3)`` uint8 as ``path`` (.mp4 through imageio-ffmpeg, .gif through Pillow).

    Raises ``RuntimeError`` when an mp4 cannot be written (no ffmpeg)."""
    path = Path(path)
    if path.suffix == ".gif":
        import imageio.v3 as iio

        iio.imwrite(path, frames, extension=".gif", duration=1000.0 / fps, loop=0)
        return path
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as error:
        raise RuntimeError(f"ffmpeg is unavailable ({_one_line(error)})") from error
    height, width = frames.shape[1:3]
    try:
        writer = imageio_ffmpeg.write_frames(
            str(path), (width, height), fps=fps, codec="libx264", quality=8, macro_block_size=2, ffmpeg_log_level="error"
        )
        writer.send(None)
        try:
            for frame in frames:
                writer.send(np.ascontiguousarray(frame))
        finally:
            writer.close()
    except (OSError, RuntimeError) as error:
        raise RuntimeError(f"ffmpeg failed ({_one_line(error)})") from error
    return path


class _Reporter:
    """A rich progress bar over work units, or plain lines."""

    def __init__(self, enabled: bool, total: int):
        self.progress = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            self.progress.start()
            self.task = self.progress.add_task("generate", total=total)

    def stage(self, text: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description=text)

    def advance(self, amount: int = 1) -> None:
        if self.progress is not None:
            self.progress.advance(self.task, amount)

    def say(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, highlight=False, markup=False)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


@torch.no_grad()
def _generate_seed(
    gan: TrainedGAN, config: GenerateConfig, seed: int, resolution: int, reporter: _Reporter, state: dict
) -> dict:
    """Every output of one seed; returns its ``generate.json`` entry."""
    import imageio.v3 as iio

    from wysiwyg_gan.mesh import extract_mesh, largest_piece, save_mesh, vertex_colors

    device = gan.device
    out = Path(config.out)
    stem = f"seed{seed:04d}"
    entry: dict = {"files": [], "seconds": {}}
    near, far = gan.config.render.near, gan.config.render.far
    z = gan.latents([seed])
    ws = gan.mapping(z, frontal_labels(1).to(device), config.truncation_psi, config.truncation_cutoff)
    field_ = gan.field(ws, noise_mode="const")

    if config.images:
        reporter.stage(f"seed {seed}: image")
        start = time.perf_counter()
        labels = offset_orbit_labels(torch.tensor([config.yaw]), torch.tensor([config.pitch])).to(device)
        rendered = gan.render(field_, labels, resolution)
        normals = gan.normals(field_, rendered, labels)
        opacity = rendered.opacity[0]
        image = to_hwc_uint8((rendered.image[0] + 1) / 2)
        depth = depth_to_unit(rendered.depth[0, 0], opacity[0], near, far)
        depth16 = (depth.cpu().numpy() * 65535 + 0.5).astype(np.uint16)
        normal_image = to_hwc_uint8((normals[0] + 1) / 2 * opacity)
        for suffix, array in (("", image), ("_depth", depth16), ("_normals", normal_image)):
            path = out / f"{stem}{suffix}.png"
            iio.imwrite(path, array)
            entry["files"].append(path.name)
        entry["samples_per_ray"] = float(rendered.samples_per_ray)
        entry["mean_opacity"] = float(opacity.mean())
        entry["seconds"]["image"] = round(time.perf_counter() - start, 3)
        reporter.advance()

    if config.video_frames:
        reporter.stage(f"seed {seed}: orbit")
        start = time.perf_counter()
        yaw, pitch = orbit_angles(config)
        frames = []
        samples = []
        for first in range(0, config.video_frames, config.batch):
            count = min(config.batch, config.video_frames - first)
            labels = offset_orbit_labels(yaw[first : first + count], pitch[first : first + count]).to(device)
            batch_field = field_.expand(count)
            rendered = gan.render(batch_field, labels, resolution)
            samples.append(float(rendered.samples_per_ray) * count)
            frames.extend(to_hwc_uint8((image + 1) / 2) for image in rendered.image)
            reporter.advance(count)
        frames_array = np.stack(frames)
        video_format = state["video_format"]
        path = out / f"{stem}_orbit.{video_format}"
        try:
            write_video(path, frames_array, config.video_fps)
        except RuntimeError as error:
            reporter.say(f"note: {error}: writing GIF videos instead of mp4")
            state["video_format"] = "gif"
            path.unlink(missing_ok=True)
            path = write_video(out / f"{stem}_orbit.gif", frames_array, config.video_fps)
        entry["files"].append(path.name)
        entry.setdefault("samples_per_ray", sum(samples) / config.video_frames)
        entry["seconds"]["video"] = round(time.perf_counter() - start, 3)

    if config.mesh_resolution:
        reporter.stage(f"seed {seed}: mesh")
        start = time.perf_counter()
        box_size = gan.config.generator.box_size
        try:
            mesh = extract_mesh(
                lambda points: field_.sdf_outputs(points[None])[0][0], config.mesh_resolution, box_size, device=device
            )
        except ValueError as error:
            reporter.say(f"seed {seed}: no mesh: {error}")
            entry["mesh"] = {"error": str(error)}
        else:
            components = None
            if config.mesh_largest_only:
                mesh, components = largest_piece(mesh)
            if config.mesh_colors:
                directions = None
                if config.mesh_color_view == "camera":
                    labels = offset_orbit_labels(torch.tensor([config.yaw]), torch.tensor([config.pitch]))
                    directions = mesh.vertices - labels[0, :16].reshape(4, 4)[:3, 3].double().numpy()
                mesh.visual.vertex_colors = vertex_colors(field_, mesh.vertices, directions=directions, device=device)
            for fmt in config.mesh_format:
                path = save_mesh(mesh, out / f"{stem}.{fmt}")
                entry["files"].append(path.name)
            entry["mesh"] = {
                "vertices": int(len(mesh.vertices)),
                "faces": int(len(mesh.faces)),
                "watertight": bool(mesh.is_watertight),
                "volume": float(mesh.volume) if mesh.is_watertight else None,
            }
            if components is not None:
                entry["mesh"]["components_before_largest_only"] = components
        entry["seconds"]["mesh"] = round(time.perf_counter() - start, 3)
        reporter.advance()

    if config.splats is not None:
        from wysiwyg_gan.splats import fit_splats, save_splat_ply

        reporter.stage(f"seed {seed}: splats")
        start = time.perf_counter()
        try:
            with torch.enable_grad():  # the fit optimises the splats; the generator stays frozen
                fit = fit_splats(gan, field_, config.splats, resolution, config.splat_fit)
        except ValueError as error:
            reporter.say(f"seed {seed}: no splats: {error}")
            entry["splats"] = {"error": str(error)}
        else:
            path = save_splat_ply(fit.gaussians, out / f"{stem}_splats.ply")
            entry["files"].append(path.name)
            entry["splats"] = fit.report()
            reporter.say(
                f"seed {seed}: {len(fit.gaussians)} splats, {fit.steps} steps in {fit.seconds:.1f} s, held-out PSNR "
                f"{fit.psnr:.2f} dB (initial {fit.psnr_initial:.2f}), SSIM {fit.ssim:.3f}, "
                f"{1000 * fit.render_seconds_per_frame:.1f} ms/frame ({fit.backend})"
            )
        entry["seconds"]["splats"] = round(time.perf_counter() - start, 3)
        reporter.advance()
    return entry


def generate(config: GenerateConfig) -> dict:
    """Write every output ``config`` asks for; returns what ``generate.json`` holds."""
    seeds = _check(config)
    device = resolve_device(config.device)
    try:
        gan = load_trained_gan(config.checkpoint, device)
    except CheckpointError as error:
        raise SystemExit(f"--checkpoint: {_one_line(error)}") from None
    try:
        gan.set_renderer(config.renderer)
    except ValueError as error:
        raise SystemExit(_one_line(error)) from None
    resolution = config.resolution or gan.resolution
    if gan.uses_learned_sampler and resolution % gan.sampler.config.downscale:
        raise SystemExit(
            f"--resolution {resolution}: rendering with the learned sampler needs a "
            f"resolution divisible by its downscale {gan.sampler.config.downscale}"
        )
    if config.truncation_cutoff is not None and config.truncation_cutoff > gan.generator.num_ws:
        raise SystemExit(f"--truncation-cutoff {config.truncation_cutoff}: the generator has {gan.generator.num_ws} ws")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)

    per_seed = int(config.images) + config.video_frames + int(config.mesh_resolution > 0) + int(config.splats is not None)
    reporter = _Reporter(config.progress, per_seed * len(seeds))
    renderer = gan.renderer_report()
    budget = (
        f"budget {renderer['budget']}" if renderer["mode"] == "learned sampler"
        else f"{renderer['coarse_samples']} + {renderer['fine_samples']} samples"
    )
    reporter.say(
        f"{gan.checkpoint} ({gan.images_seen} images seen) on {device}: {len(seeds)} seed{'s' * (len(seeds) != 1)} at "
        f"{resolution}x{resolution}, "
        f"{renderer['mode']} rendering ({budget}), psi {config.truncation_psi:g}; writing to {out}"
    )
    state = {"video_format": config.video_format}
    outputs = {}
    start = time.perf_counter()
    try:
        for seed in seeds:
            outputs[str(seed)] = entry = _generate_seed(gan, config, seed, resolution, reporter, state)
            if reporter.progress is None:
                reporter.say(f"seed {seed}: {' '.join(entry['files']) or 'nothing written'}")
    finally:
        reporter.close()
    samples = [entry["samples_per_ray"] for entry in outputs.values() if "samples_per_ray" in entry]
    from learned_sampler import EG3D_FOV_DEGREES

    summary = {
        "checkpoint": str(gan.checkpoint),
        "images_seen": gan.images_seen,
        "seeds": seeds,
        "truncation_psi": config.truncation_psi,
        "truncation_cutoff": config.truncation_cutoff,
        "conditioning": "frontal camera",
        "noise_mode": "const",
        "resolution": resolution,
        "checkpoint_resolution": gan.resolution,
        "renderer": gan.renderer_report(),
        "samples_per_ray": sum(samples) / len(samples) if samples else None,
        "device": str(device),
        "camera": {
            "yaw_degrees": config.yaw,
            "pitch_degrees": config.pitch,
            "fov_degrees": EG3D_FOV_DEGREES,
            "near": gan.config.render.near,
            "far": gan.config.render.far,
        },
        "depth_png": "uint16 65535 * (far - depth) / (far - near) * opacity (near bright, background 0)",
        "normals_png": "uint8 255 * (n + 1) / 2 * opacity, world space (background black)",
        "video": None
        if not config.video_frames
        else {
            "frames": config.video_frames,
            "fps": config.video_fps,
            "format": state["video_format"],
            "yaw_range_degrees": config.video_yaw_range,
            "pitch_range_degrees": config.video_pitch_range,
        },
        "mesh": None
        if not config.mesh_resolution
        else {
            "resolution": config.mesh_resolution,
            "box_size": gan.config.generator.box_size,
            "formats": list(config.mesh_format),
            "colors": config.mesh_colors,
            "color_view": config.mesh_color_view,
            "largest_only": config.mesh_largest_only,
            "level": 0.0,
        },
        "splats": None
        if config.splats is None
        else {
            "steps": config.splats,
            "resolution": resolution,
            "format": "3DGS ply: x y z nx ny nz f_dc_0..2 f_rest_* opacity (logit) scale_0..2 (log) rot_0..3 (w x y z)",
            **asdict(config.splat_fit),
        },
        "outputs": outputs,
        "seconds": round(time.perf_counter() - start, 3),
        "options": {key: str(value) if isinstance(value, Path) else value for key, value in asdict(config).items()},
    }
    (out / "generate.json").write_text(json.dumps(summary, indent=2))
    print(f"done: {len(seeds)} seeds in {summary['seconds']:.1f} s; {out / 'generate.json'}", flush=True)
    return summary


def parse_config(argv: list[str] | None = None) -> GenerateConfig:
    import tyro

    argv = list(sys.argv[1:] if argv is None else argv)
    return tyro.cli(GenerateConfig, args=argv, description=__doc__.split("\n\n")[0])


def main(argv: list[str] | None = None) -> None:
    generate(parse_config(argv))


if __name__ == "__main__":
    main()
