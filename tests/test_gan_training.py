"""wysiwyg_gan training: schedule, one step per stage, checkpoints, exact resume, DDP, faults."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("tyro")

from gan_helpers import TINY_RESOLUTION, tiny_train_config, write_tiny_dataset  # noqa: E402

from wysiwyg_gan import losses as gan_losses  # noqa: E402
from wysiwyg_gan.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint  # noqa: E402
from wysiwyg_gan.config import OptimConfig  # noqa: E402
from wysiwyg_gan.data.dataset import CameraImageDataset  # noqa: E402
from wysiwyg_gan.schedule import ScheduleConfig, schedule_at  # noqa: E402
from wysiwyg_gan.train import parse_config, train  # noqa: E402
from wysiwyg_gan.training import GANTrainer, NonFiniteLossError, derive_seed  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny")


def make_trainer(tmp_path: Path, data: Path, **overrides) -> GANTrainer:
    config = tiny_train_config(tmp_path / "run", data, **overrides)
    return GANTrainer(config, CameraImageDataset(data, xflip=config.xflip), torch.device("cpu"))


def parameter_vector(trainer: GANTrainer) -> torch.Tensor:
    modules = (trainer.generator, trainer.discriminator, trainer.sampler, trainer.generator_ema)
    return torch.cat([p.detach().flatten() for m in modules for p in m.parameters()])


# ------------------------------------------------------------------------------------ schedule


def test_schedule_follows_table_a3():
    config = ScheduleConfig()
    start = schedule_at(0, config)
    assert (start.render_resolution, start.r1_gamma, start.beta_target, start.color_lr_multiplier) == (64, 1.0, 0.01, 2.0)
    assert not start.supervise_sampler and not start.render_with_sampler and start.swap_probability == 1.0
    ramp = schedule_at(10_500_000, config)
    assert ramp.render_resolution == 96 and ramp.beta_target == pytest.approx(0.0055)
    assert schedule_at(11_000_000, config).render_resolution == 128
    assert schedule_at(16_000_000, config).supervise_sampler and not schedule_at(16_000_000, config).render_with_sampler
    assert schedule_at(17_000_000, config).render_with_sampler
    assert schedule_at(18_100_000, config).render_resolution == 320
    late = schedule_at(25_000_000, config)
    assert (late.render_resolution, late.r1_gamma, late.beta_target, late.color_lr_multiplier) == (512, 2.0, 0.001, 1.0)
    assert schedule_at(18_000_000, config).r1_gamma == 4.0
    assert late.swap_probability == 0.5


def test_schedule_scaled_keeps_proportions_and_rejects_bad_input():
    scaled = ScheduleConfig().scaled(0.001)
    assert scaled.total_images == 28_200 and scaled.render_with_sampler_start == 17_000
    assert schedule_at(17_000, scaled).render_with_sampler and not schedule_at(16_999, scaled).render_with_sampler
    with pytest.raises(ValueError, match="images_seen"):
        schedule_at(-1, ScheduleConfig())
    with pytest.raises(ValueError, match="supervised before"):
        ScheduleConfig(supervise_sampler_start=10, render_with_sampler_start=5)
    with pytest.raises(ValueError, match="r1_gammas"):
        ScheduleConfig(r1_gammas=((5, 1.0),))


def test_schedule_without_learned_sampler_renders_two_pass_at_every_stage():
    """The "- learned sampler" ablation changes the rendering mode only: the sampler is still
    supervised from its milestone, every other value follows the schedule."""
    config = ScheduleConfig()
    ablation = dataclasses.replace(config, learned_sampler=False)
    assert config.learned_sampler and ablation.scaled(0.5).learned_sampler is False
    for images in (0, 10_500_000, 16_000_000, 17_000_000, 18_100_000, 25_000_000, 28_200_000):
        full, ablated = schedule_at(images, config), schedule_at(images, ablation)
        assert not ablated.render_with_sampler
        assert ablated.supervise_sampler == full.supervise_sampler
        kept = ("render_resolution", "beta_target", "r1_gamma", "color_lr_multiplier", "swap_probability")
        assert all(getattr(ablated, name) == getattr(full, name) for name in kept)
    assert schedule_at(17_000_000, config).render_with_sampler
    with pytest.raises(ValueError, match="learned_sampler"):
        ScheduleConfig(learned_sampler="no")


def test_derive_seed_is_deterministic_and_distinct():
    assert derive_seed(0, 1, 2) == derive_seed(0, 1, 2)
    assert len({derive_seed(0, step) for step in range(1000)}) == 1000
    assert 0 <= derive_seed(2**70, -1) < 2**63


# -------------------------------------------------------------------------------------- steps


@pytest.mark.parametrize("images_seen", [0, 16, 24, 40], ids=["two-pass", "supervision", "sampler-mid-res", "sampler-full-res"])
def test_one_step_per_stage_updates_every_network(tmp_path, tiny_data, images_seen):
    trainer = make_trainer(tmp_path, tiny_data)
    trainer.images_seen = images_seen
    trainer.step_index = 1  # an R1 step for r1_interval 2 is step 0; also cover the other kind
    generator_before = [p.detach().clone() for p in trainer.generator.parameters()]
    d_before = [p.detach().clone() for p in trainer.discriminator.parameters()]
    sampler_before = [p.detach().clone() for p in trainer.sampler.parameters()]
    stats = trainer.step()
    schedule = stats.schedule
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values.values())
    changed = lambda before, module: sum(not torch.equal(a, b) for a, b in zip(before, module.parameters()))
    assert changed(generator_before, trainer.generator) > 0.8 * len(generator_before)
    assert changed(d_before, trainer.discriminator) > 0.8 * len(d_before)
    assert "decision" in stats.values  # L_dec in every stage, on the probe's or the coarse pass's samples
    if schedule.supervise_sampler:
        assert "sampler" in stats.values
        assert changed(sampler_before, trainer.sampler) == len(sampler_before)
    else:
        assert changed(sampler_before, trainer.sampler) == 0
    if schedule.render_with_sampler:
        assert stats.values["samples_per_ray"] < 8  # adaptive 4/8 budgets, fewer than two-pass 4+4
    else:
        assert stats.values["samples_per_ray"] == 8
    assert trainer.images_seen == images_seen + 4


@pytest.mark.parametrize("images_seen", [24, 40], ids=["sampler-mid-res", "sampler-full-res"])
def test_no_learned_sampler_renders_two_pass_and_keeps_every_loss(tmp_path, tiny_data, images_seen):
    schedule = dataclasses.replace(tiny_train_config(tmp_path, tiny_data).schedule, learned_sampler=False)
    trainer = make_trainer(tmp_path, tiny_data, schedule=schedule)
    trainer.images_seen = images_seen
    state = schedule_at(images_seen, schedule)
    labels = trainer.dataset.labels[:2]
    _, images, losses = trainer.render(trainer.generator, torch.randn(2, 16), labels, labels, state)
    resolution = state.render_resolution
    # Two-pass (4 coarse + 4 fine); L_dec on the coarse pass's uniform samples, not the probe's.
    assert images.samples_per_ray == 8
    assert images.uniform_sdf.numel() == 2 * resolution * resolution * trainer.config.render.coarse_samples
    assert images.sampler_loss is not None and "sampler" in losses and "decision" in losses

    sampler_before = [p.detach().clone() for p in trainer.sampler.parameters()]
    stats = trainer.step()
    assert stats.values["samples_per_ray"] == 8
    assert {"g_adv", "surface", "decision", "sampler"} <= set(stats.values)
    assert all(not torch.equal(a, b) for a, b in zip(sampler_before, trainer.sampler.parameters()))


def test_no_beta_regularisation_drops_the_surface_loss(tmp_path, tiny_data):
    """Without beta regularisation a step is the step of a zero L_surface weight (L_surface is
    still logged); with it, L_surface changes the update."""
    def one_step(name: str, **loss_overrides) -> tuple[torch.Tensor, dict[str, float]]:
        loss = dataclasses.replace(tiny_train_config(tmp_path, tiny_data).loss, **loss_overrides)
        trainer = make_trainer(tmp_path / name, tiny_data, loss=loss)
        trainer.images_seen = 24
        stats = trainer.step()
        return torch.cat([p.detach().flatten() for p in trainer.generator.parameters()]), stats.values

    ablated, values = one_step("ablated", beta_regularisation=False)
    zero_weight, _ = one_step("zero", surface_weight=0.0)
    regularised, regularised_values = one_step("regularised")
    assert torch.equal(ablated, zero_weight)
    assert not torch.equal(ablated, regularised)
    assert values["surface"] > 0 and values["surface"] == regularised_values["surface"]


@pytest.mark.parametrize("mode", ["robust_iid", "p_hat_stratified"])
def test_sampling_ablations_reach_the_trainer(tmp_path, tiny_data, mode):
    """``--sampler.sampling`` changes the samples the GAN renders with, hence the update."""
    def one_step(name: str, sampling: str) -> tuple[torch.Tensor, dict[str, float]]:
        sampler = dataclasses.replace(tiny_train_config(tmp_path, tiny_data).sampler, sampling=sampling)
        trainer = make_trainer(tmp_path / name, tiny_data, sampler=sampler)
        trainer.images_seen = 40
        stats = trainer.step()
        return torch.cat([p.detach().flatten() for p in trainer.generator.parameters()]), stats.values

    ablated, values = one_step(mode, mode)
    default, _ = one_step("default", "robust_stratified")
    assert not torch.equal(ablated, default)
    assert all(torch.isfinite(torch.tensor(v)) for v in values.values()) and values["samples_per_ray"] < 8


def test_generator_gradients_reach_every_parameter(tmp_path, tiny_data):
    trainer = make_trainer(tmp_path, tiny_data)
    schedule = schedule_at(40, trainer.config.schedule)
    labels = trainer.dataset.labels[:2]
    _, images, losses = trainer.render(trainer.generator, torch.randn(2, 16), labels, labels, schedule)
    (images.image.mean() + images.surface_variance.mean() + losses["decision"] + losses["sampler"]).backward()
    missing = [n for n, p in trainer.generator.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    # The constant noise buffers are not parameters; per-layer noise strengths start at 0 but get gradients.
    assert missing == []
    assert all(p.grad is not None for p in trainer.sampler.parameters())


def test_decoder_mlps_learn_at_their_own_rate(tmp_path, tiny_data):
    optim = OptimConfig(sampler_lr=1e-3, r1_interval=2, ema_images=16, mlp_lr_multiplier=0.25)
    trainer = make_trainer(tmp_path, tiny_data, optim=optim)
    stats = trainer.step()
    lr = {group["name"]: group["lr"] for group in trainer.optimizer_g.param_groups}
    base = trainer.config.optim.generator_lr
    assert lr == pytest.approx({"generator": base, "sdf_mlp": 0.25 * base, "color_mlp": 0.25 * base * stats.schedule.color_lr_multiplier})
    grouped = [id(p) for group in trainer.optimizer_g.param_groups for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in trainer.generator.parameters())  # each parameter exactly once
    with pytest.raises(ValueError, match="mlp_lr_multiplier"):
        dataclasses.replace(trainer.config.optim, mlp_lr_multiplier=0.0)
    older = trainer.state_dict()  # as written before the MLPs had their own group
    groups = older["optimizers"]["generator"]["param_groups"]
    groups[0]["params"] += groups.pop(1)["params"]
    with pytest.raises(ValueError, match="--init-from"):
        make_trainer(tmp_path, tiny_data, optim=optim).load_state_dict(older)


def test_non_finite_loss_stops_before_the_update(tmp_path, tiny_data, monkeypatch):
    trainer = make_trainer(tmp_path, tiny_data)
    before = parameter_vector(trainer)
    monkeypatch.setattr(
        "wysiwyg_gan.training.surface_tightness_loss", lambda b, o, t: gan_losses.surface_tightness_loss(b, o, t) * float("nan")
    )
    with pytest.raises(NonFiniteLossError, match="surface"):
        trainer.step()
    assert torch.equal(before, parameter_vector(trainer))
    assert trainer.images_seen == 0


def test_train_cli_writes_fault_checkpoint_on_nan(tmp_path, tiny_data, monkeypatch):
    monkeypatch.setattr(
        "wysiwyg_gan.training.generator_adversarial_loss", lambda logits: torch.full((), float("inf"))
    )
    config = tiny_train_config(tmp_path / "run", tiny_data)
    with pytest.raises(SystemExit, match="g_adv"):
        train(config)
    faults = list((tmp_path / "run").glob("checkpoint-before-fault-*.pt"))
    assert len(faults) == 1
    state = load_checkpoint(faults[0])
    assert state["images_seen"] == 0
    assert all(torch.isfinite(v).all() for v in state["generator"].values() if v.is_floating_point())


# -------------------------------------------------------------------------------- checkpoints


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint-000000001.pt"
    save_checkpoint({"images_seen": 1, "weights": torch.ones(3)}, path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"images_seen": 2, "weights": torch.zeros(3)}, path)
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["images_seen"] == 1 and torch.equal(state["weights"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_corrupt_or_foreign_checkpoints_give_clear_errors(tmp_path):
    truncated = tmp_path / "truncated.pt"
    save_checkpoint({"images_seen": 1, "weights": torch.ones(1000)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="unreadable or corrupt"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a wysiwyg_gan checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path, tiny_data):
    """Killing a run after a checkpoint and resuming equals the uninterrupted run, step for step."""
    straight = make_trainer(tmp_path / "a", tiny_data)
    for _ in range(6):  # crosses the supervision and sampler stages (images 16 and 24)
        straight.step()

    first = make_trainer(tmp_path / "b", tiny_data)
    for _ in range(3):
        first.step()
    path = save_checkpoint(first.state_dict(), tmp_path / "b" / "checkpoint-000000012.pt")
    del first
    resumed = make_trainer(tmp_path / "c", tiny_data)
    resumed.load_state_dict(load_checkpoint(path))
    torch.manual_seed(12345)  # whatever the process did before must not matter
    for _ in range(3):
        resumed.step()
    assert resumed.images_seen == straight.images_seen == 24
    assert torch.equal(parameter_vector(resumed), parameter_vector(straight))
    for a, b in zip(straight.optimizer_g.state.values(), resumed.optimizer_g.state.values()):
        assert torch.equal(a["exp_avg"], b["exp_avg"])


@pytest.mark.slow
def test_train_cli_end_to_end_and_resume_latest(tmp_path, tiny_data):
    """``python -m wysiwyg_gan.train`` with overrides: checkpoints, snapshot, metrics; then resume."""
    out = tmp_path / "run"
    args = [
        sys.executable, "-c",
        "import sys; sys.path.insert(0, 'tests'); import gan_helpers, wysiwyg_gan.train as t; "
        "from wysiwyg_gan.train import train; import dataclasses, pathlib;"
        f"c = gan_helpers.tiny_train_config(pathlib.Path({str(out)!r}), pathlib.Path({str(tiny_data)!r}), total_images=int(sys.argv[1]), resume='latest');"
        "train(c)",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run(args + ["16"], cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert latest_checkpoint(out).name == "checkpoint-000000016.pt"
    second = subprocess.run(args + ["32"], cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stdout and "at 16 images" in second.stdout
    assert latest_checkpoint(out).name == "checkpoint-000000032.pt"
    snapshots = sorted((out / "snapshots").glob("*.png"))
    assert [p.name for p in snapshots] == ["snapshot-000000016.png", "snapshot-000000032.png"]
    import imageio.v3 as iio

    grid = iio.imread(snapshots[-1])
    assert grid.shape == (2 * 16, 2 * 3 * 16, 3)  # 2 seeds x (2 views x image/depth/normals)
    records = (out / "metrics.jsonl").read_text().strip().splitlines()
    assert len(records) == 8 and '"stage"' in records[-1]
    assert (out / "config.json").is_file()


def test_cli_presets_and_help():
    config = parse_config(["--preset", "ffhq512", "--batch", "16"])
    assert config.preset == "ffhq512" and config.batch == 16 and config.schedule.full_resolution == 512
    assert config.sampler.num_bins == 192 and config.generator.channel_base == 65536
    cpu = parse_config([])
    assert cpu.schedule.full_resolution == 64 and cpu.schedule.full_resolution // cpu.sampler.downscale == 16
    long = parse_config(["--preset", "cpu-long"])
    assert long.run_length == 3 * cpu.run_length and long.out.name == "cpu-long"
    assert long.schedule.mid_resolution_start == 3 * cpu.schedule.mid_resolution_start and long.generator == cpu.generator
    afhq = parse_config(["--preset=afhq512"])
    assert schedule_at(0, afhq.schedule).r1_gamma == 6.0 and schedule_at(0, afhq.schedule).render_with_sampler
    with pytest.raises(SystemExit):
        parse_config(["--preset", "nope"])
    result = subprocess.run(
        [sys.executable, "-m", "wysiwyg_gan.train", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "--resume" in result.stdout and "--generator.channel-base" in result.stdout
    # The Table 4 ablations, one flag each.
    for flag in ("--schedule.no-learned-sampler", "--loss.no-beta-regularisation", "p_hat_stratified", "robust_iid"):
        assert flag in result.stdout, flag
    ablations = [
        (["--schedule.no-learned-sampler"], lambda c: not c.schedule.learned_sampler),
        (["--sampler.sampling", "robust_iid"], lambda c: c.sampler.sampling == "robust_iid"),
        (["--sampler.sampling", "p_hat_stratified"], lambda c: c.sampler.sampling == "p_hat_stratified"),
        (["--loss.no-beta-regularisation"], lambda c: not c.loss.beta_regularisation),
    ]
    for argv, holds in ablations:
        ablated = parse_config(argv)
        assert holds(ablated) and not holds(cpu), argv
        assert ablated.sampler.num_bins == cpu.sampler.num_bins  # the preset's other values stay


# ------------------------------------------------------------------------------------------ DDP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, out: str, data: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    from wysiwyg_gan.distributed import close_distributed, init_distributed

    context = init_distributed(torch.device("cpu"))
    config = tiny_train_config(Path(out), Path(data), batch_per_gpu=2)
    trainer = GANTrainer(config, CameraImageDataset(Path(data), xflip=True), torch.device("cpu"), context)
    trainer.images_seen = 24  # the learned-sampler stage: probe, CNN, supervision, adaptive budgets
    trainer.step()
    if rank == 0:
        torch.save(parameter_vector(trainer), Path(out) / "ddp.pt")
    close_distributed()


@pytest.mark.slow
def test_two_process_gloo_step_equals_one_process_with_accumulation(tmp_path, tiny_data):
    single = make_trainer(tmp_path, tiny_data, batch_per_gpu=2)
    assert single.accumulation == 2
    single.images_seen = 24
    single.step()
    torch.multiprocessing.spawn(
        _ddp_worker, args=(2, _free_port(), str(tmp_path), str(tiny_data)), nprocs=2, join=True
    )
    distributed = torch.load(tmp_path / "ddp.pt")
    torch.testing.assert_close(distributed, parameter_vector(single), rtol=1e-5, atol=1e-6)


def test_a_larger_dataset_is_resized_to_the_schedule(tmp_path, capsys):
    data = write_tiny_dataset(tmp_path / "large", num_images=4, resolution=2 * TINY_RESOLUTION)
    config = tiny_train_config(tmp_path / "run", data, total_images=8)
    trainer = train(config)
    assert trainer.dataset.resolution == TINY_RESOLUTION and trainer.images_seen == 8
    assert f"resized to {TINY_RESOLUTION}x{TINY_RESOLUTION}" in capsys.readouterr().out
    smaller = write_tiny_dataset(tmp_path / "small", num_images=4, resolution=TINY_RESOLUTION // 2)
    with pytest.raises(ValueError, match="change --schedule.full-resolution"):
        train(tiny_train_config(tmp_path / "run2", smaller))


def test_training_writes_evaluation_metrics(tmp_path, tiny_data):
    from wysiwyg_gan.config import EvaluationConfig
    from wysiwyg_gan.feature_encoder import EncoderConfig, load_or_train_encoder

    encoder = tmp_path / "encoder.pt"
    load_or_train_encoder(tiny_data, TINY_RESOLUTION, path=encoder, config=EncoderConfig(input_resolution=16, feature_dim=8, steps=3, batch=8))
    evaluation = EvaluationConfig(every=24, num_fakes=8, num_reals=8, num_seeds=2, precision_recall_k=2, encoder=encoder)
    config = tiny_train_config(tmp_path / "run", tiny_data, evaluation=evaluation)
    train(config)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evaluations = [r for r in records if "eval/fid" in r]
    assert [r["images"] for r in evaluations] == [24, 48]  # every 24 images, and at the end
    for record in evaluations:
        for key in ("eval/kid", "eval/precision", "eval/recall", "eval/frontal_recall", "eval/floor_recall", "eval/colour_drift", "eval/empty_seeds"):
            assert key in record
        assert 0 <= record["eval/opaque_fraction"] <= 1 and record["eval/real_foreground_fraction"] == 1.0  # no black pixels
        assert 0 <= record["eval/precision"] <= 1 and 0 <= record["eval/recall"] <= 1
        assert 0 <= record["eval/painted_share"] <= 1 and "eval/relief" in record
        assert "eval/normal_fid" not in record  # the tiny dataset has no true normal maps
    assert evaluations[0]["eval/resolution"] == 8 and evaluations[1]["eval/resolution"] == TINY_RESOLUTION


def test_config_round_trips_and_reads_older_checkpoints(tmp_path, tiny_data):
    from wysiwyg_gan.config import config_from_json, config_to_json

    config = tiny_train_config(tmp_path / "run", tiny_data)
    data = config_to_json(config)
    assert config_from_json(data) == config
    data["loss"]["sampler_weight"] = 1.0  # written before lambda_sampler was removed
    assert config_from_json(data) == config
    # Written before the Table 4 ablation switches: the paper's full model.
    del data["schedule"]["learned_sampler"], data["loss"]["beta_regularisation"], data["sampler"]["sampling"]
    assert config_from_json(data) == config
    # Written before the depth-guided probe skip and the depth margin: without them.
    for name in ("cnn_probe_skip_depth_share", "cnn_probe_skip_depth_sigma", "depth_margin"):
        del data["sampler"][name]
    assert config_from_json(data) == config
    assert (config.sampler.cnn_probe_skip_depth_share, config.sampler.depth_margin) == (0.0, 0)
    data["loss"]["unknown_weight"] = 1.0
    with pytest.raises(ValueError, match="unknown LossConfig settings"):
        config_from_json(data)


def test_evaluation_on_too_few_reals_fails_at_the_start(tmp_path, tiny_data):
    from wysiwyg_gan.config import EvaluationConfig

    config = tiny_train_config(tmp_path / "run", tiny_data, evaluation=EvaluationConfig(every=0, num_reals=4))
    with pytest.raises(ValueError, match="at least 8 real images"):
        train(config)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # before any training step


def test_a_failing_evaluation_loses_no_training(tmp_path, tiny_data, monkeypatch):
    from wysiwyg_gan.config import EvaluationConfig
    from wysiwyg_gan.evaluation import RunEvaluator
    from wysiwyg_gan.feature_encoder import EncoderConfig, load_or_train_encoder

    encoder = tmp_path / "encoder.pt"
    load_or_train_encoder(tiny_data, TINY_RESOLUTION, path=encoder, config=EncoderConfig(input_resolution=16, feature_dim=8, steps=3, batch=8))

    def fail(self, trainer):
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(RunEvaluator, "evaluate", fail)
    evaluation = EvaluationConfig(every=0, num_fakes=8, num_reals=8, precision_recall_k=2, encoder=encoder)
    with pytest.raises(RuntimeError, match="evaluation failed"):
        train(tiny_train_config(tmp_path / "run", tiny_data, evaluation=evaluation))
    assert latest_checkpoint(tmp_path / "run").name == "checkpoint-000000048.pt"  # the final one, written first
