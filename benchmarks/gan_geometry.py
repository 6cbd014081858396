"""Geometry of the CPU-preset GAN vs the same GAN trained with two-pass 48+48 rendering at the same cost.

``train`` trains two GANs on the embedded synthetic dataset:

* ``learned``: the default run of ``python -m wysiwyg_gan.train`` (the ``cpu`` preset: two-pass
  12+12 at 16 -> 32 px, sampler supervision, then the learned sampler at 32 and 64 px);
* ``two_pass``: EG3D-style two-pass 48+48 rendering throughout, the same resolution ramp up to every
  pixel at 64 px, never the learned sampler, stopped when it has used the same CPU time.

Cost is CPU time of this process with one thread (``time.process_time``), which other work on the
machine does not inflate the way it inflates wall-clock time. A pilot of a few steps per resolution
estimates the two-pass cost per image, and the two-pass schedule is scaled (``ScheduleConfig.scaled``)
so that all its stages fit in that budget; training stops at the budget in any case.

``evaluate`` measures both checkpoints with ``wysiwyg_gan.metrics``: the image distribution
against the real set (encoder FID, precision, recall, shape-family coverage; ``generator_distribution``),
colour drift along an orbit, multi-view consistency error and the non-flatness score. ``invert``
inverts held-out synthetic images (a dataset generated with another seed) with
``wysiwyg_gan.invert`` and scores the chamfer distance and normal consistency of the inverted meshes
against the true shapes. By default it optimises the latent only (``--tune-steps 0``): that
geometry is what the GAN learned, while pivotal tuning (``--tune-steps N``) fits the generator's
weights to the image and can shape almost anything. The held-out cameras are exact, so the
inversions keep them fixed (camera refinement drifts by several degrees on this small model), and
the meshes keep their largest piece (short runs leave small stray surfaces near the box faces,
outside every camera's view).

    python benchmarks/gan_geometry.py train                 # about 2 x 25 minutes on one core
    python benchmarks/gan_geometry.py evaluate              # distribution, drift, consistency, NFS
    python benchmarks/gan_geometry.py invert                # latent-only inversions of the held-out images
    python benchmarks/gan_geometry.py invert --models two_pass --first-index 5 --inversions 5   # a share, in parallel
    python benchmarks/gan_geometry.py invert --tune-steps 50   # with pivotal tuning, for comparison
    python benchmarks/gan_geometry.py report                # the table for RESULTS.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import torch

from wysiwyg_gan.checkpoint import checkpoint_name, save_checkpoint
from wysiwyg_gan.config import TrainConfig, cpu_preset
from wysiwyg_gan.data.dataset import CameraImageDataset
from wysiwyg_gan.data.synthetic import default_dataset
from wysiwyg_gan.rendering import RenderConfig
from wysiwyg_gan.schedule import schedule_at
from wysiwyg_gan.training import GANTrainer

NEVER = 10**12
MODELS = ("learned", "two_pass")
HELDOUT_SEED = 1
HELDOUT_IMAGES = 10


def learned_config(out: Path) -> TrainConfig:
    return dataclasses.replace(cpu_preset(), out=out / "learned", progress=False)


def two_pass_config(out: Path, scale: float = 1.0) -> TrainConfig:
    """The cpu preset rendered with 48+48 two-pass sampling at every stage, schedule scaled by ``scale``."""
    base = cpu_preset()
    schedule = dataclasses.replace(
        base.schedule.scaled(scale),
        total_images=max(base.batch, round(base.schedule.total_images * scale)),
        supervise_sampler_start=NEVER,
        render_with_sampler_start=NEVER,
    )
    return dataclasses.replace(
        base, out=out / "two_pass", progress=False, render=RenderConfig(coarse_samples=48, fine_samples=48), schedule=schedule
    )


def train_until(trainer: GANTrainer, total_images: int, cpu_budget: float | None, log_every: int = 50) -> dict:
    """Step until ``total_images`` or ``cpu_budget`` seconds of CPU time; returns what it cost."""
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    stages: dict[str, float] = {}
    while trainer.images_seen < total_images:
        if cpu_budget is not None and time.process_time() - start_cpu >= cpu_budget:
            break
        before = time.process_time()
        statistics = trainer.step()
        stage = f"{statistics.schedule.stage} @ {statistics.schedule.render_resolution}px"
        stages[stage] = stages.get(stage, 0.0) + time.process_time() - before
        if trainer.step_index % log_every == 0:
            values = " ".join(f"{k}={v:.3g}" for k, v in statistics.values.items() if k in ("g_adv", "d_adv", "surface"))
            print(f"  {trainer.images_seen} images [{stage}] cpu {time.process_time() - start_cpu:.0f}s {values}", flush=True)
    return {
        "images": trainer.images_seen,
        "cpu_seconds": time.process_time() - start_cpu,
        "wall_seconds": time.perf_counter() - start_wall,
        "cpu_seconds_per_stage": stages,
    }


def pilot_cost_per_image(config: TrainConfig, dataset: CameraImageDataset, steps: int = 2) -> dict[int, float]:
    """CPU seconds per image of ``config``'s training step at each resolution of its schedule."""
    schedule = config.schedule
    costs = {}
    for resolution, images in (
        (schedule.low_resolution, 0),
        (schedule.mid_resolution, schedule.mid_resolution_start + schedule.mid_resolution_ramp),
        (schedule.full_resolution, schedule.full_resolution_start + schedule.full_resolution_ramp),
    ):
        trainer = GANTrainer(config, dataset, torch.device("cpu"))
        trainer.images_seen = images
        assert schedule_at(images, schedule).render_resolution == resolution
        trainer.step()  # warm-up
        start = time.process_time()
        for _ in range(steps):
            trainer.step()
        costs[resolution] = (time.process_time() - start) / (steps * config.batch)
    return costs


