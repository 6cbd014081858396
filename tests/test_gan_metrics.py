"""wysiwyg_gan.metrics: chamfer / normal consistency, NFS, depth warping, FID/KID offline, the CLI."""

from __future__ import annotations

import json
import math
import urllib.error

import numpy as np
import pytest
import torch

from learned_sampler import rays_from_cameras
from wysiwyg_gan.consistency_metrics import multiview_consistency, project_points, unproject_depth, warp_by_depth
from wysiwyg_gan.data.dataset import split_camera_labels, write_dataset
from wysiwyg_gan.data.shapes import ShapeSpec
from wysiwyg_gan.data.synthetic import GEOMETRY_JSON, SYNTHETIC_VERSION
from wysiwyg_gan.flatness_metrics import foreground_fraction, frame_relief, non_flatness_score, opaque_fraction
from wysiwyg_gan.geometry_metrics import chamfer_distance, geometry_accuracy, mesh_accuracy, normal_consistency
from wysiwyg_gan.inception_metrics import InceptionWeightsError, fid_kid
from wysiwyg_gan.metrics import main
from wysiwyg_gan.orbit_cameras import FRONTAL, orbit_camera_labels


# ----- opaque coverage and relief -----


def test_frame_relief_tells_an_object_in_front_of_a_wall_from_one_painted_on_it():
    far = 3.3
    depth = torch.full((5, 1, 16, 16), 3.0)  # a wall at 3.0 filling every frame
    opacity = torch.ones(5, 1, 16, 16)
    depth[1, 0, 6:10, 6:10] = 3.05  # painted: a shallow dent
    depth[2, 0, 5:11, 5:11] = 2.6  # a bump standing 0.4 in front of the wall
    opacity[3] = 0.0  # an object in front of nothing: the border counts at the far bound
    opacity[3, 0, 6:10, 6:10] = 1.0
    depth[3, 0, 6:10, 6:10] = 2.5
    opacity[4] = 0.0  # painted onto a band across the middle, the rest of the border empty
    opacity[4, 0, 5:11] = 1.0
    relief = frame_relief(depth, opacity, far)
    torch.testing.assert_close(relief, torch.tensor([0.0, 0.0, 0.4, 0.8, 0.0]))
    hole = torch.ones(1, 1, 16, 16)
    hole[0, 0, 4:12, 4:12] = 0.0  # a wall with a see-through hole where the object should be
    assert float(frame_relief(depth[:1], hole, far)[0]) == pytest.approx(-0.3)
    assert math.isnan(float(frame_relief(depth[:1], torch.zeros(1, 1, 16, 16), far)[0]))  # renders nothing
    with pytest.raises(ValueError, match=r"depth and opacity must both have shape \(B, 1, H, W\)"):
        frame_relief(depth[:, 0], opacity[:, 0], far)
    with pytest.raises(ValueError, match="border must be in"):
        frame_relief(depth, opacity, far, border=0.3)


def test_opaque_and_foreground_fractions():
    opacity = torch.zeros(2, 1, 4, 4)
    opacity[0, 0, :2] = 0.9  # half of one image, nothing of the other
    assert opaque_fraction(opacity) == 0.25 and opaque_fraction(opacity, threshold=0.95) == 0.0
    images = -torch.ones(1, 3, 4, 4)
    images[0, 1, 0, :] = 0.5  # one row with some green
    assert foreground_fraction(images) == 0.25
    with pytest.raises(ValueError, match=r"opacity must have shape \(B, 1, H, W\)"):
        opaque_fraction(torch.zeros(4, 4))
    with pytest.raises(ValueError, match=r"images must have shape \(B, 3, H, W\)"):
        foreground_fraction(torch.zeros(1, 1, 4, 4))


# ----- point clouds -----


def _grid_points(spacing: float = 1.0) -> torch.Tensor:
    axis = torch.arange(5, dtype=torch.float32) * spacing
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)


def test_chamfer_identical_is_zero_and_shift_gives_the_shift():
    points = torch.rand(3000, 3, generator=torch.Generator().manual_seed(0))
    identical = chamfer_distance(points, points.clone())
    assert identical == {"chamfer": 0.0, "a_to_b": 0.0, "b_to_a": 0.0}
    grid = _grid_points()  # points 1 apart: the nearest neighbour of a shifted point is its copy
    shifted = chamfer_distance(grid, grid + torch.tensor([0.0, 0.1, 0.0]))
    assert shifted["chamfer"] == pytest.approx(0.1, abs=1e-6)
    assert shifted["a_to_b"] == pytest.approx(0.1, abs=1e-6) and shifted["b_to_a"] == pytest.approx(0.1, abs=1e-6)


