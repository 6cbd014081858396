"""Sampling efficiency of the learned sampler against uniform and two-pass importance sampling.

For each analytic scene (``learned_sampler.scenes``) this script

1. trains a ``LearnedSampler`` through the public API only (random cameras, ``supervision_loss``,
   Adam) for a fixed number of CPU steps, on random crops of full-resolution images;
2. renders held-out views with uniform sampling, two-pass importance sampling (48+48, 24+24,
   15+15, 12+12) and the learned sampler (fixed 8, 16, 32 samples and adaptive between
   the config's low and high budgets), and
   compares each against a dense reference (2048 samples per ray);
3. times one frame per method with a field as costly per sample as the GAN's (a 3x32x256^2
   triplane lookup and the paper's MLP_SDF / MLP_c), since the analytic fields cost almost
   nothing, and records the peak memory of that frame (a fresh process per method);
4. renders every scene's held-out views with the sampler trained on each other scene (learned
   adaptive), to show how far a CNN trained on one scene carries to another.

PSNR is also split by pixel class, from the reference: *silhouette* pixels have both hit and
missed rays (opacity above and below 1/2) in their 3x3 neighbourhood, *interior* ones only hits.

It prints markdown tables and writes JSON. ``--quick`` is the few-minute version used by
``make benchmark``; the default is the full run recorded in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import learned_sampler as ls
from learned_sampler.scenes import SCENE_FAR, SCENE_FOV_DEGREES, SCENE_NEAR, SCENES, make_scene
from peak_memory import PeakMemory
from sampler_overrides import parse_sampler_overrides

REFERENCE_SAMPLES = 2048
LEARNED_BUDGETS: list[int | str] = [8, 16, 32, "adaptive"]
TWO_PASS = [(48, 48), (24, 24), (15, 15), (12, 12)]
UNIFORM = [96, 32]


@dataclass
class Settings:
    resolution: int
    steps: int
    views: int
    timing_repeats: int
    seed: int
    sampler_overrides: dict = field(default_factory=dict)


def cpu_sized_sampler_config() -> ls.LearnedSamplerConfig:
    """The library's default sampler, CPU-sized: the paper's probe (192 samples, 1/4 resolution),
    64 bins and a narrow CNN."""
    return ls.LearnedSamplerConfig(
        num_bins=64,
        probe_samples=192,
        downscale=4,
        cnn_width=64,
        patch_size=32,
        target_samples=192,
        target_blur_sigma=0.5,
    )


def sampler_config(settings: Settings) -> ls.LearnedSamplerConfig:
    """The CPU-sized sampler with the ``--sampler`` changes applied."""
    return dataclasses.replace(cpu_sized_sampler_config(), **settings.sampler_overrides)


def cameras(count: int, generator: torch.Generator, resolution: int) -> ls.Rays:
    cam2world = ls.sample_orbit_cameras(count, yaw_std=0.5, pitch_std=0.25, generator=generator)
    intrinsics = ls.intrinsics_from_fov(SCENE_FOV_DEGREES, count)
    return ls.rays_from_cameras(cam2world, intrinsics, resolution, resolution, SCENE_NEAR, SCENE_FAR)


def train_sampler(field, settings: Settings) -> tuple[ls.LearnedSampler, list[float], float]:
    """Train on 32x32 crops (aligned to the probe grid) of full-resolution views; returns losses."""
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)  # the CNN's initial weights
    sampler = ls.LearnedSampler(sampler_config(settings), generator=torch.Generator().manual_seed(settings.seed + 1))
    optimizer = torch.optim.Adam(sampler.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.steps)
    crop, downscale = 32, sampler.config.downscale
    crop = min(crop, settings.resolution)
    losses = []
    sampler.train()
    start = time.perf_counter()
    for _ in range(settings.steps):
        rays = cameras(4, generator, settings.resolution)
        top, left = (torch.randint(0, (settings.resolution - crop) // downscale + 1, (2,), generator=generator) * downscale).tolist()
        loss = sampler.supervision_loss(rays[:, top : top + crop, left : left + crop], field)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    sampler.eval()
    return sampler, losses, time.perf_counter() - start


def make_methods(sampler: ls.LearnedSampler) -> dict[str, tuple[float, object]]:
    """Method name -> (probe samples per ray, callable(rays, field) -> RayIntervals)."""
    methods: dict[str, tuple[float, object]] = {}
    for n in UNIFORM:
        methods[f"uniform {n}"] = (0.0, ls.UniformSampler(n).sample)
    for coarse, fine in TWO_PASS:
        methods[f"two-pass {coarse}+{fine}"] = (0.0, ls.ImportanceSampler(coarse, fine).sample)
    for budget in LEARNED_BUDGETS:

        def learned(rays, field, budget=budget):
            proposal = sampler.predict(rays, field)
            distribution = proposal.distribution
            budgets = sampler.budgets_for(distribution, proposal.hit_probability) if budget == "adaptive" else budget
            return sampler.sample_from_distribution(rays, distribution, budgets)

        name = "learned adaptive" if budget == "adaptive" else f"learned {budget}"
        methods[name] = (sampler.config.probe_samples_per_ray, learned)
    return methods


def oracle_methods(sampler: ls.LearnedSampler) -> dict[str, tuple[float, object]]:
    """The sampler's sampling (robust, its tau, margin and quadrature) from the exact distribution
    (the supervision target at every pixel): what a perfect CNN would give, separating the
    sampling scheme from the CNN's accuracy."""
    config = sampler.config
    dense_sampler = ls.UniformSampler(config.num_bins * 8, stratified=False)

    def exact_targets(view: ls.Rays, field) -> tuple[Tensor, Tensor]:
        dense = ls.render(view, dense_sampler.sample(view), field, composite=())
        targets = ls.proposal_targets(
            dense.weights, config.num_bins, config.target_blur_sigma, config.target_suppress, config.target_empty
        )
        return targets, dense.opacity

    methods = {}
    for budget in (16, "adaptive"):

        def oracle(rays, field, budget=budget):
            targets, opacity = zip(*(exact_targets(rays[i : i + 1], field) for i in range(rays.batch_shape[0])))
            targets, opacity = torch.cat(targets), torch.cat(opacity)
            budgets = budget
            if budget == "adaptive":
                budgets = ls.adaptive_budgets(
                    targets.flatten(1, 2), config.adaptive_low, config.adaptive_high, config.adaptive_fraction,
                    hit_probability=opacity.flatten(1),
                ).reshape(opacity.shape)
            return sampler.sample_from_distribution(rays, targets, budgets)

        name = "oracle adaptive" if budget == "adaptive" else f"oracle {budget}"
        methods[name] = (config.probe_samples_per_ray, oracle)
    return methods


