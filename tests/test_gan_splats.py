"""Gaussian splat export (wysiwyg_gan.splats): the torch rasterizer twin, .ply I/O, the fit, the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from wysiwyg_gan.orbit_cameras import frontal_labels
from wysiwyg_gan.splats import Gaussians, load_splat_ply, rasterize_torch, save_splat_ply
from wysiwyg_gan.splats.fitting import SplatFitConfig, psnr, render_targets
from wysiwyg_gan.splats.rasterizer import SH_C0, pixel_intrinsics, project, rgb_to_sh_dc

RES = 32


def splat(means, scale, opacity_logit, rgb, quats=None) -> Gaussians:
    means = torch.as_tensor(means, dtype=torch.float32).reshape(-1, 3)
    n = means.shape[0]
    scale = torch.as_tensor(scale, dtype=torch.float32).expand(n, 3) if torch.as_tensor(scale).dim() < 2 else scale
    return Gaussians(
        means=means,
        log_scales=scale.log().clone(),
        quats=torch.tensor([1.0, 0.0, 0.0, 0.0]).expand(n, 4).clone() if quats is None else quats,
        opacity_logits=torch.as_tensor(opacity_logit, dtype=torch.float32).expand(n).clone(),
        sh=rgb_to_sh_dc(torch.as_tensor(rgb, dtype=torch.float32).reshape(-1, 3).expand(n, 3))[:, None].clone(),
    )


def test_single_isotropic_gaussian_renders_its_2d_footprint():
    """At the origin, seen by the frontal camera: centre alpha is its opacity, falloff Gaussian
    with the std the pinhole projection predicts (f * R * sigma / distance, plus the low-pass)."""
    labels = frontal_labels(1)
    sigma = 0.04
    g = splat([0.0, 0.0, 0.0], sigma, 1.0, [0.2, 0.6, 0.9])
    image, alpha = rasterize_torch(g, labels, 2 * RES, 2 * RES)
    focal = float(pixel_intrinsics(labels, 2 * RES, 2 * RES)[0, 0, 0])
    distance = float(labels[0, :16].reshape(4, 4)[:3, 3].norm())
    variance = (focal * sigma / distance) ** 2 + 0.3
    # Pixel centres at i + 0.5: the projected centre (32, 32) sits between four pixels.
    ys, xs = torch.meshgrid(torch.arange(2 * RES) + 0.5, torch.arange(2 * RES) + 0.5, indexing="ij")
    expected = torch.sigmoid(torch.tensor(1.0)) * torch.exp(-((xs - RES) ** 2 + (ys - RES) ** 2) / (2 * variance))
    expected = torch.where(expected >= 1 / 255, expected, torch.zeros_like(expected))
    assert torch.allclose(alpha[0], expected, atol=1e-5)
    peak = torch.sigmoid(torch.tensor(1.0)) * math.exp(-0.25 / variance)  # 0.5 px from the centre on both axes
    assert float(alpha[0].max()) == pytest.approx(float(peak), rel=1e-3)
    # Colour over black: the splat's colour premultiplied by its alpha.
    assert torch.allclose(image[0], alpha[0, ..., None] * torch.tensor([0.2, 0.6, 0.9]), atol=1e-5)


def test_anisotropic_rotation_turns_the_footprint():
    """A Gaussian long along world x, rotated 90 degrees about the view axis, is long along image y."""
    labels = frontal_labels(1)
    scales = torch.tensor([[0.1, 0.02, 0.02]])
    flat = splat([0.0, 0.0, 0.0], scales, 2.0, [1.0, 1.0, 1.0])
    half = math.sqrt(0.5)
    turned = splat([0.0, 0.0, 0.0], scales, 2.0, [1.0, 1.0, 1.0], quats=torch.tensor([[half, 0.0, 0.0, half]]))
    _, cov_flat, _ = project(flat, labels[0], RES, RES)
    _, cov_turned, _ = project(turned, labels[0], RES, RES)
    assert cov_flat[0, 0, 0] > 10 * cov_flat[0, 1, 1]
    assert torch.allclose(cov_turned[0].diagonal(), cov_flat[0].diagonal().flip(0), rtol=1e-4)


def test_near_opaque_splat_hides_far_one():
    """Depth order, whatever the storage order: the red splat nearer the camera hides the blue one."""
    labels = frontal_labels(1)
    eye = labels[0, :16].reshape(4, 4)[:3, 3]
    towards_camera = eye / eye.norm()
    near, far = 0.3 * towards_camera, -0.3 * towards_camera
    for order in ([near, far], [far, near]):
        rgbs = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]] if order[0] is near else [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
        g = splat(torch.stack(order), 0.1, 10.0, torch.tensor(rgbs))
        image, alpha = rasterize_torch(g, labels, RES, RES)
        centre = image[0, RES // 2, RES // 2]
        assert centre[0] > 0.98 and centre[2] < 0.011  # 0.99 * 0.01 of blue leaks through the clamped alpha, (order, centre)
        assert float(alpha[0, RES // 2, RES // 2]) > 0.9998  # 1 - (1 - 0.99)^2


def test_tiles_do_not_change_the_image():
    torch.manual_seed(0)
    g = splat(torch.randn(40, 3) * 0.2, 0.05, 0.0, torch.rand(40, 3))
    labels = frontal_labels(1)
    a = rasterize_torch(g, labels, 24, 20, tile_size=16)
    b = rasterize_torch(g, labels, 24, 20, tile_size=5)
    assert torch.allclose(a[0], b[0], atol=1e-6) and torch.allclose(a[1], b[1], atol=1e-6)


def test_gradients_reach_means_scales_colours_opacity_rotations():
    torch.manual_seed(0)
    g = splat(torch.randn(8, 3) * 0.1, 0.05, 0.0, torch.rand(8, 3))
    g.quats = torch.nn.functional.normalize(torch.randn(8, 4), dim=-1)
    g.log_scales = g.log_scales + 0.3 * torch.randn(8, 3)
    for tensor in g.parameters().values():
        tensor.requires_grad_(True)
    image, alpha = rasterize_torch(g, frontal_labels(1), RES, RES)
    (image * torch.rand_like(image)).sum().add(alpha.sum()).backward()
    for name, tensor in g.parameters().items():
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all(), name
        assert tensor.grad.abs().sum() > 0, name


def test_degree_one_colour_depends_on_view():
    g = splat([0.0, 0.0, 0.0], 0.1, 5.0, [0.5, 0.5, 0.5])
    g.sh = torch.cat([g.sh, torch.zeros(1, 3, 3)], dim=1)
    g.sh[0, 3] = 1.0  # the x-dependent basis function
    from wysiwyg_gan.orbit_cameras import offset_orbit_labels

    labels = offset_orbit_labels(torch.tensor([-30.0, 30.0]), torch.zeros(2))
    image, _ = rasterize_torch(g, labels, RES, RES)
    left, right = image[0, RES // 2, RES // 2], image[1, RES // 2, RES // 2]
    assert (left - right).abs().min() > 0.2


def test_ply_round_trip_and_layout(tmp_path):
    from plyfile import PlyData

    torch.manual_seed(0)
    g = splat(torch.randn(5, 3), 0.05, 0.3, torch.rand(5, 3))
    g.sh = torch.cat([g.sh, torch.randn(5, 3, 3)], dim=1)
    g.quats = torch.randn(5, 4)
    path = save_splat_ply(g, tmp_path / "s.ply")
    names = [prop.name for prop in PlyData.read(str(path))["vertex"].properties]
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[9:18] == [f"f_rest_{i}" for i in range(9)]
    assert names[18:] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    # Channel-major rest coefficients: f_rest_0..2 are red's three degree-1 coefficients.
    vertex = PlyData.read(str(path))["vertex"]
    assert torch.allclose(torch.tensor([float(vertex["f_rest_1"][0])]), g.sh[0, 2, 0:1])
    back = load_splat_ply(path)
    for name, value in g.parameters().items():
        assert torch.allclose(getattr(back, name), value), name
    degree0 = save_splat_ply(splat(torch.zeros(2, 3), 0.1, 0.0, [0.1, 0.2, 0.3]), tmp_path / "d0.ply")
    assert load_splat_ply(degree0).sh.shape == (2, 1, 3)
    assert float(load_splat_ply(degree0).sh[0, 0, 1]) * SH_C0 + 0.5 == pytest.approx(0.2, abs=1e-6)


def test_ply_missing_property_is_an_error(tmp_path):
    import numpy as np
    from plyfile import PlyData, PlyElement

    vertices = np.zeros(2, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    PlyData([PlyElement.describe(vertices, "vertex")]).write(str(tmp_path / "points.ply"))
    with pytest.raises(ValueError, match="missing vertex properties"):
        load_splat_ply(tmp_path / "points.ply")


def test_generate_splats_reload_and_rerender_close_to_gan(tiny_checkpoint, tmp_path):
    """The CLI writes a .ply per seed; reloaded and re-rendered by the twin from the held-out
    cameras it matches the GAN's render far better than the unfitted initialisation."""
    from wysiwyg_gan.generate import main
    from wysiwyg_gan.inference import load_trained_gan
    from wysiwyg_gan.splats.fitting import random_orbit_labels

    out = tmp_path / "out"
    fit = ["--splat-fit.num-gaussians", "400", "--splat-fit.fit-views", "6", "--splat-fit.heldout-views", "2",
           "--splat-fit.views-per-step", "2"]  # fmt: skip
    main(["--checkpoint", str(tiny_checkpoint), "--seeds", "0", "1", "--splats", "60", "--no-images",
          "--out", str(out), "--no-progress", *fit])  # fmt: skip
    summary = json.loads((out / "generate.json").read_text())
    assert summary["splats"]["steps"] == 60
    for seed in (0, 1):
        entry = summary["outputs"][str(seed)]["splats"]
        assert f"seed{seed:04d}_splats.ply" in summary["outputs"][str(seed)]["files"]
        assert entry["fit_steps"] == 60 and 0 < entry["gaussians"] <= 400 and entry["rasterizer"] == "torch"
        assert entry["fit_seconds"] > 0 and entry["render_seconds_per_frame"] > 0
        assert entry["psnr_heldout"] > entry["psnr_heldout_initial"] + 1.0  # the fit, not the initialisation alone

    gaussians = load_splat_ply(out / "seed0000_splats.ply")
    assert len(gaussians) == summary["outputs"]["0"]["splats"]["gaussians"]
    gan = load_trained_gan(tiny_checkpoint)
    field = gan.field(gan.mapping(gan.latents([0]), frontal_labels(1), 0.7), noise_mode="const")
    config = SplatFitConfig()
    labels = random_orbit_labels(2, config.yaw_range, config.pitch_range, config.seed + 1)  # the held-out cameras
    target, _, _ = render_targets(gan, field, labels, gan.resolution, 2)
    with torch.no_grad():
        image, _ = rasterize_torch(gaussians, labels, gan.resolution, gan.resolution)
    value = float(psnr(image.permute(0, 3, 1, 2).clamp(0, 1), target).mean())
    assert value == pytest.approx(summary["outputs"]["0"]["splats"]["psnr_heldout"], abs=0.05)
    assert value > 24.0  # a black image scores about 7 dB against these renders


