"""wysiwyg_gan.invert: PTI-style single-view reconstruction (stages, camera, outputs, errors)."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

pytest.importorskip("tyro")
pytest.importorskip("trimesh")
pytest.importorskip("skimage")

from gan_helpers import write_tiny_checkpoint, write_tiny_dataset  # noqa: E402

from wysiwyg_gan.camera_pose import CameraPose, novel_view_labels  # noqa: E402
from wysiwyg_gan.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from wysiwyg_gan.inference import load_trained_gan  # noqa: E402
from wysiwyg_gan.invert import INVERT_JSON, InvertConfig, invert_image, main, optimize_latent, tune_generator  # noqa: E402
from wysiwyg_gan.noise_images import make_noise_trainable, noise_modules, noise_regularization, normalize_noise  # noqa: E402
from wysiwyg_gan.orbit_cameras import frontal_labels, orbit_camera_labels  # noqa: E402
from wysiwyg_gan.perceptual_loss import load_lpips  # noqa: E402

FAST_STEPS = ["--latent-steps", "3", "--tune-steps", "3", "--w-stats-samples", "256", "--no-progress"]
FAST = [*FAST_STEPS, "--mesh-resolution", "12", "--mesh-points", "300"]


@pytest.fixture(autouse=True)
def empty_torch_hub(tmp_path, monkeypatch):
    """No LPIPS weights anywhere (and nothing may be downloaded): the MSE-only path."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def noisy_checkpoint(checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint with non-zero noise strengths, so that images depend on the noise."""
    state = load_checkpoint(checkpoint)
    for key in state["generator_ema"]:
        if key.endswith("noise.strength"):
            state["generator_ema"][key] = torch.tensor(0.5)
    return save_checkpoint(state, tmp_path_factory.mktemp("noisy") / "noisy.pt")


def fast_config(checkpoint: Path, **overrides) -> InvertConfig:
    defaults = dict(latent_steps=6, tune_steps=6, w_stats_samples=256, progress=False, latent_lr=0.05, camera_lr=0.01)
    return InvertConfig(checkpoint=checkpoint, **{**defaults, **overrides})


def target_of(gan, seed: int = 7, yaw: float = 0.15, pitch: float = -0.1):
    """An image the generator renders itself from another latent and another camera."""
    with torch.no_grad():
        ws = gan.mapping(gan.latents([seed]), frontal_labels(1))
        label = orbit_camera_labels(torch.tensor([math.pi / 2 + yaw]), torch.tensor([math.pi / 2 + pitch]))
        return gan.render(gan.field(ws), label).image[0]


def image_mse(gan, generator, w, label, target) -> float:
    model = dataclasses.replace(gan, generator=generator)
    with torch.no_grad():
        return float(F.mse_loss(model.render(model.field(w), label).image, target[None]))


