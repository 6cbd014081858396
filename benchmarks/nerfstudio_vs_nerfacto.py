"""``wysiwyg-sampler`` against ``nerfacto`` on per-scene NeRFs, trained the same way on the CPU.

For each analytic scene with thin structures or occlusions (``learned_sampler.scenes``), the script
renders a Blender-format dataset with exact ground truth (``wysiwyg_nerfstudio.synthetic_scenes``);
``unbounded`` is a capture in nerfstudio's own format (the occluder above a ground plane that runs
to the horizon, inside a distant environment, from a ring of inward-facing cameras), read by
``nerfstudio-data``, on which wysiwyg-sampler runs with ``scene_bounds="unbounded"`` (nerfacto's
near/far and contraction, lin-disp bins) and both methods train over ``last_sample`` (every ray
ends on the environment). Then it trains both methods for the same iterations with the same field (nerfacto's, CPU-sized: torch
hash grid of 2^15 entries, max resolution 256), the same data manager, the same number of rays
per batch, the same background (white; ``--background random`` behind the images' alpha; or
``--background last_sample``, each ray's deepest sample's colour, nerfacto's default) and
no camera optimisation. nerfacto keeps its stock sampling
(proposal networks with 256 and 96 samples, 48 field samples per ray) and its rays (0.05 to 1000,
through the contracted space beyond the scene box; ``--nerfacto-near-far`` cuts them to a span
such as the box's, where wysiwyg-sampler's rays end). It reports:

* PSNR (and SSIM) on held-out test views, rendered through ``get_outputs_for_camera``;
* field samples per ray, and the sampler's own samples apart (nerfacto's proposal-network samples;
  the learned sampler's probe per full-resolution ray, and its density-only supervision samples per
  training ray);
* the whole training run's wall-clock (every iteration with its callbacks, the first ones
  included: what a user waits for), the median and mean time per training iteration, and peak
  memory of each training process (resident memory on the CPU; the CUDA allocator's peak with
  ``--device cuda``, where each iteration's time is measured after a synchronisation).

Each (scene, method) trains in a fresh process, so peak memory is per method; ratios are
wysiwyg / nerfacto from the same run. Both methods train on ``--rays-per-batch`` rays per
iteration unless ``--wysiwyg-rays-per-batch`` gives wysiwyg-sampler its own count: its samples
cost about a third of nerfacto's per ray, so at equal time per iteration it can train on more rays
(the table shows rays and field samples per iteration). ``--layout images`` trains the learned
sampler on whole images at 1/4 resolution instead of patches (the measurement behind the model's
choice).
Prints a markdown table and writes JSON to ``benchmarks/out/``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import multiprocessing
import platform
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from peak_memory import PeakMemory, peak_rss_mib, reset_peak_rss
from sampler_overrides import parse_sampler_overrides

OUT = Path(__file__).resolve().parent / "out"
SCENES = ("thin_structures", "occluder", "unbounded")
UNBOUNDED = "unbounded"


@dataclass
class Settings:
    resolution: int
    iterations: int
    num_train: int
    num_test: int
    rays_per_batch: int
    threads: int
    seed: int
    layout: str
    device: str = "cpu"
    init_density: float | None = None
    nerfacto_init_density: float | None = None
    nerfacto_near_far: tuple[float, float] | None = None
    wysiwyg_rays_per_batch: int | None = None
    sampler_rays_per_batch: int = 1024
    field_ray_pool_size: int | None = None
    background: str = "white"
    sampler_overrides: dict = field(default_factory=dict)

    def rays_per_batch_of(self, method: str) -> int:
        """Training rays per iteration of ``method`` (wysiwyg-sampler may get its own count)."""
        if method == "wysiwyg-sampler" and self.wysiwyg_rays_per_batch is not None:
            return self.wysiwyg_rays_per_batch
        return self.rays_per_batch


def shared_field_options(model_config, method: str, settings: Settings) -> None:
    """The CPU-sized nerfacto field both methods use (same hash grid and MLPs; each method's own
    initial density unless ``--init-density`` sets one for both, or ``--nerfacto-init-density``
    nerfacto's: nerfacto 1.0, wysiwyg-sampler 0.1), trained over ``--background``."""
    model_config.implementation = "torch"
    model_config.log2_hashmap_size = 15
    model_config.max_res = 256
    init_density = settings.init_density
    if method == "nerfacto" and settings.nerfacto_init_density is not None:
        init_density = settings.nerfacto_init_density
    if init_density is not None:
        model_config.average_init_density = init_density
    model_config.background_color = settings.background
    model_config.camera_optimizer.mode = "off"


def build_config(method: str, data: Path, settings: Settings, unbounded: bool = False):
    from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
    from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    rays_per_batch = settings.rays_per_batch_of(method)
    dataparser = NerfstudioDataParserConfig() if unbounded else BlenderDataParserConfig()
    if method == "nerfacto":
        from nerfstudio.configs.method_configs import method_configs

        config = method_configs["nerfacto"]
        config.pipeline.datamanager = VanillaDataManagerConfig(
            dataparser=dataparser,
            train_num_rays_per_batch=rays_per_batch,
            eval_num_rays_per_batch=rays_per_batch,
        )
        if settings.nerfacto_near_far is not None:
            config.pipeline.model.near_plane, config.pipeline.model.far_plane = settings.nerfacto_near_far
    else:
        from wysiwyg_nerfstudio.registration import wysiwyg_trainer_config

        config = wysiwyg_trainer_config()
        model_config = config.pipeline.model
        model_config.sampler = dataclasses.replace(model_config.sampler, **settings.sampler_overrides)
        model_config.scene_bounds = "unbounded" if unbounded else "box"
        datamanager = config.pipeline.datamanager
        datamanager.dataparser = dataparser
        datamanager.train_num_rays_per_batch = rays_per_batch
        datamanager.sampler_rays_per_batch = datamanager.eval_num_rays_per_batch = settings.sampler_rays_per_batch
        if settings.field_ray_pool_size is not None:
            datamanager.field_ray_pool_size = settings.field_ray_pool_size
        if settings.layout == "images":
            from wysiwyg_nerfstudio.grid_pixel_sampler import GridPixelSamplerConfig

            datamanager.pixel_sampler = GridPixelSamplerConfig(grid_size=config.pipeline.model.train_patch_size)
    config.machine.device_type = "cuda" if settings.device.startswith("cuda") else "cpu"
    config.machine.seed = settings.seed
    config.pipeline.datamanager.data = data
    config.pipeline.datamanager.dataparser.data = data
    if settings.background == "random" and not unbounded:
        config.pipeline.datamanager.dataparser.alpha_color = None  # keep alpha for the random background
    shared_field_options(config.pipeline.model, method, settings)
    if unbounded:
        config.pipeline.model.background_color = "last_sample"  # the images are opaque: every ray ends on the environment
    return config


def _nerfacto_lpips_offline() -> None:
    """nerfacto builds LPIPS unconditionally (a download offline); build it only from cached weights.

    Without the weights, nerfacto gets a stand-in returning NaN, i.e. "not measured": this benchmark
    reports PSNR and SSIM, never LPIPS from fake weights.
    """
    import torch
    import torchmetrics.image.lpip as lpip_module

    from wysiwyg_nerfstudio.offline_lpips import lpips_if_available

    class NotMeasured(torch.nn.Module):
        def forward(self, *images):
            return torch.tensor(float("nan"))

    original = lpip_module.LearnedPerceptualImagePatchSimilarity
    lpip_module.LearnedPerceptualImagePatchSimilarity = lambda **kwargs: lpips_if_available() or NotMeasured()
    lpip_module._wysiwyg_original = original


def train_and_evaluate(method: str, data: str, settings: Settings, results, unbounded: bool = False) -> None:
    """Runs in a fresh process: train ``method`` on ``data``, evaluate on the test split."""
    import numpy
    import torch

    # Peak memory of this process alone: without the reset, VmHWM / ru_maxrss would include the
    # parent's resident set inherited through the fork before the exec.
    reset_peak_rss()
    torch.set_num_threads(settings.threads)
    # As ns-train seeds: nerfstudio's image cache shuffles the training images with Python's
    # random, so without this the same --seed gives a different run each time.
    random.seed(settings.seed)
    numpy.random.seed(settings.seed)
    torch.manual_seed(settings.seed)
    if method == "nerfacto":
        _nerfacto_lpips_offline()
    from nerfstudio.engine.callbacks import TrainingCallbackAttributes, TrainingCallbackLocation
    from nerfstudio.engine.optimizers import Optimizers

    device = torch.device(settings.device)
    rays_per_batch = settings.rays_per_batch_of(method)
    config = build_config(method, Path(data), settings, unbounded)
    pipeline = config.pipeline.setup(device=device, test_mode="test", world_size=1, local_rank=0)
    optimizers = Optimizers(config.optimizers, pipeline.get_param_groups())
    callbacks = pipeline.get_training_callbacks(
        TrainingCallbackAttributes(optimizers=optimizers, grad_scaler=None, pipeline=pipeline, trainer=None)
    )
    pipeline.train()
    step_times, losses, sampler_losses = [], [], []
    on_cuda = device.type == "cuda"
    report_every = max(1, settings.iterations // 10)
    # CUDA: the allocator's peak during training; CPU: the process's peak RSS, read after training.
    training_peak = PeakMemory(device) if on_cuda else contextlib.nullcontext()
    run_start = time.perf_counter()
    with training_peak:
        for step in range(settings.iterations):
            if on_cuda:
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            for callback in callbacks:
                callback.run_callback_at_location(step, location=TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
            optimizers.zero_grad_all()
            _, loss_dict, metrics = pipeline.get_train_loss_dict(step=step)
            loss = sum(loss_dict.values())
            loss.backward()
            optimizers.optimizer_step_all()
            optimizers.scheduler_step_all(step)
            for callback in callbacks:
                callback.run_callback_at_location(step, location=TrainingCallbackLocation.AFTER_TRAIN_ITERATION)
            if on_cuda:
                torch.cuda.synchronize(device)
            step_times.append(time.perf_counter() - start)
            losses.append(float(loss_dict["rgb_loss"].detach()))
            if "sampler_loss" in loss_dict:
                sampler_losses.append(float(loss_dict["sampler_loss"].detach()))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{method}: non-finite loss at step {step}: {loss_dict}")
            if (step + 1) % report_every == 0:
                recent = statistics.mean(losses[-report_every:])
                print(f"{method} step {step + 1}: rgb loss {recent:.5f}, {step_times[-1]:.3f} s/iteration", flush=True)
    train_seconds = time.perf_counter() - run_start
    pipeline.eval()
    if not unbounded:
        # Test views over white whatever the training background (nerfstudio evaluates a random one over black).
        pipeline.model.renderer_rgb.background_color = "white"
    start = time.perf_counter()
    metrics = pipeline.get_average_eval_image_metrics()
    eval_seconds = time.perf_counter() - start
    model = pipeline.model
    if method == "nerfacto":
        field_samples = float(model.config.num_nerf_samples_per_ray)
        sampler_samples = float(sum(model.config.num_proposal_samples_per_ray))
        sampler_samples_note = "proposal-network samples per ray"
        training_only_samples = 0.0
    else:
        sampler_config = model.config.sampler
        field_samples = float(metrics["field_samples_per_ray"])
        sampler_samples = float(sampler_config.probe_samples_per_ray)
        sampler_samples_note = "probe samples per full-resolution ray"
        patches = settings.sampler_rays_per_batch // model.config.train_patch_size**2
        supervised = min(sampler_config.patch_size, model.config.train_patch_size) ** 2 * patches
        training_only_samples = supervised * sampler_config.target_samples / rays_per_batch
    head = max(1, len(losses) // 10)
    results.put(
        {
            "method": method,
            "rays_per_batch": rays_per_batch,
            "psnr": float(metrics["psnr"]),
            "ssim": float(metrics["ssim"]),
            "field_samples_per_ray": field_samples,
            "sampler_samples_per_ray": sampler_samples,
            "sampler_samples_note": sampler_samples_note,
            "supervision_samples_per_training_ray": training_only_samples,
            "train_seconds": train_seconds,
            "seconds_per_iteration": statistics.median(step_times[min(5, len(step_times) - 1) :]),
            # The mean includes the occasional costly iteration (e.g. a callback's periodic work).
            "mean_seconds_per_iteration": statistics.mean(step_times[min(5, len(step_times) - 1) :]),
            "peak_memory_mib": training_peak.mib if on_cuda else peak_rss_mib(),
            "peak_memory_kind": "CUDA allocator peak during training" if on_cuda else "peak RSS of the process",
            "eval_seconds_per_image": eval_seconds / len(pipeline.datamanager.eval_dataset),
            "rgb_loss_first": statistics.mean(losses[:head]),
            "rgb_loss_last": statistics.mean(losses[-head:]),
            "sampler_loss_first": statistics.mean(sampler_losses[:head]) if sampler_losses else None,
            "sampler_loss_last": statistics.mean(sampler_losses[-head:]) if sampler_losses else None,
        }
    )


def run_isolated(method: str, data: Path, settings: Settings, unbounded: bool = False) -> dict:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=train_and_evaluate, args=(method, str(data), settings, results, unbounded))
    process.start()
    result = results.get()  # before join: a full queue would block the child's exit
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"{method} on {data} failed with exit code {process.exitcode}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small images and few iterations (minutes)")
    parser.add_argument("--iterations", type=int, default=None, help="training iterations per method")
    parser.add_argument("--resolution", type=int, default=None, help="image side in pixels")
    parser.add_argument("--scenes", nargs="+", choices=SCENES, default=list(SCENES), help=f"scenes (default: {' '.join(SCENES)})")
    parser.add_argument("--layout", choices=("patches", "images"), default="patches", help="training batches of the learned sampler")
    parser.add_argument("--methods", nargs="+", default=["nerfacto", "wysiwyg-sampler"], help="methods to train")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per training process")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the torch hash grid; tiny-cuda-nn is not used)")
    parser.add_argument("--seed", type=int, default=0, help="seed of training (the data is the same for every seed)")
    parser.add_argument("--rays-per-batch", type=int, default=512, help="random training rays of the field per iteration")
    parser.add_argument(
        "--wysiwyg-rays-per-batch", type=int, default=None,
        help="wysiwyg-sampler's own field rays per iteration (default --rays-per-batch); its samples "
        "cost less, so 2x nerfacto's rays still takes less time per iteration",
    )
    parser.add_argument(
        "--sampler-rays-per-batch", type=int, default=1024,
        help="wysiwyg-sampler's rays per iteration in 16x16 patches for the probe and the CNN (a multiple of 256)",
    )
    parser.add_argument(
        "--field-ray-pool-size", type=int, default=None,
        help="wysiwyg-sampler's recent patch pixels the field rays are drawn from (default the method's)",
    )
    parser.add_argument("--init-density", type=float, default=None, help="initial density of both fields (default: each method's own)")
    parser.add_argument(
        "--nerfacto-init-density", type=float, default=None,
        help="nerfacto's initial density, over --init-density (0.01 is its best setting on these scenes)",
    )
    parser.add_argument(
        "--nerfacto-near-far", type=float, nargs=2, default=None, metavar=("NEAR", "FAR"),
        help="nerfacto's near and far planes (default its own 0.05 and 1000); 2.4 5.6 spans about the "
        "scene box, where wysiwyg-sampler's rays end",
    )
    parser.add_argument(
        "--background", choices=("white", "random", "last_sample"), default="white",
        help="training background of both methods: white (images composited over white), random "
        "(nerfstudio's random colour behind the images' alpha) or last_sample (each ray's deepest "
        "sample's colour, nerfacto's default); test views are always over white",
    )
    parser.add_argument("--num-train", type=int, default=None, help="training views (default 32; quick 16)")
    parser.add_argument("--out", type=Path, default=None, help="JSON output path")
    parser.add_argument(
        "--sampler", nargs="+", default=[], metavar="FIELD=VALUE",
        help="LearnedSamplerConfig fields of wysiwyg-sampler to change, e.g. adaptive_low=20 adaptive_high=40",
    )
    args = parser.parse_args()
    for name in ("iterations", "resolution", "num_train", "field_ray_pool_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("rays_per_batch", "wysiwyg_rays_per_batch"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.sampler_rays_per_batch < 256 or args.sampler_rays_per_batch % 256:
        parser.error(f"--sampler-rays-per-batch must be a positive multiple of 256 (16x16 patches), got {args.sampler_rays_per_batch}")
    for name in ("init_density", "nerfacto_init_density"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    if args.nerfacto_near_far is not None and not 0 <= args.nerfacto_near_far[0] < args.nerfacto_near_far[1]:
        parser.error(f"--nerfacto-near-far needs 0 <= NEAR < FAR, got {args.nerfacto_near_far}")
    sampler_overrides = {}
    if args.sampler:  # the model module imports nerfstudio: only when there is something to check
        from wysiwyg_nerfstudio.model import default_sampler_config

        try:
            sampler_overrides = parse_sampler_overrides(args.sampler, default_sampler_config())
        except ValueError as error:
            parser.error(str(error))
    settings = Settings(
        resolution=args.resolution or (48 if args.quick else 64),
        iterations=args.iterations or (150 if args.quick else 600),
        num_train=args.num_train or (16 if args.quick else 32),
        num_test=2 if args.quick else 4,
        rays_per_batch=args.rays_per_batch,
        wysiwyg_rays_per_batch=args.wysiwyg_rays_per_batch,
        sampler_rays_per_batch=args.sampler_rays_per_batch,
        field_ray_pool_size=args.field_ray_pool_size,
        threads=args.threads,
        seed=args.seed,
        device=args.device,
        init_density=args.init_density,
        nerfacto_init_density=args.nerfacto_init_density,
        nerfacto_near_far=None if args.nerfacto_near_far is None else tuple(args.nerfacto_near_far),
        layout=args.layout,
        background=args.background,
        sampler_overrides=sampler_overrides,
    )
    from wysiwyg_nerfstudio.synthetic_scenes import write_blender_scene, write_unbounded_scene

    rows = []
    for scene in args.scenes:
        if scene == UNBOUNDED:
            # nerfstudio-data holds out every tenth image: num_train + num_test images hold about num_test.
            data = OUT / "data" / f"{scene}_{settings.resolution}px_{settings.num_train + settings.num_test}images"
            if not (data / "transforms.json").exists():
                print(f"rendering {scene} ({settings.resolution}px, exact ground truth) ...", flush=True)
                write_unbounded_scene(data, settings.resolution, settings.num_train + settings.num_test, seed=1)
        else:
            data = OUT / "data" / f"{scene}_{settings.resolution}px_{settings.num_train}views_rgba"
            if not (data / "transforms_test.json").exists():
                print(f"rendering {scene} ({settings.resolution}px, exact ground truth) ...", flush=True)
                write_blender_scene(data, scene, settings.resolution, settings.num_train, 1, settings.num_test, seed=1)
        for method in args.methods:
            print(f"training {method} on {scene} for {settings.iterations} iterations ...", flush=True)
            result = run_isolated(method, data, settings, scene == UNBOUNDED)
            result["scene"] = scene
            rows.append(result)
            print(json.dumps(result), flush=True)

    table = [
        "| scene | method | PSNR dB | SSIM | rays/iteration | field samples/ray | sampler samples/ray | training s (whole run) | s/iteration median / mean | peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        sampler = f"{row['sampler_samples_per_ray']:.0f} ({'proposal' if row['method'] == 'nerfacto' else 'probe'})"
        table.append(
            f"| {row['scene']} | {row['method']} | {row['psnr']:.2f} | {row['ssim']:.3f} | {row['rays_per_batch']} "
            f"| {row['field_samples_per_ray']:.1f} "
            f"| {sampler} | {row['train_seconds']:.1f} | {row['seconds_per_iteration']:.3f} / {row['mean_seconds_per_iteration']:.3f} | {row['peak_memory_mib']:.0f} |"
        )
    ratios = [
        "",
        "| scene | PSNR wysiwyg - nerfacto dB | field samples/ray ratio | field samples/iteration ratio | whole-run time ratio | time/iteration ratio (median) | peak memory ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for scene in args.scenes:
        by_method = {row["method"]: row for row in rows if row["scene"] == scene}
        if {"nerfacto", "wysiwyg-sampler"} <= by_method.keys():
            ours, theirs = by_method["wysiwyg-sampler"], by_method["nerfacto"]
            samples_ratio = ours["field_samples_per_ray"] / theirs["field_samples_per_ray"]
            rays_ratio = ours["rays_per_batch"] / theirs["rays_per_batch"]
            ratios.append(
                f"| {scene} | {ours['psnr'] - theirs['psnr']:+.2f} | {samples_ratio:.2f} | {samples_ratio * rays_ratio:.2f} "
                f"| {ours['train_seconds'] / theirs['train_seconds']:.2f} "
                f"| {ours['seconds_per_iteration'] / theirs['seconds_per_iteration']:.2f} | {ours['peak_memory_mib'] / theirs['peak_memory_mib']:.2f} |"
            )
    print("\n".join(table + ratios))
    OUT.mkdir(parents=True, exist_ok=True)
    suffix = ("_quick" if args.quick else "") + ("_images" if args.layout == "images" else "")
    suffix += "_random_background" if args.background == "random" else ""
    out = args.out or OUT / f"nerfstudio_vs_nerfacto{suffix}.json"
    out.write_text(
        json.dumps(
            {"settings": asdict(settings), "machine": platform.platform(), "python": sys.version.split()[0], "rows": rows},
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