def psnr(mse: float) -> float:
    return -10.0 * math.log10(max(mse, 1e-20))


def held_out_views(field, settings: Settings) -> tuple[ls.Rays, Tensor, dict[str, Tensor]]:
    """Held-out rays, their dense reference images and the pixel classes (see the module docstring)."""
    generator = torch.Generator().manual_seed(settings.seed + 1000)
    rays = cameras(settings.views, generator, settings.resolution)
    views = [
        ls.render(view, ls.UniformSampler(REFERENCE_SAMPLES, stratified=False).sample(view), field)
        for view in (rays[i : i + 1] for i in range(settings.views))
    ]
    reference = torch.cat([view.rgb for view in views])
    hit = (torch.cat([view.opacity for view in views]) > 0.5).float()[:, None]
    any_hit = F.max_pool2d(hit, 3, stride=1, padding=1)[:, 0] > 0
    all_hit = -F.max_pool2d(-hit, 3, stride=1, padding=1)[:, 0] > 0
    classes = {"interior": all_hit, "silhouette": any_hit & ~all_hit}
    return rays, reference, classes


def image_scores(rgb: Tensor, reference: Tensor, classes: dict[str, Tensor]) -> dict[str, float]:
    pixel_error = ((rgb - reference) ** 2).mean(dim=-1)
    flat = pixel_error.flatten()
    worst = torch.topk(flat, max(1, flat.numel() // 100)).values
    scores = {"psnr": psnr(float(flat.mean())), "psnr_worst_1pct": psnr(float(worst.mean()))}
    for name, mask in classes.items():
        scores[f"psnr_{name}"] = psnr(float(pixel_error[mask].mean())) if bool(mask.any()) else float("nan")
    return scores


@torch.no_grad()
def evaluate_quality(field, sampler: ls.LearnedSampler, settings: Settings) -> dict[str, dict]:
    rays, reference, classes = held_out_views(field, settings)
    torch.manual_seed(settings.seed)
    results = {}
    for name, (probe_spp, method) in {**make_methods(sampler), **oracle_methods(sampler)}.items():
        result = ls.render(rays, method(rays, field), field)
        results[name] = {
            "samples_per_ray": result.samples_per_ray,
            "samples_per_ray_with_probe": result.samples_per_ray + probe_spp,
            **image_scores(result.rgb, reference, classes),
        }
    return results


@torch.no_grad()
def evaluate_transfer(trained: dict[str, ls.LearnedSampler], settings: Settings) -> dict[str, dict[str, float]]:
    """PSNR of learned adaptive sampling on each scene's held-out views with each scene's sampler."""
    table: dict[str, dict[str, float]] = {}
    for scene in trained:
        field = make_scene(scene)
        rays, reference, classes = held_out_views(field, settings)
        for trained_on, sampler in trained.items():
            _, method = make_methods(sampler)["learned adaptive"]
            result = ls.render(rays, method(rays, field), field)
            table.setdefault(trained_on, {})[scene] = image_scores(result.rgb, reference, classes)["psnr"]
    return table


class GanCostField(nn.Module):
    """Wraps an analytic field with the per-sample compute of the GAN's renderer.

    A triplane lookup (3 planes, 32 channels, 256^2, Hadamard product), MLP_SDF (71 -> 128 -> 128
    -> 66, softplus) and MLP_c (79 -> 64 -> 3) run on every sample as in the paper; their outputs
    enter the density with weight zero so the analytic scene still decides what is rendered.
    """

    def __init__(self, field, plane_resolution: int = 256):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.field = field
        self.planes = nn.Parameter(torch.randn(3, 32, plane_resolution, plane_resolution, generator=generator))
        self.mlp_sdf = nn.Sequential(nn.Linear(71, 128), nn.Softplus(), nn.Linear(128, 128), nn.Softplus(), nn.Linear(128, 66))
        self.mlp_color = nn.Sequential(nn.Linear(79, 64), nn.Softplus(), nn.Linear(64, 3))

    @staticmethod
    def encode(x: Tensor, frequencies: int) -> Tensor:
        scaled = x[..., None, :] * (2.0 ** torch.arange(frequencies, dtype=x.dtype, device=x.device))[:, None]
        return torch.cat([x, torch.sin(scaled).flatten(-2), torch.cos(scaled).flatten(-2)], dim=-1)

    def forward(self, positions: Tensor, directions: Tensor) -> dict[str, Tensor]:
        outputs = self.field(positions, directions)
        flat = positions.reshape(1, 1, -1, 3)
        features = None
        for plane, axes in zip(self.planes, ((0, 1), (0, 2), (1, 2))):
            sampled = F.grid_sample(plane[None], flat[..., axes], mode="bilinear", align_corners=False)
            features = sampled if features is None else features * sampled
        features = features[0, :, 0].T.reshape(*positions.shape[:-1], 32)
        hidden = self.mlp_sdf(torch.cat([self.encode(positions, 6), features], dim=-1))
        color = self.mlp_color(torch.cat([self.encode(directions, 2), hidden[..., 2:]], dim=-1))
        outputs["density"] = outputs["density"] + 0.0 * (hidden[..., 0] + color.sum(dim=-1))
        return outputs


def _time_method(queue, scene: str, method_name: str, state: dict, settings: Settings, threads: int) -> None:
    """Child process: peak memory (RSS above the set-up state) and wall time of one frame."""
    torch.set_num_threads(threads)
    sampler = ls.LearnedSampler(sampler_config(settings))
    sampler.load_state_dict(state)
    sampler.eval()
    field = GanCostField(make_scene(scene)).requires_grad_(False)
    rays = cameras(1, torch.Generator().manual_seed(settings.seed + 2000), settings.resolution)
    _, method = make_methods(sampler)[method_name]
    with torch.no_grad():
        with PeakMemory(torch.device("cpu")) as peak:
            ls.render(rays, method(rays, field), field)
        times = []
        for _ in range(settings.timing_repeats):
            start = time.perf_counter()
            ls.render(rays, method(rays, field), field)
            times.append(time.perf_counter() - start)
    queue.put({"seconds_per_frame": statistics.median(times), "peak_memory_mib": peak.mib})


def measure_cost(scene: str, sampler: ls.LearnedSampler, settings: Settings, methods: list[str]) -> dict[str, dict]:
    context = multiprocessing.get_context("spawn")
    state = {k: v.clone() for k, v in sampler.state_dict().items()}
    results = {}
    for name in methods:
        queue = context.Queue()
        process = context.Process(
            target=_time_method, args=(queue, scene, name, state, settings, torch.get_num_threads())
        )
        process.start()
        results[name] = queue.get()
        process.join()
    return results


def markdown_table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few-minute run: 64x64, 300 steps, 2 views")
    parser.add_argument("--scenes", nargs="+", default=list(SCENES), choices=list(SCENES))
    parser.add_argument("--resolution", type=int, help="full resolution (default 128, quick 64)")
    parser.add_argument("--steps", type=int, help="sampler training steps per scene (default 600, quick 300)")
    parser.add_argument("--views", type=int, help="held-out views per scene (default 4, quick 2)")
    parser.add_argument("--timing-scene", default="smooth_surface", choices=list(SCENES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/sampler_efficiency.json"))
    parser.add_argument(
        "--sampler", nargs="+", default=[], metavar="FIELD=VALUE",
        help="LearnedSamplerConfig fields to change from the CPU-sized config, e.g. cnn_probe_skip_floor=1e-5",
    )
    args = parser.parse_args()
    try:
        sampler_overrides = parse_sampler_overrides(args.sampler, cpu_sized_sampler_config())
    except ValueError as error:
        parser.error(str(error))
    settings = Settings(
        resolution=args.resolution or (64 if args.quick else 128),
        steps=args.steps or (300 if args.quick else 600),
        views=args.views or (2 if args.quick else 4),
        timing_repeats=2 if args.quick else 3,
        seed=args.seed,
        sampler_overrides=sampler_overrides,
    )
    if settings.resolution % 32:
        parser.error("--resolution must be a multiple of 32 (training crops of 32 on a 4x probe grid)")
    torch.manual_seed(settings.seed)
    print(f"# sampler efficiency: {settings}, torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)

    config = sampler_config(settings)
    adaptive_budgets = f"{config.adaptive_low}/{config.adaptive_high}"
    report: dict = {"settings": asdict(settings), "sampler_config": asdict(config), "scenes": {}}
    trained = {}
    for scene in args.scenes:
        field = make_scene(scene)
        sampler, losses, seconds = train_sampler(field, settings)
        trained[scene] = sampler
        quality = evaluate_quality(field, sampler, settings)
        report["scenes"][scene] = {
            "training": {"steps": settings.steps, "seconds": seconds, "first_loss": losses[0], "last_loss": sum(losses[-10:]) / len(losses[-10:])},
            "methods": quality,
        }
        rows = [
            [
                name,
                f"{r['samples_per_ray']:.1f}",
                f"{r['samples_per_ray_with_probe']:.1f}",
                f"{r['psnr']:.2f}",
                f"{r['psnr_worst_1pct']:.2f}",
                f"{r['psnr_interior']:.2f}",
                f"{r['psnr_silhouette']:.2f}",
            ]
            for name, r in quality.items()
        ]
        print(f"\n## {scene} (sampler trained {settings.steps} steps in {seconds:.0f} s, loss {losses[0]:.3f} -> {report['scenes'][scene]['training']['last_loss']:.3f})\n")
        header = ["method", "samples/ray", "with probe", "PSNR dB", "worst 1% PSNR dB", "interior dB", "silhouette dB"]
        print(markdown_table(rows, header), flush=True)

    if len(trained) > 1:
        transfer = evaluate_transfer(trained, settings)
        report["transfer"] = transfer
        rows = [[trained_on] + [f"{transfer[trained_on][scene]:.2f}" for scene in trained] for trained_on in trained]
        print(f"\n## learned adaptive {adaptive_budgets} on other scenes: PSNR dB (rows: trained on, columns: rendered)\n")
        print(markdown_table(rows, ["trained on"] + list(trained)), flush=True)

    timed = ["two-pass 48+48", "two-pass 24+24", "uniform 96", "learned 16", "learned adaptive", "learned 32"]
    timing_scene = args.timing_scene if args.timing_scene in trained else args.scenes[0]
    cost = measure_cost(timing_scene, trained[timing_scene], settings, timed)
    baseline = cost["two-pass 48+48"]
    report["cost"] = {"scene": timing_scene, "resolution": settings.resolution, "methods": cost}
    rows = [
        [
            name,
            f"{c['seconds_per_frame'] * 1000:.0f}",
            f"{c['seconds_per_frame'] / baseline['seconds_per_frame']:.2f}",
            f"{c['peak_memory_mib']:.0f}",
            f"{c['peak_memory_mib'] / max(baseline['peak_memory_mib'], 1e-9):.2f}",
        ]
        for name, c in cost.items()
    ]
    print(f"\n## cost per {settings.resolution}x{settings.resolution} frame with a GAN-cost field ({timing_scene}, CPU)\n")
    print(markdown_table(rows, ["method", "ms/frame", "x two-pass 48+48", "peak MiB", "x two-pass 48+48"]))

    # Targets at <= 30 samples per ray with the probe counted: PSNR at
    # least two-pass 48+48's or 50 dB, whichever is lower; the worst 1 % of pixels within 3 dB of
    # the oracle's at the same budget; the frame at most 0.5x two-pass 48+48's.
    targets = []
    for scene, data in report["scenes"].items():
        m = data["methods"]
        learned, oracle, two_pass = m["learned adaptive"], m["oracle adaptive"], m["two-pass 48+48"]
        goal = min(two_pass["psnr"], 50.0)
        gap = oracle["psnr_worst_1pct"] - learned["psnr_worst_1pct"]
        targets.append(
            [
                scene,
                f"{learned['psnr']:.2f} vs {goal:.2f}",
                "yes" if learned["psnr"] >= goal else "no",
                f"{gap:.2f}",
                "yes" if gap <= 3.0 else "no",
                f"{learned['psnr'] - m['two-pass 15+15']['psnr']:+.2f}",
            ]
        )
    speed = cost["learned adaptive"]["seconds_per_frame"] / baseline["seconds_per_frame"]
    report["targets"] = {"rows": targets, "adaptive_time_ratio": speed}
    spent = [data["methods"]["learned adaptive"]["samples_per_ray"] for data in report["scenes"].values()]
    print(
        f"\n## targets (learned adaptive {adaptive_budgets}: {sum(spent) / len(spent):.1f} samples per ray on average"
        f" + {config.probe_samples_per_ray:.0f} for the probe)\n"
    )
    header = [
        "scene",
        "PSNR vs min(two-pass 48+48, 50)",
        "met",
        "worst 1%: oracle - learned dB",
        "within 3 dB",
        "- two-pass 15+15 (30 spp) dB",
    ]
    print(markdown_table(targets, header))
    print(f"\nlearned adaptive time per frame: {speed:.2f}x two-pass 48+48 (target <= 0.5)")

    report["machine"] = {"platform": platform.platform(), "python": sys.version.split()[0], "torch": torch.__version__, "threads": torch.get_num_threads()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