def images_per_resolution(config: TrainConfig) -> dict[int, int]:
    """How many of the run's images are rendered at each resolution (ramps counted at their nearest end)."""
    counts: dict[int, int] = {}
    for images in range(0, config.schedule.total_images, config.batch):
        resolution = schedule_at(images, config.schedule).render_resolution
        nearest = min(
            (config.schedule.low_resolution, config.schedule.mid_resolution, config.schedule.full_resolution),
            key=lambda r: abs(r - resolution),
        )
        counts[nearest] = counts.get(nearest, 0) + config.batch
    return counts


def command_train(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    out = Path(args.out)
    data = default_dataset(resolution=64)
    dataset = CameraImageDataset(data, xflip=True)
    report: dict = {"machine": platform.processor() or platform.machine(), "threads": 1, "data": str(data)}

    print("training the cpu preset (learned sampler)", flush=True)
    config = learned_config(out)
    trainer = GANTrainer(config, dataset, torch.device("cpu"))
    report["learned"] = train_until(trainer, config.run_length, None)
    path = save_checkpoint(trainer.state_dict(), config.out / checkpoint_name(trainer.images_seen))
    report["learned"]["checkpoint"] = str(path.relative_to(out))
    budget = report["learned"]["cpu_seconds"]

    print("pilot: two-pass 48+48 cost per image at each resolution", flush=True)
    costs = pilot_cost_per_image(two_pass_config(out), dataset)
    counts = images_per_resolution(two_pass_config(out))
    full_cost = sum(costs[r] * n for r, n in counts.items())
    scale = min(1.0, budget / full_cost)
    report["two_pass_pilot"] = {
        "cpu_seconds_per_image": {str(r): c for r, c in costs.items()},
        "unscaled_cpu_seconds": full_cost,
        "schedule_scale": scale,
    }
    print(f"  cost per image {costs}; the full schedule would need {full_cost:.0f}s, budget {budget:.0f}s: scale {scale:.3f}")

    config = two_pass_config(out, scale)
    trainer = GANTrainer(config, dataset, torch.device("cpu"))
    print(f"training two-pass 48+48 for {budget:.0f} CPU seconds ({config.run_length} images planned)", flush=True)
    report["two_pass"] = train_until(trainer, config.run_length, budget)
    path = save_checkpoint(trainer.state_dict(), config.out / checkpoint_name(trainer.images_seen))
    report["two_pass"]["checkpoint"] = str(path.relative_to(out))
    report["two_pass"]["final_stage"] = schedule_at(trainer.images_seen, config.schedule).stage
    path = out / "train.json"
    path.write_text(json.dumps(report, indent=2))
    for name in MODELS:
        r = report[name]
        print(f"{name:9s} {r['images']:5d} images  cpu {r['cpu_seconds']:7.0f}s  wall {r['wall_seconds']:7.0f}s")
    print(f"wrote {path}")


def heldout_dataset(out: Path, num_images: int) -> Path:
    """Synthetic images the GANs never saw (another seed than the training set's 0), with true shapes."""
    from wysiwyg_gan.data.synthetic import synthesize_dataset

    path = out / f"heldout-{num_images}-seed{HELDOUT_SEED}"
    if not (path / "dataset.json").is_file():
        try:
            synthesize_dataset(path, num_images=num_images, resolution=64, seed=HELDOUT_SEED)
        except FileExistsError:  # another evaluate process wrote it first (written atomically)
            pass
    return path


def command_evaluate(args: argparse.Namespace) -> None:
    from wysiwyg_gan.feature_encoder import load_or_train_encoder
    from wysiwyg_gan.inference import load_trained_gan
    from wysiwyg_gan.consistency_metrics import multiview_consistency, orbit_colour_drift
    from wysiwyg_gan.distribution_metrics import generator_distribution, real_features
    from wysiwyg_gan.flatness_metrics import model_non_flatness
    from wysiwyg_gan.inference import render_cameras

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    trained = json.loads((out / "train.json").read_text())
    seeds = list(range(args.seeds))
    data = default_dataset(resolution=64)
    reals = CameraImageDataset(data)  # unmirrored, as wysiwyg_gan.metrics compares
    encoder = load_or_train_encoder(data, 64)
    reals_features = real_features(encoder, reals, 2 * args.fakes, seed=0)
    labels = render_cameras(reals, args.fakes, seed=0)
    for name in args.models:
        start = time.perf_counter()
        gan = load_trained_gan(out / trained[name]["checkpoint"])
        report = {
            "checkpoint": trained[name]["checkpoint"],
            "distribution": generator_distribution(gan, encoder, reals_features, list(range(args.fakes)), labels, labels),
            "drift": orbit_colour_drift(gan, seeds[:16]),
            "consistency": multiview_consistency(gan, seeds),
            "non_flatness": model_non_flatness(gan, seeds),
            "seconds": time.perf_counter() - start,
        }
        (out / name / "evaluation.json").write_text(json.dumps(report, indent=2))
        distribution = report["distribution"]
        print(
            f"{name}: FID {distribution['fid']:.1f} precision {distribution['precision']:.3f} recall "
            f"{distribution['recall']:.3f} families TV {distribution['families']['total_variation']:.3f} drift "
            f"{report['drift']['drift']:.4f} consistency {report['consistency']['error']:.4f}, NFS "
            f"{report['non_flatness']['nfs']:.3f}",
            flush=True,
        )


def command_invert(args: argparse.Namespace) -> None:
    from wysiwyg_gan.invert import InvertConfig, run

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    trained = json.loads((out / "train.json").read_text())
    heldout = heldout_dataset(out, HELDOUT_IMAGES)
    last = min(HELDOUT_IMAGES, args.first_index + args.inversions)
    for name in args.models:
        run(
            InvertConfig(
                checkpoint=out / trained[name]["checkpoint"],
                out=out / name / f"{inversion_kind(args.tune_steps)}-{args.first_index}-{last}",
                data=heldout,
                first_index=args.first_index,
                num_images=last - args.first_index,
                latent_steps=args.latent_steps,
                tune_steps=args.tune_steps,
                optimize_camera=False,
                largest_component=True,
                progress=False,
                device="cpu",
            )
        )


def inversion_kind(tune_steps: int) -> str:
    """Folder prefix of an inversion: ``latent`` (the latent only) or ``tuned`` (pivotal tuning too)."""
    return "latent" if tune_steps == 0 else "tuned"


def inversion_summary(folder: Path, kind: str) -> dict | None:
    """Mean PSNR, chamfer and normal consistency over every ``{kind}-*`` folder of a model (None if none)."""
    results, losses = [], set()
    for path in sorted(folder.glob(f"{kind}-*/invert.json")):
        content = json.loads(path.read_text())
        results += content["results"]
        losses.add(content["loss"])
    count = len(results)
    if count == 0:
        return None
    return {
        "images": count,
        "loss": sorted(losses),
        "chamfer": sum(r["chamfer"] for r in results) / count,
        "normal_consistency": sum(r["normal_consistency"] for r in results) / count,
        "psnr": sum(r["psnr"] for r in results) / count,
        "seconds_per_image": sum(r["seconds"] for r in results) / count,
        "per_image": results,
    }


def sphere_baseline(heldout: Path) -> dict:
    """Chamfer and normal consistency of the generator's initial shape (a sphere) against each
    held-out object: what an inversion that recovered no shape at all would score."""
    import trimesh

    from wysiwyg_gan.data.synthetic import load_shape_specs
    from wysiwyg_gan.geometry_metrics import mesh_accuracy

    radius = cpu_preset().generator.sphere_radius
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=radius)
    scores = [mesh_accuracy(sphere, spec) for spec in load_shape_specs(heldout).values()]
    return {
        "radius": radius,
        "chamfer": sum(score["chamfer"] for score in scores) / len(scores),
        "normal_consistency": sum(score["normal_consistency"] for score in scores) / len(scores),
    }


