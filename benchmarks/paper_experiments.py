"""The paper's Table 3 (quality against samples per ray) and Table 4 (ablations) at CPU scale.

Every step is a subprocess of the project's own CLIs, so one failure loses nothing else and every
number comes from the code a user runs:

1. **train**: the full model (the ``cpu`` preset on the embedded synthetic data) and each Table 4
   ablation, one flag each on ``python -m wysiwyg_gan.train``, with the same number of images
   (``--total-images``; the preset's schedule is scaled to that length, so every run goes through
   every stage), into ``OUT/<run>-seed<k>``. A run whose final checkpoint is there is skipped; an
   interrupted one continues with ``--resume latest``.
2. **evaluate**: ``python -m wysiwyg_gan.metrics`` (encoder FID/KID/precision/recall with the
   real-vs-real floor, normal-map FID, multi-view consistency, colour drift, NFS) and latent-only
   inversions (``python -m wysiwyg_gan.invert --tune-steps 0``, as ``gan_geometry.py`` runs them) of
   held-out synthetic images scored by chamfer distance and normal consistency against the true
   shapes; one ``OUT/<run>-seed<k>/evaluation.json`` per run.
3. **table3**: the full model's final checkpoint rendered with learned budgets and with two-pass
   coarse+fine counts (``--renderer.*``): distribution and normal metrics, plus the time to render
   one frame from cached triplanes (the paper's 4.5 FPS protocol) at each setting.
4. **report**: both tables as markdown beside the paper's numbers, and ``OUT/paper_experiments.json``.

Runs::

    python benchmarks/paper_experiments.py                      # everything (hours on a CPU)
    python benchmarks/paper_experiments.py --stages train --runs full no_beta_regularisation   # a share, in parallel
    python benchmarks/paper_experiments.py --stages report      # the tables from what is on disk
    python benchmarks/paper_experiments.py --quick              # smoke test: 64 images a run, tiny evaluations

Cost on one CPU thread: a training run of the default 8000 images takes about 30 minutes
(benchmarks/RESULTS.md's default runs), so the five runs take about 2.5 hours, their evaluations
(500 generated images per distribution, 64 latents, five 100-step inversions) roughly half an hour
more, and Table 3's ten renderers as long again. Shares of ``--runs`` can run in parallel processes
with the same ``--out``; ``--stages report`` then reads every run's files.

The absolute numbers are not the paper's: 64 px synthetic objects instead of FFHQ-512, an encoder
trained on the real set instead of Inception (FID and normal FID), 8000 images instead of 28M. Only
the orderings between rows can be compared with the paper.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # gan_geometry.py's helpers when run from anywhere

REPO = Path(__file__).resolve().parents[1]
PRESET_IMAGES = 8_000  # the cpu preset's schedule length; other --total-images scale it

# Table 4's rows: the run's name, its flags on wysiwyg_gan.train, the paper's label.
RUNS: dict[str, tuple[list[str], str]] = {
    "full": ([], "Ours (full model)"),
    "no_learned_sampler": (["--schedule.no-learned-sampler"], "- Learned Sampler"),
    "no_stratification": (["--sampler.sampling", "robust_iid"], "- Stratification"),
    "no_robust_sampling": (["--sampler.sampling", "p_hat_stratified"], "- Robust Sampling"),
    "no_beta_regularisation": (["--loss.no-beta-regularisation"], "- Beta Regularization"),
}

# /work/shared/design/paper-spec.md, section 6 (FFHQ-512, Inception FID, FID-N on NPHM normals).
PAPER_TABLE4 = {
    "no_learned_sampler": {"fid": 38.29, "fid_n": 93.88, "nfs": 30.95},
    "no_stratification": {"fid": 5.60, "fid_n": 86.02, "nfs": 5.97},
    "no_robust_sampling": {"fid": 5.67, "fid_n": 60.78, "nfs": 24.79},
    "no_beta_regularisation": {"fid": 5.27, "fid_n": 64.25, "nfs": 28.88},
    "full": {"fid": 4.97, "fid_n": 60.76, "nfs": 29.35},
}
PAPER_TABLE3 = {  # FID at 20, 50 and 96 samples per pixel
    "ours (learned sampler)": {20: 5.28, 50: 4.97, 96: 4.97},
    "EG3D (two-pass)": {20: 193.75, 50: 36.82, 96: 4.70},
    "Mimic3D (two-pass)": {20: 53.57, 50: 13.31, 96: 5.37},
}
PAPER_TABLE3_NOTE = (
    "Paper Table 3 gives FID at 20, 50 and 96 samples per pixel only; whether its learned '20' counts "
    "the probe is not stated. Its two-pass column is EG3D's."
)


# ----- settings ---------------------------------------------------------------------------------


def parse_two_pass(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)\+(\d+)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"two-pass counts are COARSE+FINE, e.g. 48+48; got {text!r}")
    return int(match.group(1)), int(match.group(2))


def table3_settings(args: argparse.Namespace) -> list[dict]:
    """The renderers of Table 3's curve: the checkpoint's own, learned budgets, two-pass counts."""
    settings = [{"name": "checkpoint", "flags": []}]
    for budget in args.learned_budgets:
        settings.append({"name": f"learned-{budget}", "flags": ["--renderer.mode", "learned", "--renderer.budget", str(budget)]})
    for coarse, fine in args.two_pass:
        settings.append(
            {
                "name": f"two-pass-{coarse}+{fine}",
                "flags": ["--renderer.mode", "two-pass", "--renderer.coarse-samples", str(coarse), "--renderer.fine-samples", str(fine)],
            }
        )
    return settings


def schedule_flags(total_images: int) -> list[str]:
    """``wysiwyg_gan.train`` flags that scale the cpu preset's schedule (and its checkpoint,
    snapshot and evaluation intervals) to ``total_images``: a shorter run still passes through
    two-pass, sampler supervision and the learned sampler, as the full-length one does."""
    from wysiwyg_gan.config import cpu_preset

    preset = cpu_preset()
    flags = ["--total-images", str(total_images)]
    if total_images == preset.schedule.total_images:
        return flags
    factor = total_images / preset.schedule.total_images
    scaled = preset.schedule.scaled(factor)
    flags += ["--schedule.total-images", str(total_images)]
    for field in dataclasses.fields(scaled):
        name, value = field.name, getattr(scaled, field.name)
        if name == "total_images" or value == getattr(preset.schedule, name):
            continue
        flag = "--schedule." + name.replace("_", "-")
        if isinstance(value, tuple):
            flags += [flag, *(str(number) for pair in value for number in pair)]
        else:
            flags += [flag, str(value)]
    for name in ("checkpoint_every", "snapshot_every"):
        flags += ["--" + name.replace("_", "-"), str(max(preset.batch, round(getattr(preset, name) * factor)))]
    flags += ["--evaluation.every", str(max(preset.batch, round(preset.evaluation.every * factor)))]
    return flags


def run_folder(out: Path, name: str, seed: int) -> Path:
    return out / f"{name}-seed{seed}"


def final_checkpoint(folder: Path, total_images: int) -> Path | None:
    """The checkpoint that ends a run of ``total_images`` (None while it is not finished). Read from
    the file names, which carry the image count, so no checkpoint is loaded."""
    from wysiwyg_gan.checkpoint import list_checkpoints

    finished = [path for path in list_checkpoints(folder) if int(path.stem.split("-")[1]) >= total_images]
    return finished[-1] if finished else None


# ----- subprocesses -----------------------------------------------------------------------------


def run_logged(command: list[str], log: Path, env: dict[str, str]) -> tuple[int, float]:
    """Run ``command`` in the repository with its output appended to ``log``; (return code, seconds)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    print("  $ " + " ".join(command), flush=True)
    start = time.perf_counter()
    with log.open("a") as handle:
        handle.write(f"\n$ {' '.join(command)}\n")
        handle.flush()
        code = subprocess.call(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, env=env)
    seconds = time.perf_counter() - start
    if code != 0:
        tail = log.read_text().splitlines()[-15:]
        print(f"  failed (exit {code}) after {seconds:.0f} s; last lines of {log}:", flush=True)
        print("\n".join("    " + line for line in tail), flush=True)
    return code, seconds