def test_chamfer_chunks_match_brute_force():
    generator = torch.Generator().manual_seed(1)
    a, b = torch.rand(2500, 3, generator=generator), torch.rand(700, 3, generator=generator)
    full = torch.cdist(a.double(), b.double())
    expected = 0.5 * (full.min(1).values.mean() + full.min(0).values.mean())
    assert chamfer_distance(a, b)["chamfer"] == pytest.approx(float(expected), rel=1e-5)
    from wysiwyg_gan.geometry_metrics import nearest_neighbours

    for method in ("chunked", "kdtree"):
        distances, indices = nearest_neighbours(a, b, method=method, query_chunk=37, reference_chunk=101)
        assert torch.equal(indices, full.argmin(1))
        torch.testing.assert_close(distances.double(), full.min(1).values, atol=1e-6, rtol=0)
    assert nearest_neighbours(a, a, method="chunked")[0].abs().max() == 0


def test_normal_consistency_is_orientation_blind():
    points = _grid_points()
    normals = torch.nn.functional.normalize(torch.randn(len(points), 3, generator=torch.Generator().manual_seed(2)), dim=-1)
    assert normal_consistency(points, normals, points, normals) == pytest.approx(1.0, abs=1e-6)
    assert normal_consistency(points, normals, points, -3.0 * normals) == pytest.approx(1.0, abs=1e-6)
    up = torch.tensor([0.0, 0.0, 1.0]).expand_as(points)
    side = torch.tensor([1.0, 0.0, 0.0]).expand_as(points)
    assert normal_consistency(points, up, points + 0.01, side) == pytest.approx(0.0, abs=1e-6)
    both = geometry_accuracy(points, up, points + torch.tensor([0.0, 0.0, 0.2]), up)
    assert both["chamfer"] == pytest.approx(0.2, abs=1e-6) and both["normal_consistency"] == pytest.approx(1.0)


def test_mesh_accuracy_of_an_icosphere_against_a_synthetic_sphere():
    trimesh = pytest.importorskip("trimesh")
    centre = (0.05, -0.02, 0.01)
    spec = ShapeSpec("sphere", {"radius": 0.2}, translation=centre)
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=0.2)
    mesh.apply_translation(centre)
    result = mesh_accuracy(mesh, spec, num_points=10_000)
    assert result["chamfer"] < 0.006  # ~ the spacing of 10k random points over the sphere
    assert result["normal_consistency"] > 0.98
    assert mesh_accuracy(mesh, spec, num_points=10_000) == result  # deterministic for a seed
    moved = mesh.copy()
    moved.apply_translation((0.06, 0.0, 0.0))
    assert mesh_accuracy((moved.vertices, moved.faces), spec, num_points=10_000)["chamfer"] > 0.02


# ----- non-flatness score -----


def test_non_flatness_flat_ramp_and_mask():
    bins = 64
    flat = torch.full((2, 1, 32, 32), 2.7)
    assert torch.equal(non_flatness_score(flat, bins=bins), torch.zeros(2))
    ramp = torch.linspace(2.4, 3.0, 64 * 64).reshape(1, 64, 64)
    assert float(non_flatness_score(ramp, bins=bins)[0]) == pytest.approx(math.log(bins), abs=1e-2)
    assert float(non_flatness_score(ramp, bins=8)[0]) == pytest.approx(math.log(8), abs=1e-3)
    # Background far away must not count: a flat foreground over a "far" background scores 0.
    depth = torch.full((1, 1, 16, 16), 3.3)
    depth[..., 4:12, 4:12] = 2.6
    mask = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    mask[..., 4:12, 4:12] = True
    assert float(non_flatness_score(depth, mask)[0]) == 0.0
    assert float(non_flatness_score(depth)[0]) > 0.5  # without the mask: two spikes, ln 2-ish
    opacity = mask.float() * 0.9  # float masks are thresholded at 0.5
    assert float(non_flatness_score(depth, opacity)[0]) == 0.0
    assert math.isnan(float(non_flatness_score(depth, torch.zeros_like(mask))[0]))


# ----- depth warping on an analytic scene -----