@torch.no_grad()
def sample_grid(out: Path, trained: dict, seeds: list[int], path: Path) -> Path:
    """One row per model: for each seed, the frontal image, depth and normals (truncation 0.7)."""
    import imageio.v3 as iio

    from wysiwyg_gan.images import depth_to_unit, to_hwc_uint8
    from wysiwyg_gan.inference import load_trained_gan
    from wysiwyg_gan.orbit_cameras import frontal_labels

    rows = []
    for name in MODELS:
        gan = load_trained_gan(out / trained[name]["checkpoint"])
        labels = frontal_labels(len(seeds))
        field = gan.field(gan.mapping(gan.latents(seeds), labels, truncation_psi=0.7))
        images = gan.render(field, labels)
        normals = gan.normals(field, images, labels)
        near, far = gan.config.render.near, gan.config.render.far
        depth = depth_to_unit(images.depth, images.opacity, near, far)
        panels = []
        for index in range(len(seeds)):
            panels += [(images.image[index] + 1) / 2, depth[index].expand(3, -1, -1), (normals[index] + 1) / 2 * images.opacity[index]]
        rows.append(torch.cat(panels, dim=2))
    grid = torch.cat(rows, dim=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, to_hwc_uint8(grid))
    return path


def command_report(args: argparse.Namespace) -> None:
    out = Path(args.out)
    trained = json.loads((out / "train.json").read_text())
    rows = [
        "| model | images trained | CPU s | FID | precision | recall | family TV | colour drift | consistency error | NFS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    inversion_rows = [
        "| model | inversion | images | chamfer | normal consistency | PSNR dB | s/inversion |",
        "|---|---|---|---|---|---|---|",
    ]
    combined = {"train": trained}
    for name in MODELS:
        evaluation = json.loads((out / name / "evaluation.json").read_text())
        distribution = evaluation["distribution"]
        rows.append(
            f"| {name} | {trained[name]['images']} | {trained[name]['cpu_seconds']:.0f} | {distribution['fid']:.1f} | "
            f"{distribution['precision']:.3f} | {distribution['recall']:.3f} | "
            f"{distribution['families']['total_variation']:.3f} | {evaluation['drift']['drift']:.4f} | "
            f"{evaluation['consistency']['error']:.4f} | {evaluation['non_flatness']['nfs']:.3f} |"
        )
        for kind, title in (("latent", "latent only"), ("tuned", "latent + pivotal tuning")):
            evaluation[f"inversion_{kind}"] = inversion = inversion_summary(out / name, kind)
            if inversion is not None:
                inversion_rows.append(
                    f"| {name} | {title} | {inversion['images']} | {inversion['chamfer']:.4f} | "
                    f"{inversion['normal_consistency']:.3f} | {inversion['psnr']:.2f} | {inversion['seconds_per_image']:.0f} |"
                )
        combined[name] = evaluation
    floor = distribution["real_floor"]
    rows.append(
        f"| real vs real (two halves), for scale | | | {floor['fid']:.1f} | {floor['precision']:.3f} | "
        f"{floor['recall']:.3f} | {distribution['families']['real_floor']['total_variation']:.3f} | | | |"
    )
    combined["sphere_baseline"] = sphere = sphere_baseline(heldout_dataset(out, HELDOUT_IMAGES))
    inversion_rows.append(
        f"| sphere of the initial SDF (radius {sphere['radius']}), for scale | | | {sphere['chamfer']:.4f} | "
        f"{sphere['normal_consistency']:.3f} | | |"
    )
    print("\n".join(rows) + "\n\n" + "\n".join(inversion_rows))
    (out / "gan_geometry.json").write_text(json.dumps(combined, indent=2))
    grid = sample_grid(out, trained, [0, 1, 2, 3], Path(__file__).parent / "results" / "gan_geometry_samples.png")
    print(f"wrote {out / 'gan_geometry.json'} and {grid}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("train", "evaluate", "invert", "report"))
    parser.add_argument("--out", default="benchmarks/out/gan_geometry", help="folder of checkpoints and JSON results")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="models to evaluate or invert")
    parser.add_argument("--seeds", type=int, default=64, help="latents for the consistency error and NFS")
    parser.add_argument("--first-index", type=int, default=0, help="first held-out image to invert")
    parser.add_argument("--inversions", type=int, default=HELDOUT_IMAGES, help="held-out images to invert from there")
    parser.add_argument("--latent-steps", type=int, default=100, help="inversion stage 1 steps (paper: 600)")
    parser.add_argument("--tune-steps", type=int, default=0, help="inversion stage 2 (pivotal tuning) steps; 0: latent only (paper: 350)")
    parser.add_argument("--fakes", type=int, default=256, help="generated images for the distribution metrics")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of evaluate and invert")
    args = parser.parse_args()
    commands = {"train": command_train, "evaluate": command_evaluate, "invert": command_invert, "report": command_report}
    commands[args.command](args)


if __name__ == "__main__":
    main()
