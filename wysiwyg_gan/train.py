"""``python -m wysiwyg_gan.train``: train the WYSIWYG GAN.

With no arguments it trains the ``cpu`` preset on the embedded synthetic dataset, through every
stage of the schedule, and leaves checkpoints, snapshot grids (image, depth, normals), a
``metrics.jsonl`` and TensorBoard scalars in ``runs/cpu``. Examples::

    python -m wysiwyg_gan.train                                  # CPU preset, embedded data
    python -m wysiwyg_gan.train --resume latest                  # continue the last run exactly
    python -m wysiwyg_gan.train --preset ffhq512 --data ffhq512.zip --out runs/ffhq
    torchrun --nproc-per-node 8 -m wysiwyg_gan.train --preset ffhq512 --data ffhq512.zip
    python -m wysiwyg_gan.train --preset ffhq512 --help          # every option with the preset's values
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path

import torch

from wysiwyg_gan.checkpoint import (
    checkpoint_name,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from wysiwyg_gan.config import PRESETS, TrainConfig, config_differences, config_to_json
from wysiwyg_gan.data.dataset import CameraImageDataset
from wysiwyg_gan.distributed import DistributedContext, close_distributed, init_distributed, resolve_device
from wysiwyg_gan.training import GANTrainer, NonFiniteLossError


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    """Parse the command line; ``--preset`` picks the defaults every other option starts from."""
    import tyro

    argv = list(sys.argv[1:] if argv is None else argv)
    preset = "cpu"
    for index, arg in enumerate(argv):
        if arg == "--preset" and index + 1 < len(argv):
            preset = argv[index + 1]
        elif arg.startswith("--preset="):
            preset = arg.split("=", 1)[1]
    if preset not in PRESETS:
        raise SystemExit(f"--preset must be one of {sorted(PRESETS)}, got {preset!r}")
    return tyro.cli(TrainConfig, default=PRESETS[preset](), args=argv, description=__doc__.split("\n\n")[0])


class RunLogger:
    """Scalars to ``metrics.jsonl`` and TensorBoard (when installed) on the main process."""

    def __init__(self, out: Path, enabled: bool):
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        self.jsonl = (out / "metrics.jsonl").open("a")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            print("tensorboard is not installed: scalars go to metrics.jsonl only")
        else:
            self.writer = SummaryWriter(str(out / "tensorboard"))

    def log(self, images_seen: int, record: dict) -> None:
        if not self.enabled:
            return
        self.jsonl.write(json.dumps({"images": images_seen, **record}) + "\n")
        self.jsonl.flush()
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, images_seen)

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            if self.writer is not None:
                self.writer.close()


def _write_snapshot(trainer: GANTrainer, schedule, out: Path) -> Path:
    import imageio.v3 as iio

    from wysiwyg_gan.snapshots import render_snapshot

    config = trainer.config
    grid = render_snapshot(trainer, schedule, config.snapshot_seeds, config.snapshot_views, config.truncation_psi)
    path = out / "snapshots" / f"snapshot-{trainer.images_seen:09d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, grid)
    return path


def train(config: TrainConfig, context: DistributedContext | None = None) -> GANTrainer:
    """Run (or resume) training as ``config`` says; returns the trainer at the end."""
    device = resolve_device(config.device)
    context = context or init_distributed(device)
    if device.type == "cuda" and config.device == "auto":
        device = torch.device(f"cuda:{context.local_rank}")
        torch.cuda.set_device(device)
    out = Path(config.out)
    main = context.is_main
    say = functools.partial(print, flush=True) if main else (lambda *args, **kwargs: None)

    data_path = config.data
    if data_path is None:
        from wysiwyg_gan.data.synthetic import default_dataset

        data_path = default_dataset(
            resolution=config.schedule.full_resolution, num_images=config.synthetic.num_images, seed=config.synthetic.seed
        )
        say(f"no --data given: using the embedded synthetic dataset at {data_path}")
    dataset = CameraImageDataset(data_path, xflip=config.xflip)
    full = config.schedule.full_resolution
    if dataset.resolution > full:
        # The cpu preset on a user's 256 or 512 px dataset trains at 64 px, as a pre-resized copy would.
        say(f"the dataset's {dataset.resolution}x{dataset.resolution} images are resized to {full}x{full}, the schedule's full resolution")
        dataset = CameraImageDataset(data_path, xflip=config.xflip, resolution=full)
    trainer = GANTrainer(config, dataset, device, context)

    if config.init_from is not None:
        trainer.load_state_dict(load_checkpoint(config.init_from, device), networks_only=True)
        say(f"networks initialised from {config.init_from}")
    if config.resume is not None:
        path = latest_checkpoint(out) if config.resume == "latest" else Path(config.resume)
        if path is None:
            say(f"--resume latest: no checkpoint in {out} yet, starting a new run")
        else:
            state = load_checkpoint(path, device)
            for difference in config_differences(state["config"], config_to_json(config)):
                if not difference.startswith(("resume", "progress")):
                    say(f"note: setting changed since the checkpoint: {difference}")
            trainer.load_state_dict(state)
            say(f"resumed from {path} at {trainer.images_seen} images")

    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(config_to_json(config), indent=2))
    evaluator = None
    if main and config.evaluation.every >= 0:
        from wysiwyg_gan.evaluation import RunEvaluator

        evaluator = RunEvaluator(config, data_path, device, log=say)
        say(f"evaluation metrics ready ({evaluator.setup_seconds:.0f} s): eval/* in metrics.jsonl and TensorBoard")
    logger = RunLogger(out, main)

    def evaluate() -> None:
        values = evaluator.evaluate(trainer)
        logger.log(trainer.images_seen, values)
        shown = ("fid", "precision", "recall", "family_total_variation", "colour_drift", "consistency_error", "empty_seeds", "seconds")
        say(
            f"evaluation at {trainer.images_seen} images: "
            + " ".join(f"{k}={values['eval/' + k]:.3g}" for k in shown if f"eval/{k}" in values)
        )

    total = config.run_length
    say(
        f"training {total} images, batch {config.batch} ({trainer.batch_per_gpu} per pass x "
        f"{trainer.accumulation} accumulation x {context.world_size} processes) on {device}; run folder {out}"
    )

    def checkpoint(path: Path) -> None:
        if main:
            save_checkpoint(trainer.state_dict(), path)

    progress = None
    if main and config.progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        progress = Progress(
            TextColumn("[bold]{task.fields[stage]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("images"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
        )
        progress.start()
        task = progress.add_task("train", total=total, completed=trainer.images_seen, stage="", status="")

    start_time, start_images = time.perf_counter(), trainer.images_seen
    next_checkpoint = (trainer.images_seen // config.checkpoint_every + 1) * config.checkpoint_every
    next_snapshot = (trainer.images_seen // config.snapshot_every + 1) * config.snapshot_every
    every = config.evaluation.every
    next_evaluation = (trainer.images_seen // every + 1) * every if every > 0 else None
    last = None
    try:
        while trainer.images_seen < total:
            try:
                last = trainer.step()
            except NonFiniteLossError as error:
                fault = out / f"checkpoint-before-fault-{trainer.images_seen:09d}.pt"
                checkpoint(fault)
                raise SystemExit(
                    f"training stopped: {error}. The state before that update is in {fault}; the last periodic "
                    f"checkpoint is {latest_checkpoint(out)}. Lower the learning rates or check the data."
                ) from error
            elapsed = time.perf_counter() - start_time
            rate = (trainer.images_seen - start_images) / max(elapsed, 1e-9)
            record = {"stage": last.schedule.stage, "images_per_second": rate, **last.values}
            if trainer.step_index % config.log_every == 0 or trainer.images_seen >= total:
                logger.log(trainer.images_seen, record)
                status = " ".join(f"{k}={v:.3g}" for k, v in last.values.items() if k in ("g_adv", "d_adv", "sampler", "surface"))
                if progress is not None:
                    progress.update(task, completed=trainer.images_seen, stage=last.schedule.stage, status=f"{rate:.1f} img/s {status}")
                elif main:
                    print(f"{trainer.images_seen}/{total} images [{last.schedule.stage}] {rate:.1f} img/s {status}", flush=True)
            if trainer.images_seen >= next_snapshot and trainer.images_seen < total:
                if main:
                    _write_snapshot(trainer, last.schedule, out)
                next_snapshot += config.snapshot_every
            if trainer.images_seen >= next_checkpoint and trainer.images_seen < total:
                checkpoint(out / checkpoint_name(trainer.images_seen))
                if main:
                    prune_checkpoints(out, config.keep_checkpoints)
                next_checkpoint += config.checkpoint_every
            # After the checkpoint, so that an evaluation that fails loses no training.
            if evaluator is not None and next_evaluation is not None and next_evaluation <= trainer.images_seen < total:
                evaluate()
                next_evaluation += every
        if last is not None:
            final = out / checkpoint_name(trainer.images_seen)
            checkpoint(final)
            if evaluator is not None:
                evaluate()
    finally:
        if progress is not None:
            progress.stop()
        logger.close()
    if main and last is not None:
        snapshot = _write_snapshot(trainer, last.schedule, out)
        say(f"done: {trainer.images_seen} images; checkpoint {final}; snapshot {snapshot}")
    return trainer


def main(argv: list[str] | None = None) -> None:
    train(parse_config(argv))
    close_distributed()


if __name__ == "__main__":
    main()