def state_of(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


def changed(before: dict, after: dict, keys) -> bool:
    return any(not torch.equal(before[key], after[key]) for key in keys)


# ------------------------------------------------------------------------------------ stages


def test_stages_reduce_the_loss_and_train_the_right_things(noisy_checkpoint):
    gan = load_trained_gan(noisy_checkpoint)
    loaded = state_of(gan.generator)
    target = target_of(gan)
    config = fast_config(noisy_checkpoint)
    camera = CameraPose(frontal_labels(1)[0])
    generator = copy.deepcopy(gan.generator)
    noise_keys = [key for key in loaded if key.endswith("noise_const")]
    weight_keys = [name for name, _ in generator.named_parameters()]
    w_avg = generator.mapping.w_avg.expand(1, generator.num_ws, -1)
    start_mse = image_mse(gan, generator, w_avg, camera().detach(), target)

    w, latent_losses = optimize_latent(gan, generator, target[None], camera, config)
    stage1 = state_of(generator)
    label1 = camera().detach()
    mse1 = image_mse(gan, generator, w, label1, target)
    assert mse1 < start_mse
    assert latent_losses["latent"][-1] < latent_losses["latent"][0]
    assert not torch.equal(w, w_avg)
    assert torch.equal(w, w[:, :1].expand_as(w))  # W space: one w for every layer
    assert camera.rotation.abs().sum() > 0 and camera.translation.abs().sum() > 0
    assert changed(loaded, stage1, noise_keys)  # the noise images were fitted...
    assert not changed(loaded, stage1, weight_keys)  # ...the weights were not
    for module in noise_modules(generator):
        assert not module.noise_const.requires_grad
        assert module.noise_const.mean().abs() < 1e-4 and (module.noise_const.std(unbiased=False) - 1).abs() < 1e-3

    rotation = camera.rotation.detach().clone()
    tune_losses = tune_generator(gan, generator, w, target[None], camera, config)
    stage2 = state_of(generator)
    assert image_mse(gan, generator, w, camera().detach(), target) < mse1
    assert tune_losses["tune"][-1] < tune_losses["tune"][0]
    assert changed(stage1, stage2, weight_keys)
    assert not changed(stage1, stage2, noise_keys)
    assert not torch.equal(camera.rotation, rotation)
    assert not any(p.requires_grad for p in generator.parameters())
    # The loaded model is untouched throughout.
    assert not changed(loaded, state_of(gan.generator), loaded.keys())
    assert not any(p.requires_grad for p in gan.generator.parameters())


def test_gradients_reach_latent_camera_and_noise(noisy_checkpoint):

    gan = load_trained_gan(noisy_checkpoint)
    generator = copy.deepcopy(gan.generator)
    noises = make_noise_trainable(generator)
    camera = CameraPose(frontal_labels(1)[0])
    w = generator.mapping.w_avg[None, None].repeat(1, generator.num_ws, 1).requires_grad_(True)
    model = dataclasses.replace(gan, generator=generator)
    model.render(model.field(w), camera()).image.square().mean().backward()
    assert w.grad.abs().sum() > 0
    assert camera.rotation.grad.abs().sum() > 0 and camera.translation.grad.abs().sum() > 0
    assert all(noise.grad is not None and noise.grad.abs().sum() > 0 for noise in noises)


def test_inversion_is_deterministic_and_w_plus_is_per_layer(checkpoint):
    gan = load_trained_gan(checkpoint)
    target = target_of(gan)
    config = fast_config(checkpoint, latent_steps=3, tune_steps=2)
    first = invert_image(gan, target, frontal_labels(1)[0], config)
    second = invert_image(gan, target, frontal_labels(1)[0], config)
    assert torch.equal(first.w, second.w) and torch.equal(first.camera, second.camera)
    assert torch.equal(first.reconstruction, second.reconstruction)
    plus = invert_image(gan, target, frontal_labels(1)[0], dataclasses.replace(config, latent_space="w+", tune_steps=0))
    assert not torch.equal(plus.w[:, 0], plus.w[:, -1])
    fixed = invert_image(gan, target, frontal_labels(1)[0], dataclasses.replace(config, optimize_camera=False))
    assert torch.equal(fixed.camera, frontal_labels(1))


def test_camera_pose_and_novel_views():
    label = orbit_camera_labels(torch.tensor([1.3]), torch.tensor([1.7]))[0]
    camera = CameraPose(label)
    assert torch.allclose(camera()[0], label, atol=1e-6)
    with torch.no_grad():
        camera.rotation.copy_(torch.tensor([0.1, -0.2, 0.05]))
        moved = camera()[0]
    position = moved[:16].reshape(4, 4)[:3, 3]
    assert position.norm() == pytest.approx(label[:16].reshape(4, 4)[:3, 3].norm().item(), rel=1e-5)  # orbit
    rotation = moved[:16].reshape(4, 4)[:3, :3]
    assert torch.allclose(rotation @ rotation.T, torch.eye(3), atol=1e-5)
    views = novel_view_labels(label, [0.0, 0.4])
    assert torch.allclose(views[0], label, atol=1e-6)
    expected = orbit_camera_labels(torch.tensor([1.3 - 0.4]), torch.tensor([1.7]))[0]
    alternative = orbit_camera_labels(torch.tensor([1.3 + 0.4]), torch.tensor([1.7]))[0]
    assert torch.allclose(views[1], expected, atol=1e-5) or torch.allclose(views[1], alternative, atol=1e-5)


def test_noise_regularization_and_normalization():
    generator = torch.Generator().manual_seed(0)
    white = torch.randn(32, 32, generator=generator)
    smooth = F.interpolate(torch.randn(1, 1, 4, 4, generator=generator), size=(32, 32), mode="bilinear")[0, 0]
    noises = [white.clone(), smooth.clone()]
    normalize_noise(noises)
    for noise in noises:
        assert noise.mean().abs() < 1e-5 and noise.square().mean().sub(1).abs() < 1e-4
    assert noise_regularization([noises[0]]) < 0.05 * noise_regularization([noises[1]])


# ------------------------------------------------------------------------------------ command line


def test_cli_writes_outputs_with_the_contract(checkpoint, tmp_path, capsys):
    data = write_tiny_dataset(tmp_path / "data", num_images=3)
    out = tmp_path / "out"
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    summary = main(["--checkpoint", str(checkpoint), "--data", str(data), "--num-images", "2", "--first-index", "1",
                    "--out", str(out), "--save-generator", *FAST])
    stdout = capsys.readouterr().out
    assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() == digest
    content = json.loads((out / INVERT_JSON).read_text())
    assert content == json.loads(json.dumps(summary))
    assert content["data"] == str(data) and content["checkpoint"] == str(checkpoint)
    assert content["loss"] == "mse" and "loss: mse (" in stdout
    assert [entry["image"] for entry in content["results"]] == ["img00000001.png", "img00000002.png"]
    for entry in content["results"]:
        assert len(entry["camera"]) == 25 and all(math.isfinite(value) for value in entry["camera"])
        assert 0 <= entry["mse"] < 1 and entry["psnr"] == pytest.approx(10 * math.log10(1 / entry["mse"]))
        assert "chamfer" not in entry and "normal_consistency" not in entry  # no ground truth
        stem = Path(entry["image"]).stem
        assert entry["mesh"] == f"{stem}.ply"
        import trimesh

        mesh = trimesh.load(out / entry["mesh"], force="mesh")
        assert len(mesh.faces) > 0 and mesh.visual.vertex_colors.shape[0] == len(mesh.vertices)
        recon = np.array(Image.open(out / f"{stem}_reconstruction.png"))
        views = np.array(Image.open(out / f"{stem}_views.png"))
        assert recon.shape == (16, 16, 3) and views.shape == (16, 16 * 5, 3)
        saved = torch.load(out / f"{stem}_generator.pt", weights_only=True)
        assert set(saved) == {"generator", "w", "camera"}
        tuned = load_trained_gan(checkpoint).generator
        tuned.load_state_dict(saved["generator"])
        assert entry["final_losses"]["latent"] > 0 and entry["final_losses"]["tune"] > 0


def test_synthetic_dataset_reports_chamfer(checkpoint, tmp_path):
    from wysiwyg_gan.data.synthetic import synthesize_dataset
    from wysiwyg_gan.geometry_metrics import reconstruction_accuracy

    data = synthesize_dataset(tmp_path / "synthetic", num_images=2, resolution=16, seed=3)
    out = tmp_path / "out"
    main(["--checkpoint", str(checkpoint), "--data", str(data), "--images", "img00000001.png", "--out", str(out),
          "--largest-component", *FAST])
    (entry,) = json.loads((out / INVERT_JSON).read_text())["results"]
    assert entry["image"] == "img00000001.png"
    assert 0 < entry["chamfer"] < 1 and 0 <= entry["normal_consistency"] <= 1
    # The metrics module reads the same manifest and finds the same numbers.
    report = reconstruction_accuracy(out, num_points=300, seed=0)
    assert report["chamfer"] == pytest.approx(entry["chamfer"])


def test_single_image_input(checkpoint, tmp_path):
    pixels = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.jpg")
    label = orbit_camera_labels(torch.tensor([1.4]), torch.tensor([1.6]))[0].tolist()
    out = tmp_path / "out"
    summary = main(["--checkpoint", str(checkpoint), "--image", str(tmp_path / "photo.jpg"), "--camera",
                    *map(str, label), "--out", str(out), "--view-yaws", "-0.3", "0.3", "--mesh-resolution", "0",
                    *FAST_STEPS])
    (entry,) = summary["results"]
    assert summary["data"] is None and entry["image"] == "photo.jpg" and entry["mesh"] is None
    assert np.array(Image.open(out / "photo_views.png")).shape == (16, 32, 3)
    assert (out / "photo_reconstruction.png").is_file()


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda tmp: ["--image", str(tmp / "missing.png")], "no such file"),
        (lambda tmp: ["--image", str(corrupt_image(tmp))], "not a readable image"),
        (lambda tmp: ["--image", str(wide_image(tmp))], "must be square"),
        (lambda tmp: ["--image", str(wide_image(tmp)), "--camera", "1", "2"], "25 numbers"),
        (lambda tmp: ["--data", str(tmp / "nothing")], "no such file or folder"),
        (lambda tmp: ["--data", str(write_tiny_dataset(tmp / "d", 2)), "--images", "nope.png"], "nope.png not in"),
        (lambda tmp: ["--data", str(write_tiny_dataset(tmp / "d", 2)), "--num-images", "3"], "has 2 images"),
        (lambda tmp: [], "either --image"),
    ],
)
def test_bad_inputs_exit_with_a_clear_message(checkpoint, tmp_path, make_args, message):
    with pytest.raises(SystemExit) as raised:
        main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "out"), *make_args(tmp_path), *FAST])
    assert message in str(raised.value.code) and "\n" not in str(raised.value.code)