def subprocess_env(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    if args.threads is not None:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(args.threads)
    return env


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def write_json(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(content, indent=2, default=str))
    os.replace(temporary, path)  # a report read while another process writes is never torn


# ----- stage 1: training ------------------------------------------------------------------------


def train_command(args: argparse.Namespace, name: str, seed: int) -> list[str]:
    flags, _ = RUNS[name]
    command = [sys.executable, "-m", "wysiwyg_gan.train", *schedule_flags(args.total_images)]
    command += ["--seed", str(seed), "--device", args.device, "--no-progress", *flags]
    if args.quick:
        # The benchmark evaluates afterwards anyway; the final snapshot grid is always written.
        command += ["--evaluation.every", "-1", "--snapshot-every", str(args.total_images), "--snapshot-seeds", "4"]
    return command + list(args.train_arg)


def train_run(args: argparse.Namespace, name: str, seed: int) -> dict:
    folder = run_folder(args.out, name, seed)
    command = train_command(args, name, seed)
    record_path = folder / "benchmark-train.json"
    record = read_json(record_path) or {"command": command, "seconds": 0.0, "invocations": 0}
    if record["command"][1:] != command[1:]:  # the interpreter may differ; the settings may not
        raise SystemExit(
            f"{folder} was trained with other settings:\n  {' '.join(record['command'][1:])}\nnow:\n  "
            f"{' '.join(command[1:])}\npass another --out, or delete that folder"
        )
    final = final_checkpoint(folder, args.total_images)
    if final is not None:
        print(f"{folder.name}: finished ({final.name}), skipped", flush=True)
        return record | {"status": "finished", "trained_now": False, "checkpoint": str(final)}
    print(f"{folder.name}: training {args.total_images} images", flush=True)
    write_json(record_path, record)  # before training, so that an interrupted run keeps its settings
    # --resume latest starts a new run when the folder has no checkpoint yet.
    code, seconds = run_logged(command + ["--out", str(folder), "--resume", "latest"], folder / "train.log", subprocess_env(args))
    record.update(seconds=record["seconds"] + seconds, invocations=record["invocations"] + 1)
    write_json(record_path, record)
    final = final_checkpoint(folder, args.total_images)
    if code != 0 or final is None:
        return record | {"status": "failed", "trained_now": True, "returncode": code, "log": str(folder / "train.log")}
    return record | {"status": "finished", "trained_now": True, "checkpoint": str(final)}


# ----- stage 2: evaluation ----------------------------------------------------------------------


def eval_sizes(args: argparse.Namespace) -> list[str]:
    return [
        "--distribution-fakes", str(args.fakes),
        "--distribution-reals", str(2 * args.fakes),  # the real-vs-real floor then compares equal sizes
        "--num-seeds", str(args.geometry_seeds),
        "--device", args.device,
    ]


def metrics_tag(args: argparse.Namespace) -> str:
    """Names the metrics files by their sample sizes: other sizes never reuse them."""
    return f"fakes{args.fakes}-seeds{args.geometry_seeds}"


def inversion_root(folder: Path, args: argparse.Namespace) -> Path:
    # gan_geometry.inversion_summary averages every latent-*/invert.json under it: one protocol per root.
    return folder / f"inversions-{args.inversions}-steps{args.latent_steps}"


def evaluate_run(args: argparse.Namespace, name: str, seed: int) -> dict:
    from gan_geometry import heldout_dataset, inversion_summary

    folder = run_folder(args.out, name, seed)
    final = final_checkpoint(folder, args.total_images)
    if final is None:
        return {"status": "not trained"}
    path = folder / "evaluation.json"
    existing = read_json(path)
    settings = {"metrics": metrics_tag(args), "inversions": inversion_root(folder, args).name}
    if existing is not None and existing.get("checkpoint") == str(final) and existing.get("status") == "done" and existing.get("settings") == settings:
        print(f"{folder.name}: evaluated, skipped", flush=True)
        return existing
    print(f"{folder.name}: evaluating {final.name}", flush=True)
    env, errors, seconds = subprocess_env(args), [], {}
    metrics_path = folder / f"metrics-{metrics_tag(args)}.json"
    if not metrics_path.is_file():
        command = [sys.executable, "-m", "wysiwyg_gan.metrics", "--checkpoint", str(final)]
        command += ["--metrics", "distribution", "normals", "consistency", "drift", "nfs", *eval_sizes(args), "--out", str(metrics_path)]
        code, seconds["metrics"] = run_logged(command, folder / "evaluate.log", env)
        if code != 0:
            errors.append(f"metrics exited {code} (see {folder / 'evaluate.log'})")
    inversion_out = inversion_root(folder, args) / f"latent-0-{args.inversions}"
    if args.inversions > 0 and not (inversion_out / "invert.json").is_file():
        heldout = heldout_dataset(args.out, args.inversions)
        # Latent only, cameras fixed at the exact held-out ones, largest mesh piece: gan_geometry.py's protocol.
        command = [sys.executable, "-m", "wysiwyg_gan.invert", "--checkpoint", str(final), "--data", str(heldout)]
        command += ["--first-index", "0", "--num-images", str(args.inversions), "--latent-steps", str(args.latent_steps)]
        command += ["--tune-steps", "0", "--no-optimize-camera", "--largest-component", "--no-progress"]
        command += ["--device", args.device, "--out", str(inversion_out)]
        if args.quick:
            command += ["--mesh-resolution", "48", "--w-stats-samples", "256"]
        code, seconds["invert"] = run_logged(command, folder / "evaluate.log", env)
        if code != 0:
            errors.append(f"invert exited {code} (see {folder / 'evaluate.log'})")
    metrics = read_json(metrics_path)
    report = {
        "run": name,
        "seed": seed,
        "flags": RUNS[name][0],
        "checkpoint": str(final),
        "metrics": metrics["results"] if metrics else None,
        "metrics_protocol": metrics["protocol"] if metrics else None,
        "inversion": inversion_summary(inversion_root(folder, args), "latent") if args.inversions > 0 else None,
        "settings": settings,
        "seconds": seconds,
        "status": "failed" if errors else "done",
        "errors": errors,
    }
    write_json(path, report)
    return report


# ----- stage 3: Table 3's curve -----------------------------------------------------------------


def render_timing(checkpoint: Path, flags: list[str], frames: int, device: str, threads: int | None) -> dict:
    """Seconds to render one frame from cached triplanes (the paper's FPS protocol): each frame's
    triplanes are built first and not timed; one warm-up render is not counted."""
    import torch

    from wysiwyg_gan.distributed import resolve_device
    from wysiwyg_gan.inference import RenderOverride, load_trained_gan
    from wysiwyg_gan.orbit_cameras import frontal_labels

    options = {}
    for flag, value in zip(flags[::2], flags[1::2]):  # the same --renderer.* flags metrics was given
        name = flag.removeprefix("--renderer.").replace("-", "_")
        options[name] = value if name == "mode" else int(value)
    override = RenderOverride(**options)
    if threads is not None:
        torch.set_num_threads(threads)
    device = resolve_device(device)
    gan = load_trained_gan(checkpoint, device)
    gan.set_renderer(override)
    labels = frontal_labels(1, device)
    wall, cpu = [], []
    with torch.no_grad():
        for seed in range(frames + 1):
            field = gan.field(gan.mapping(gan.latents([seed]), labels, truncation_psi=0.7))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            gan.render(field, labels)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if seed > 0:  # the first is a warm-up
                wall.append(time.perf_counter() - start_wall)
                cpu.append(time.process_time() - start_cpu)
    return {
        "frames": frames,
        "resolution": gan.resolution,
        "wall_ms_per_frame": 1000 * statistics.median(wall),
        "cpu_ms_per_frame": 1000 * statistics.median(cpu),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "renderer": gan.renderer_report(),
        "protocol": "median over frames of one 1-frame render from cached triplanes (frontal camera, psi 0.7)",
    }


def table3_run(args: argparse.Namespace, seed: int) -> dict:
    folder = run_folder(args.out, "full", seed)
    final = final_checkpoint(folder, args.total_images)
    if final is None:
        return {"status": "not trained"}
    results = {}
    for setting in table3_settings(args):
        path = folder / f"table3-{metrics_tag(args)}" / f"{setting['name']}.json"
        existing = read_json(path)
        if existing is not None and existing.get("checkpoint") == str(final) and existing.get("status") == "done":
            results[setting["name"]] = existing
            continue
        print(f"{folder.name}: Table 3 point {setting['name']}", flush=True)
        metrics_path = path.with_name(f"{setting['name']}-metrics.json")
        command = [sys.executable, "-m", "wysiwyg_gan.metrics", "--checkpoint", str(final), "--metrics", "distribution", "normals"]
        command += [*eval_sizes(args), *setting["flags"], "--out", str(metrics_path)]
        if not metrics_path.is_file():
            code, _ = run_logged(command, folder / "table3.log", subprocess_env(args))
            if code != 0:
                results[setting["name"]] = {"status": "failed", "error": f"metrics exited {code}", "log": str(folder / "table3.log")}
                continue
        metrics = read_json(metrics_path)
        try:
            timing = render_timing(final, setting["flags"], args.timing_frames, args.device, args.threads)
        except ValueError as error:  # a renderer this checkpoint cannot use (e.g. an untrained sampler)
            results[setting["name"]] = {"status": "failed", "error": str(error)}
            continue
        results[setting["name"]] = report = {
            "setting": setting["name"],
            "flags": setting["flags"],
            "checkpoint": str(final),
            "renderer": metrics["protocol"]["renderer"],
            "distribution": metrics["results"]["distribution"],
            "normals": metrics["results"]["normals"],
            "metrics_seconds": metrics["seconds"],
            "timing": timing,
            "status": "done",
        }
        write_json(path, report)
    return results


# ----- stage 4: report --------------------------------------------------------------------------


def dig(tree: dict | None, path: str):
    for part in path.split("."):
        if not isinstance(tree, dict):
            return None
        tree = tree.get(part)
    return tree


def mean_of(values: list) -> tuple[float | None, float | None]:
    values = [v for v in values if isinstance(v, (int, float))]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def cell(values: list, digits: int) -> str:
    mean, std = mean_of(values)
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def paper(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


TABLE4_COLUMNS = (  # (header, path in evaluation.json, digits, paper key)
    ("FID (encoder)", "metrics.distribution.fid", 2, "fid"),
    ("normal FID", "metrics.normals.fid", 2, "fid_n"),
    ("NFS", "metrics.nfs.nfs", 3, "nfs"),
    ("precision", "metrics.distribution.precision", 3, None),
    ("recall", "metrics.distribution.recall", 3, None),
    ("consistency err", "metrics.consistency.error", 4, None),
    ("colour drift", "metrics.drift.drift", 4, None),
    ("chamfer", "inversion.chamfer", 4, None),
    ("normal consistency", "inversion.normal_consistency", 3, None),
)


def table4(evaluations: dict[str, list[dict]]) -> tuple[str, list[dict]]:
    header = ["run", "seeds"]
    for title, _, _, key in TABLE4_COLUMNS:
        header += [title] + ([f"paper {key.replace('_', '-').upper()}"] if key else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows = []
    for name, (_, label) in RUNS.items():
        done = [e for e in evaluations.get(name, []) if e.get("metrics") is not None or e.get("inversion") is not None]
        row = {"run": name, "label": label, "seeds": [e["seed"] for e in done], "paper": PAPER_TABLE4[name]}
        cells = [label, str(len(done)) if done else "not evaluated"]
        for title, path, digits, key in TABLE4_COLUMNS:
            values = [dig(e, path) for e in done]
            row[path] = mean_of(values)[0]
            cells.append(cell(values, digits))
            if key:
                cells.append(paper(PAPER_TABLE4[name][key]))
        rows.append(row)
        lines.append("| " + " | ".join(cells) + " |")
    # Scale: what a perfect generator scores at this sample size, and an inversion that recovers nothing.
    evaluated = [e for runs in evaluations.values() for e in runs if e.get("metrics")]
    if evaluated:
        floor = {
            "metrics.distribution.fid": dig(evaluated[0], "metrics.distribution.real_floor.fid"),
            "metrics.normals.fid": dig(evaluated[0], "metrics.normals.real_floor.fid"),
            "metrics.distribution.precision": dig(evaluated[0], "metrics.distribution.real_floor.precision"),
            "metrics.distribution.recall": dig(evaluated[0], "metrics.distribution.real_floor.recall"),
        }
        cells = ["real vs real (floor)", ""]
        for _, path, digits, key in TABLE4_COLUMNS:
            cells.append("" if floor.get(path) is None else f"{floor[path]:.{digits}f}")
            if key:
                cells.append("")
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        "Paper: FFHQ-512, Inception FID and FID-N, NFS on its own scale; it gives no precision, recall, "
        "consistency, drift, chamfer or normal consistency for Table 4 (n/a). Here: encoder FID on the "
        "64 px synthetic set; compare orderings, not values. Chamfer and normal consistency: latent-only "
        "inversions of held-out synthetic images (lower chamfer, higher normal consistency are better)."
    )
    return "\n".join(lines) + "\n\n" + note, rows


def table3(curves: list[dict], settings: list[dict]) -> tuple[str, list[dict]]:
    header = [
        "renderer", "field samples/ray (measured)", "probe samples/ray", "FID (encoder)", "precision", "recall",
        "normal FID", "ms/frame (wall)", "ms/frame (CPU)", "paper FID",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows = []
    for setting in settings:
        points = [curve[setting["name"]] for curve in curves if curve.get(setting["name"], {}).get("status") == "done"]
        failed = [curve[setting["name"]] for curve in curves if curve.get(setting["name"], {}).get("status") == "failed"]
        renderer = points[0]["renderer"] if points else {}
        total = None
        if renderer.get("mode") == "two-pass":
            total = renderer["coarse_samples"] + renderer["fine_samples"]
            paper_fid = PAPER_TABLE3["EG3D (two-pass)"].get(total)
        elif setting["name"].startswith("learned-"):
            total = int(setting["name"].split("-")[1])
            paper_fid = PAPER_TABLE3["ours (learned sampler)"].get(total)
        else:
            paper_fid = None
        row = {"setting": setting["name"], "nominal_samples_per_ray": total, "paper_fid": paper_fid, "seeds": len(points)}
        columns = (
            ("renderer.samples_per_ray", 1),
            ("renderer.probe_samples_per_ray", 1),
            ("distribution.fid", 2),
            ("distribution.precision", 3),
            ("distribution.recall", 3),
            ("normals.fid", 2),
            ("timing.wall_ms_per_frame", 1),
            ("timing.cpu_ms_per_frame", 1),
        )
        cells = [setting["name"]]
        for path, digits in columns:
            values = [dig(point, path) for point in points]
            row[path] = mean_of(values)[0]
            cells.append(cell(values, digits) if points else ("failed" if failed else "-"))
        if failed and not points:
            row["error"] = failed[0].get("error")
        cells.append(paper(paper_fid) if setting["name"] != "checkpoint" else "n/a")
        rows.append(row)
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        "checkpoint: the renderer the run trained with at its end. Probe samples are per full-resolution "
        "ray (the probe renders at 1/downscale resolution) and not in the measured field samples. "
        + PAPER_TABLE3_NOTE
        + " Paper rows for reference: "
        + "; ".join(f"{method}: " + ", ".join(f"{n}: {fid:g}" for n, fid in values.items()) for method, values in PAPER_TABLE3.items())
        + "."
    )
    return "\n".join(lines) + "\n\n" + note, rows


def report(args: argparse.Namespace, training: dict) -> dict:
    """Both tables from every run's files on disk (runs trained by other invocations included)."""
    from gan_geometry import heldout_dataset, sphere_baseline

    evaluations: dict[str, list[dict]] = {}
    for name in RUNS:
        for seed in args.seeds:
            evaluation = read_json(run_folder(args.out, name, seed) / "evaluation.json")
            if evaluation is not None and evaluation.get("settings", {}).get("metrics") == metrics_tag(args):
                evaluations.setdefault(name, []).append(evaluation)
    settings = table3_settings(args)
    curves = []
    for seed in args.seeds:
        curve = {}
        for setting in settings:
            point = read_json(run_folder(args.out, "full", seed) / f"table3-{metrics_tag(args)}" / f"{setting['name']}.json")
            if point is not None:
                curve[setting["name"]] = point
        curves.append(curve)
    text4, rows4 = table4(evaluations)
    text3, rows3 = table3(curves, settings)
    sphere = sphere_baseline(heldout_dataset(args.out, args.inversions)) if args.inversions > 0 else None
    if sphere is not None:
        text4 += (
            f" The initial SDF (a sphere of radius {sphere['radius']}) scores chamfer {sphere['chamfer']:.4f}, "
            f"normal consistency {sphere['normal_consistency']:.3f}: an inversion that recovered no shape."
        )
    print("\n## Table 4: ablations (equal images)\n\n" + text4)
    print("\n## Table 3: quality against samples per ray (full model)\n\n" + text3 + "\n")
    combined = {
        "settings": {
            "total_images": args.total_images,
            "seeds": args.seeds,
            "quick": args.quick,
            "fakes": args.fakes,
            "geometry_seeds": args.geometry_seeds,
            "inversions": args.inversions,
            "latent_steps": args.latent_steps,
            "learned_budgets": args.learned_budgets,
            "two_pass": [f"{c}+{f}" for c, f in args.two_pass],
            "timing_frames": args.timing_frames,
            "train_args": args.train_arg,
            "threads": args.threads,
            "device": args.device,
        },
        "machine": platform.processor() or platform.machine(),
        "runs": {
            f"{name}-seed{seed}": {
                "run": name,
                "seed": seed,
                "flags": RUNS[name][0],
                "train": training.get(f"{name}-seed{seed}") or read_json(run_folder(args.out, name, seed) / "benchmark-train.json"),
                "evaluation": next((e for e in evaluations.get(name, []) if e["seed"] == seed), None),
            }
            for name in RUNS
            for seed in args.seeds
        },
        "table4": {"rows": rows4, "markdown": text4},
        "table3": {"rows": rows3, "markdown": text3, "per_seed": curves},
        "paper": {"table3": {k: {str(n): v for n, v in d.items()} for k, d in PAPER_TABLE3.items()}, "table4": PAPER_TABLE4},
        "sphere_baseline": sphere,
    }
    write_json(args.out / "paper_experiments.json", combined)
    print(f"wrote {args.out / 'paper_experiments.json'}")
    return combined


# ----- command line -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/out/paper_experiments, -quick with --quick)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 64 images a run, tiny evaluations and few Table 3 points")
    parser.add_argument("--stages", nargs="+", choices=("train", "evaluate", "table3", "report"), default=["train", "evaluate", "table3", "report"])
    parser.add_argument("--runs", nargs="+", choices=tuple(RUNS), default=list(RUNS), help="runs to train and evaluate")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds of every run")
    parser.add_argument("--total-images", type=int, default=None, help=f"images per run (default {PRESET_IMAGES}, the cpu preset's; --quick 64)")
    parser.add_argument("--train-arg", action="append", default=[], help="extra flag for every wysiwyg_gan.train run (repeat; e.g. --train-arg=--batch=4)")
    parser.add_argument("--fakes", type=int, default=None, help="generated images per distribution and normal metric (default 500; --quick 16)")
    parser.add_argument("--geometry-seeds", type=int, default=None, help="latents for consistency, drift and NFS (default 64; --quick 4)")
    parser.add_argument("--inversions", type=int, default=None, help="held-out images inverted per run (default 5; --quick 1; 0: none)")
    parser.add_argument("--latent-steps", type=int, default=None, help="latent-only inversion steps (default 100, as gan_geometry.py; --quick 5)")
    parser.add_argument("--learned-budgets", type=int, nargs="+", default=None, help="Table 3 learned budgets (default 8 12 16 20 32 50; --quick 8)")
    parser.add_argument("--two-pass", type=parse_two_pass, nargs="+", default=None, help="Table 3 two-pass COARSE+FINE (default 10+10 12+12 25+25 48+48; --quick 12+12)")
    parser.add_argument("--timing-frames", type=int, default=None, help="frames timed per Table 3 setting (default 16; --quick 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch/OpenMP threads of every step (default: the environment's)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N], for every step")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "out": Path("benchmarks/out/paper_experiments" + ("-quick" if quick else "")),
        "total_images": 64 if quick else PRESET_IMAGES,
        "fakes": 16 if quick else 500,
        "geometry_seeds": 4 if quick else 64,
        "inversions": 1 if quick else 5,
        "latent_steps": 5 if quick else 100,
        "learned_budgets": [8] if quick else [8, 12, 16, 20, 32, 50],
        "two_pass": [(12, 12)] if quick else [(10, 10), (12, 12), (25, 25), (48, 48)],
        "timing_frames": 2 if quick else 16,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.total_images < 1 or args.fakes < 2 or args.geometry_seeds < 1 or args.inversions < 0 or args.timing_frames < 1:
        parser.error("--total-images, --geometry-seeds and --timing-frames must be >= 1, --fakes >= 2, --inversions >= 0")
    args.out = args.out.resolve()
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    training: dict = {}
    if "train" in args.stages:
        for seed in args.seeds:
            for name in args.runs:
                training[f"{name}-seed{seed}"] = train_run(args, name, seed)
    if "evaluate" in args.stages:
        for seed in args.seeds:
            for name in args.runs:
                evaluate_run(args, name, seed)
    if "table3" in args.stages and "full" in args.runs:
        for seed in args.seeds:
            table3_run(args, seed)
    combined = report(args, training) if "report" in args.stages else {}
    failed = [key for key, record in training.items() if record.get("status") == "failed"]
    if failed:
        raise SystemExit(f"training failed for {', '.join(failed)} (logs in their folders); the others are done")
    return combined


if __name__ == "__main__":
    main()
