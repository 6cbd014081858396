"""Cost of one generator forward + backward at the full-resolution stage: learned sampler vs two-pass.

The same triplane generator renders a batch at the same resolution (every pixel) either with the
learned sampler (probe at 1/4 resolution + proposal CNN + robust adaptive 16/32 samples) or with
EG3D's two-pass 48 + 48 sampler, then back-propagates an image loss (plus, for the learned
sampler, the decision-boundary loss on the probe, as in training). Each method runs in its own
spawned process, so peak memory (CUDA allocator peak, or peak RSS on the CPU) is its own. Ratios
are against two-pass measured in the same run. A method that runs out of CUDA memory is reported
as such (with what it tried to allocate) and the others are still measured; ratios then need the
two-pass baseline and are left out.

    python benchmarks/gan_render.py                    # CPU: 128x128, MLPs of the paper's size
    python benchmarks/gan_render.py --quick            # CPU: 64x64, about a minute
    python benchmarks/gan_render.py --paper --device cuda   # 512x512, the paper's networks and sampler
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from learned_sampler import LearnedSampler, LearnedSamplerConfig
from peak_memory import PeakMemory
from wysiwyg_gan.losses import decision_boundary_loss, surface_tightness_loss
from wysiwyg_gan.networks.triplane import GeneratorConfig, TriplaneGenerator
from wysiwyg_gan.orbit_cameras import orbit_camera_labels
from wysiwyg_gan.rendering import RenderConfig, predict_proposal, render_two_pass, render_with_proposal

METHODS = ("two-pass 48+48", "learned adaptive 16/32", "learned + sampler supervision")


@dataclass
class Settings:
    resolution: int
    batch: int
    repeats: int
    paper: bool
    device: str
    threads: int


def generator_config(paper: bool) -> GeneratorConfig:
    if paper:
        return GeneratorConfig(mlp_backend="torch")
    # The paper's decoder MLPs and triplane channels on a small synthesis network: the render, not
    # the 2D backbone, is what the samplers change.
    return GeneratorConfig(backbone_resolution=64, channel_base=4096, channel_max=64, plane_block_channels=32, mlp_backend="torch")


def sampler_config(paper: bool) -> LearnedSamplerConfig:
    if paper:
        return LearnedSamplerConfig.paper()
    return LearnedSamplerConfig.paper(num_bins=48, probe_samples=96, cnn_width=64, cnn_probe_skip=True, patch_size=32, target_samples=96)


def _total_memory_mib(device: torch.device) -> float | None:
    return torch.cuda.get_device_properties(device).total_memory / 2**20 if device.type == "cuda" else None


def _measure(queue, method: str, settings: Settings) -> None:
    torch.set_num_threads(settings.threads)
    device = torch.device(settings.device)
    torch.manual_seed(0)
    generator = TriplaneGenerator(generator_config(settings.paper)).to(device)
    sampler = LearnedSampler(sampler_config(settings.paper)).to(device)
    render_config = RenderConfig()
    batch = settings.batch
    labels = orbit_camera_labels(torch.full((batch,), 1.3), torch.full((batch,), 1.5)).to(device)
    z = torch.randn(batch, generator.config.z_dim, device=device)

    def step() -> float:
        generator.zero_grad(set_to_none=True)
        sampler.zero_grad(set_to_none=True)
        field = generator(z, labels)
        if method == "two-pass 48+48":
            images = render_two_pass(field, labels, settings.resolution, render_config)
            loss = images.image.square().mean()
        else:
            rays, proposal = predict_proposal(field, labels, settings.resolution, sampler, render_config)
            images = render_with_proposal(field, labels, settings.resolution, proposal, sampler, render_config)
            loss = images.image.square().mean() + decision_boundary_loss(images.uniform_sdf, 100.0)
            if method == "learned + sampler supervision":
                loss = loss + sampler.supervision_loss(rays, field, proposal)
        loss = loss + surface_tightness_loss(images.surface_variance, images.opacity, 0.001)
        loss.backward()
        return images.samples_per_ray

    try:
        samples_per_ray = step()  # warm-up (allocator, lazy initialisation)
    except torch.OutOfMemoryError as error:
        queue.put({"out_of_memory": str(error).split(".")[0], "total_memory_mib": _total_memory_mib(device)})
        return
    with PeakMemory(device) as peak:
        step()
    times = []
    for _ in range(settings.repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    queue.put({"seconds_per_step": seconds, "images_per_second": batch / seconds, "peak_memory_mib": peak.mib, "samples_per_ray": samples_per_ray})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="64x64 and fewer repeats (about a minute on 2 cores)")
    parser.add_argument("--paper", action="store_true", help="the paper's generator and sampler sizes (for a GPU)")
    parser.add_argument("--resolution", type=int, help="rendered resolution (default 128; quick 64; paper 512)")
    parser.add_argument("--batch", type=int, default=1, help="images per step (paper: 2 per GPU)")
    parser.add_argument("--repeats", type=int, help="timed steps (median reported)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/gan_render.json"))
    args = parser.parse_args()
    resolution = args.resolution or (512 if args.paper else 64 if args.quick else 128)
    settings = Settings(
        resolution=resolution,
        batch=args.batch,
        repeats=args.repeats or (2 if args.quick else 3),
        paper=args.paper,
        device=args.device,
        threads=torch.get_num_threads(),
    )
    if resolution % sampler_config(args.paper).downscale:
        parser.error("--resolution must be a multiple of the sampler's downscale (4)")
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"CPU ({platform.processor() or platform.machine()}, {settings.threads} threads)"
    print(f"# GAN render cost: {settings}, torch {torch.__version__}, {device_name}", flush=True)
    context = multiprocessing.get_context("spawn")
    results = {}
    for method in METHODS:
        queue = context.Queue()
        process = context.Process(target=_measure, args=(queue, method, settings))
        process.start()
        results[method] = queue.get()
        process.join()
        print(f"{method}: {results[method]}", flush=True)
    base = results["two-pass 48+48"]
    print()
    print("| method | samples/ray | s/step | images/s | speed-up | peak memory (MiB) | memory ratio |")
    print("|---|---|---|---|---|---|---|")
    for method, r in results.items():
        if "out_of_memory" in r:
            print(f"| {method} | | out of memory ({r['out_of_memory']}) | | | > {r['total_memory_mib']:.0f} | |")
            continue
        if "out_of_memory" not in base:
            r["speedup_vs_two_pass"] = base["seconds_per_step"] / r["seconds_per_step"]
            r["memory_ratio_vs_two_pass"] = r["peak_memory_mib"] / base["peak_memory_mib"]
            ratios = f"{r['speedup_vs_two_pass']:.2f}x | {r['peak_memory_mib']:.0f} | {r['memory_ratio_vs_two_pass']:.2f}x |"
        else:
            ratios = f" | {r['peak_memory_mib']:.0f} | |"
        print(
            f"| {method} | {r['samples_per_ray']:.1f} | {r['seconds_per_step']:.3f} | {r['images_per_second']:.2f} | "
            + ratios
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "settings": asdict(settings),
        "device": device_name,
        "torch": torch.__version__,
        "generator": asdict(generator_config(args.paper)),
        "sampler": asdict(sampler_config(args.paper)),
        "results": results,
    }
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