def test_bad_checkpoint_exits_with_a_clear_message(tmp_path):
    image = tmp_path / "image.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    for path, message in ((tmp_path / "missing.pt", "does not exist"), (corrupt, "unreadable or corrupt")):
        with pytest.raises(SystemExit) as raised:
            main(["--checkpoint", str(path), "--image", str(image), "--out", str(tmp_path / "out"), *FAST])
        assert message in str(raised.value.code)


def test_mse_only_without_lpips_weights(checkpoint, tmp_path, capsys):
    perceptual, description = load_lpips(torch.device("cpu"))
    assert perceptual is None and "no LPIPS backbone weights" in description and str(tmp_path) in description
    image = tmp_path / "image.png"
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(image)
    summary = main(["--checkpoint", str(checkpoint), "--image", str(image), "--out", str(tmp_path / "out"), *FAST])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("loss:")]
    assert summary["loss"] == "mse" and len(lines) == 1 and "no LPIPS backbone weights" in lines[0]
    assert "lpips" not in summary["results"][0]


def corrupt_image(folder: Path) -> Path:
    path = folder / "corrupt.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    return path


def wide_image(folder: Path) -> Path:
    path = folder / "wide.png"
    Image.fromarray(np.zeros((16, 24, 3), np.uint8)).save(path)
    return path


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as raised:
        main(["--help"])
    assert raised.value.code == 0
    text = capsys.readouterr().out
    for option in ("--checkpoint", "--latent-steps", "--tune-steps", "--latent-space", "--save-generator", "--no-progress"):
        assert option in text