@pytest.mark.parametrize("steps", ["0", "-3"])
def test_splats_needs_at_least_one_step(tiny_checkpoint, tmp_path, steps):
    from wysiwyg_gan.generate import main

    with pytest.raises(SystemExit, match="--splats takes the number of optimisation steps, >= 1"):
        main(["--checkpoint", str(tiny_checkpoint), "--splats", steps, "--out", str(tmp_path), "--no-progress"])


def test_splats_without_checkpoint_is_a_clear_error(tmp_path):
    from wysiwyg_gan.generate import main

    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="--checkpoint: .*no checkpoint"):
        main(["--checkpoint", str(tmp_path / "empty"), "--splats", "5", "--out", str(tmp_path / "o"), "--no-progress"])


def test_bad_fit_option_names_its_flag(tiny_checkpoint, tmp_path):
    from wysiwyg_gan.generate import main

    with pytest.raises(SystemExit, match="--splat-fit.num-gaussians must be an integer >= 1"):
        main(["--checkpoint", str(tiny_checkpoint), "--splats", "5", "--splat-fit.num-gaussians", "0",
              "--out", str(tmp_path), "--no-progress"])  # fmt: skip


def test_import_does_not_load_gsplat():
    code = "import sys, learned_sampler, wysiwyg_gan, wysiwyg_gan.splats, wysiwyg_gan.generate; print('gsplat' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_gsplat_backend_refuses_cpu():
    from wysiwyg_gan.splats import rasterize

    with pytest.raises(ValueError, match="backend 'gsplat' needs"):
        rasterize(splat([0.0, 0.0, 0.0], 0.1, 0.0, [1.0, 1.0, 1.0]), frontal_labels(1), 8, 8, backend="gsplat")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="gsplat's rasterizer needs CUDA")
def test_gsplat_matches_the_twin():
    torch.manual_seed(0)
    g = splat(torch.randn(200, 3) * 0.15, 0.03, 0.5, torch.rand(200, 3))
    g.quats = torch.randn(200, 4)
    g.log_scales = g.log_scales + 0.5 * torch.randn(200, 3)
    labels = frontal_labels(2)
    twin_image, twin_alpha = rasterize_torch(g, labels, RES, RES)
    from wysiwyg_gan.splats import rasterize

    cuda_image, cuda_alpha = rasterize(g.to("cuda"), labels.cuda(), RES, RES)
    assert torch.allclose(cuda_image.cpu(), twin_image, atol=2e-3)
    assert torch.allclose(cuda_alpha.cpu(), twin_alpha, atol=2e-3)