def _sphere_scene(labels: torch.Tensor, resolution: int, centre=(0.03, -0.02, 0.0), radius: float = 0.25):
    """Exact renders of a sphere whose colour is a linear function of the world position."""
    cam2world, intrinsics = split_camera_labels(labels)
    rays = rays_from_cameras(cam2world, intrinsics, resolution, resolution, 2.25, 3.3)
    c = torch.tensor(centre)
    offset = rays.origins - c
    along = -(offset * rays.directions).sum(-1)
    discriminant = along**2 - (offset * offset).sum(-1) + radius**2
    hit = discriminant > 0
    depth = torch.where(hit, along - discriminant.clamp_min(0).sqrt(), torch.full_like(along, 3.3))
    points = rays.origins + rays.directions * depth[..., None]
    colour = ((points - c) / (2 * radius) + 0.5).clamp(0, 1) * hit[..., None]
    return colour.permute(0, 3, 1, 2), depth[:, None], hit[:, None], points


def test_project_inverts_unproject_exactly():
    labels = orbit_camera_labels(torch.tensor([FRONTAL, FRONTAL + 0.4]), torch.tensor([FRONTAL, FRONTAL - 0.2]))
    depth = 2.4 + 0.5 * torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(3))
    points = unproject_depth(depth, labels)
    uv, distance, z = project_points(points, labels)
    centres = (torch.arange(12, dtype=torch.float32) + 0.5) / 12
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    torch.testing.assert_close(uv, torch.stack([u, v], dim=-1).expand(2, 12, 12, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(distance, depth[:, 0], atol=1e-5, rtol=0)
    assert bool((z > 0).all())


def test_warp_by_depth_consistent_scene_shuffled_image_and_occlusion():
    resolution = 64
    reference = orbit_camera_labels(torch.tensor([FRONTAL]), torch.tensor([FRONTAL]))
    second = orbit_camera_labels(torch.tensor([FRONTAL + 0.35]), torch.tensor([FRONTAL + 0.1]))
    dst_image, dst_depth, dst_mask, _ = _sphere_scene(reference, resolution)
    src_image, src_depth, src_mask, _ = _sphere_scene(second, resolution)
    warp = warp_by_depth(src_image, src_depth, second, dst_image, dst_depth, reference, src_mask, dst_mask)
    assert float(warp.valid_fraction()[0]) > 0.6 * float(src_mask.float().mean())
    assert float(warp.mean_error()[0]) < 3e-3  # bilinear interpolation of a smooth colour only
    torch.testing.assert_close(warp.projected_depth[warp.valid], warp.warped_depth[warp.valid], atol=0.03, rtol=0)
    # The same warp with the reference image's pixels shuffled: a large error.
    permutation = torch.randperm(resolution * resolution, generator=torch.Generator().manual_seed(4))
    shuffled = dst_image.flatten(2)[..., permutation].reshape_as(dst_image)
    bad = warp_by_depth(src_image, src_depth, second, shuffled, dst_depth, reference, src_mask, dst_mask)
    assert float(bad.mean_error()[0]) > 0.1
    # A large yaw: the part of the sphere the second camera sees but the reference does not is excluded.
    far_side = orbit_camera_labels(torch.tensor([FRONTAL + 1.2]), torch.tensor([FRONTAL]))
    src_image, src_depth, src_mask, points = _sphere_scene(far_side, resolution)
    warp = warp_by_depth(src_image, src_depth, far_side, dst_image, dst_depth, reference, src_mask, dst_mask)
    eye = split_camera_labels(reference)[0][0, :3, 3]
    normals = torch.nn.functional.normalize(points[0] - torch.tensor([0.03, -0.02, 0.0]), dim=-1)
    facing = (normals * torch.nn.functional.normalize(eye - points[0], dim=-1)).sum(-1)  # cos to the reference eye
    hidden = src_mask[0, 0] & (facing < -0.1)  # clearly on the far side for the reference camera
    assert int(hidden.sum()) > 100
    assert not bool(warp.valid[0, 0][hidden].any())  # occluded points never count
    clearly_visible = src_mask[0, 0] & (facing > 0.3)  # grazing points may fail the depth test: conservative
    assert int(clearly_visible.sum()) > 500 and bool(warp.valid[0, 0][clearly_visible].all())
    assert float(warp.mean_error()[0]) < 1e-2


# ----- a tiny generator -----


def test_multiview_consistency_on_a_tiny_checkpoint(tiny_checkpoint):
    from wysiwyg_gan.inference import load_trained_gan

    gan = load_trained_gan(tiny_checkpoint)
    result = multiview_consistency(gan, [0, 1, 2], batch_size=3, truncation_psi=0.7)
    assert len(result["per_seed"]) == 3
    assert result["valid_fraction"] > 0.05
    assert 0.0 <= result["error"] < 1.0
    assert result == multiview_consistency(gan, [0, 1, 2], batch_size=3, truncation_psi=0.7)  # deterministic
    other_batching = multiview_consistency(gan, [0, 1, 2], batch_size=2, truncation_psi=0.7)
    assert other_batching["per_seed"] == pytest.approx(result["per_seed"], rel=1e-4)


# ----- FID / KID with a random-weights Inception (nothing downloads) -----


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    """A valid state dict of torch-fidelity's InceptionV3 with random (seeded) weights."""
    from torch_fidelity import feature_extractor_inceptionv3 as inception

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inception, "load_state_dict_from_url", lambda *args, **kwargs: {})
        patch.setattr(inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *args, **kwargs: None)
        torch.manual_seed(0)
        model = inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():  # variance-preserving weights, so features do not vanish
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            fan_in = module.weight[0].numel()
            module.weight.data = torch.randn(module.weight.shape, generator=generator) * math.sqrt(2.0 / fan_in)
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    torch.save(model.state_dict(), path)
    return path


def _random_images(count: int, seed: int, size: int = 16) -> torch.Tensor:
    coarse = torch.rand(count, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
    images = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    return (images * 255).round().to(torch.uint8)


def test_fid_kid_offline_with_a_weights_file_is_deterministic(inception_weights, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    fakes, reals = _random_images(6, 0), _random_images(7, 1)  # Inception on CPU: ~0.7 s per image
    first = fid_kid(fakes, reals, inception_weights=inception_weights, kid_subsets=20)
    assert math.isfinite(first["fid"]) and first["fid"] > 0
    assert math.isfinite(first["kid"]) and first["kid_subset_size"] == 6
    assert (first["num_fakes"], first["num_reals"]) == (6, 7)
    second = fid_kid(fakes, reals, inception_weights=inception_weights, kid_subsets=20, fid=False)
    assert second["kid"] == first["kid"] and second["kid_std"] == first["kid_std"]
    assert not (tmp_path / "torch").exists()  # nothing was downloaded or cached


def test_fid_without_weights_offline_is_a_clear_error(monkeypatch, tmp_path, capsys):
    from torch_fidelity import feature_extractor_inceptionv3 as inception

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network unreachable (test)")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setattr(inception, "load_state_dict_from_url", offline)
    with pytest.raises(InceptionWeightsError, match="--inception-weights"):
        fid_kid(_random_images(4, 0), _random_images(4, 1))
    with pytest.raises(InceptionWeightsError, match="no such file"):
        fid_kid(_random_images(4, 0), _random_images(4, 1), inception_weights=tmp_path / "missing.pth")
    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", str(tmp_path / "unused.pt"), "--metrics", "fid", "--out", str(tmp_path / "m.json")])
    assert "--inception-weights" in str(exit_info.value) and "Traceback" not in str(exit_info.value)


# ----- the command line -----


def test_cli_writes_results_and_protocol(tiny_checkpoint, inception_weights, tmp_path):
    out = tmp_path / "metrics.json"
    args = ["--checkpoint", str(tiny_checkpoint), "--metrics", "fid", "kid", "consistency", "nfs", "relief"]
    args += ["--num-fakes", "5", "--num-seeds", "3", "--batch", "3", "--kid-subsets", "10", "--mirror", "False"]
    args += ["--inception-weights", str(inception_weights), "--out", str(out), "--device", "cpu"]
    main(args)
    report = json.loads(out.read_text())
    assert report["metrics"] == ["fid", "kid", "consistency", "nfs", "relief"]
    protocol = report["protocol"]
    assert protocol["checkpoint"] == str(tiny_checkpoint) and protocol["renderer"]["mode"] == "learned sampler"
    fid = report["results"]["fid"]
    assert math.isfinite(fid["fid"]) and fid["num_fakes"] == 5 and fid["truncation_psi"] == 1.0
    assert fid["mirror"] is False and fid["num_reals"] == 8 and fid["image_size"] == 16
    assert fid["seeds"] == [0, 4] and fid["samples_per_ray"] > 0 and fid["real_set"].endswith("data")
    assert report["results"]["kid"]["kid_subset_size"] == 5
    consistency = report["results"]["consistency"]
    assert len(consistency["per_seed"]) == 3 and consistency["truncation_psi"] == 0.7
    nfs = report["results"]["nfs"]
    assert 0.0 <= nfs["nfs"] <= math.log(64) and nfs["bins"] == 64
    relief = report["results"]["relief"]
    assert len(relief["per_seed"]) == 3 and 0.0 <= relief["painted"] <= 1.0
    assert relief["relief"] > 0.1  # the untrained SDF is a sphere in front of an empty background
    assert set(report["seconds"]) == {"fid_kid", "consistency", "nfs", "relief"}


def test_cli_geometry_from_a_reconstructions_folder(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    specs = {
        "img00000000.png": ShapeSpec("sphere", {"radius": 0.2}),
        "img00000001.png": ShapeSpec("sphere", {"radius": 0.15}, translation=(0.05, 0.0, 0.0)),
    }
    labels = orbit_camera_labels(torch.full((2,), FRONTAL), torch.full((2,), FRONTAL))
    geometry = {"version": SYNTHETIC_VERSION, "shapes": {name: spec.to_dict() for name, spec in specs.items()}}
    data = write_dataset(
        tmp_path / "data", np.zeros((2, 8, 8, 3), np.uint8), labels, list(specs), {GEOMETRY_JSON: json.dumps(geometry)}
    )
    folder = tmp_path / "invert"
    folder.mkdir()
    results = []
    for name, spec in specs.items():
        mesh = trimesh.creation.icosphere(subdivisions=3, radius=spec.parameters["radius"])
        mesh.apply_translation(spec.translation)
        mesh.export(folder / name.replace(".png", ".ply"))
        results.append({"image": name, "mesh": name.replace(".png", ".ply")})
    results.append({"image": "img00000002.png"})  # an inversion without a mesh: listed, not averaged
    (folder / "invert.json").write_text(json.dumps({"data": str(data), "results": results}))
    out = tmp_path / "geometry.json"
    main(["--metrics", "geometry", "--reconstructions", str(folder), "--num-points", "3000", "--out", str(out)])
    geometry_result = json.loads(out.read_text())["results"]["geometry"]
    assert geometry_result["num_images"] == 2 and len(geometry_result["per_image"]) == 2
    assert geometry_result["images_without_mesh"] == ["img00000002.png"]
    assert geometry_result["chamfer"] < 0.01 and geometry_result["normal_consistency"] > 0.97
    with pytest.raises(SystemExit, match="invert.json"):
        main(["--metrics", "geometry", "--reconstructions", str(tmp_path), "--out", str(out)])


def test_cli_bad_checkpoints_are_one_line_errors(tmp_path):
    with pytest.raises(SystemExit, match="does not exist"):
        main(["--checkpoint", str(tmp_path / "missing.pt"), "--metrics", "nfs", "--out", str(tmp_path / "m.json")])
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit, match="corrupt"):
        main(["--checkpoint", str(corrupt), "--metrics", "consistency", "--out", str(tmp_path / "m.json")])
    with pytest.raises(SystemExit, match="--checkpoint"):
        main(["--metrics", "nfs", "--out", str(tmp_path / "m.json")])


def test_cli_renderer_override_is_in_the_protocol(tiny_checkpoint, tmp_path):
    out = tmp_path / "metrics.json"
    base = ["--checkpoint", str(tiny_checkpoint), "--metrics", "nfs", "relief", "--num-seeds", "2", "--batch", "2"]
    base += ["--out", str(out), "--device", "cpu"]
    main([*base, "--renderer.mode", "two-pass", "--renderer.coarse-samples", "8", "--renderer.fine-samples", "8"])
    renderer = json.loads(out.read_text())["protocol"]["renderer"]
    assert renderer["mode"] == "two-pass" and renderer["source"] == "override"
    assert (renderer["coarse_samples"], renderer["fine_samples"], renderer["samples_per_ray"]) == (8, 8, 16)
    main([*base, "--renderer.budget", "5"])
    renderer = json.loads(out.read_text())["protocol"]["renderer"]
    assert renderer["mode"] == "learned sampler" and renderer["budget"] == 5 and renderer["samples_per_ray"] == 5
    main(base)
    renderer = json.loads(out.read_text())["protocol"]["renderer"]
    assert renderer["source"] == "checkpoint" and renderer["budget"] == "adaptive"
    assert renderer["adaptive_low"] <= renderer["samples_per_ray"] <= renderer["adaptive_high"]
    for bad, message in (
        (["--renderer.adaptive-fraction", "-1"], "--renderer.adaptive-fraction must be in [0, 1]"),
        (["--renderer.mode", "two-pass", "--renderer.budget", "4"], "set the learned sampler"),
        (["--renderer.adaptive-low", "6", "--renderer.adaptive-high", "5"], "must be <= its high"),
    ):
        with pytest.raises(SystemExit) as info:
            main([*base, *bad])
        assert message in str(info.value.code) and "\n" not in str(info.value.code)
