"""``wysiwyg_gan.mesh`` (chunked marching cubes, vertex colours, export) and ``python -m wysiwyg_gan.generate``."""

from __future__ import annotations

import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import trimesh

from gan_helpers import TINY_RESOLUTION, write_tiny_checkpoint
from wysiwyg_gan.checkpoint import checkpoint_name, load_checkpoint, save_checkpoint
from wysiwyg_gan.generate import GenerateConfig, main, orbit_angles, parse_seeds
from wysiwyg_gan.mesh import extract_mesh, largest_piece, save_mesh, vertex_colors


def sphere(radius=0.3, centre=(0.0, 0.0, 0.0)):
    centre = torch.tensor(centre)
    return lambda points: (points - centre).norm(dim=-1) - radius


def cube(half=0.3):
    return lambda points: points.abs().max(dim=-1).values - half


def wavy(seed=0):
    """A smooth SDF-like function with many components and ambiguous cells."""
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn(3, 24, generator=generator) * 12
    phases = torch.rand(24, generator=generator) * 6.28
    amplitudes = torch.randn(24, generator=generator)
    return lambda points: (torch.sin(points @ weights + phases) * amplitudes).sum(-1) / 5 + 0.1


def outward_fraction(mesh: trimesh.Trimesh, centre=(0.0, 0.0, 0.0)) -> float:
    return float((np.einsum("ij,ij->i", mesh.triangles_center - np.asarray(centre), mesh.face_normals) > 0).mean())


# ---------------------------------------------------------------------------------------------
# extract_mesh


def test_sphere_is_watertight_outward_and_on_the_radius():
    mesh = extract_mesh(sphere(0.3), 33, 1.0)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert outward_fraction(mesh) == 1.0
    assert mesh.volume > 0
    cell = 1.0 / 32
    radii = np.linalg.norm(mesh.vertices, axis=1)
    assert np.abs(radii - 0.3).max() < 0.05 * cell
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * 0.3**3, rel=0.02)


@pytest.mark.parametrize("chunk_slices", [1, 4, 7])
def test_slabs_give_the_one_slab_mesh(chunk_slices):
    centre = (0.05, -0.02, 0.03)
    reference = extract_mesh(sphere(0.33, centre), 29, 1.0, chunk_slices=10_000)
    chunked = extract_mesh(sphere(0.33, centre), 29, 1.0, chunk_slices=chunk_slices)
    assert len(chunked.vertices) == len(reference.vertices) and len(chunked.faces) == len(reference.faces)
    np.testing.assert_array_equal(chunked.vertices, reference.vertices)
    np.testing.assert_array_equal(chunked.faces, reference.faces)
    assert chunked.is_watertight and outward_fraction(chunked, centre) == 1.0


def test_slabs_on_a_surface_with_many_components_and_ambiguous_cells():
    reference = extract_mesh(wavy(), 21, 1.0, chunk_slices=10_000)
    for chunk_slices in (1, 3):
        chunked = extract_mesh(wavy(), 21, 1.0, chunk_slices=chunk_slices)
        assert len(chunked.vertices) == len(reference.vertices)
        np.testing.assert_array_equal(chunked.faces, reference.faces)
        # Lewiner's cell-interior vertices keep skimage's float32 slab-local rounding.
        np.testing.assert_allclose(chunked.vertices, reference.vertices, rtol=0, atol=1e-6)
        assert chunked.is_watertight and chunked.is_winding_consistent and chunked.volume > 0
    assert len(reference.split(only_watertight=False)) > 1


def test_every_grid_point_is_evaluated_once_in_bounded_chunks():
    calls = []

    def sdf(points):
        calls.append(points.shape[0])
        assert points.dtype == torch.float32 and points.shape[1] == 3
        assert not torch.is_grad_enabled()
        return points.norm(dim=-1) - 0.3

    extract_mesh(sdf, 20, 1.0, chunk_slices=3, chunk_points=50)
    assert sum(calls) == 20**3
    assert max(calls) <= 50


def test_a_surface_cut_by_the_box_is_capped_on_the_faces():
    mesh = extract_mesh(sphere(0.6), 32, 1.0, chunk_slices=5)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert outward_fraction(mesh) > 0.99
    assert np.abs(mesh.vertices).max() <= 0.5 + 1e-12
    assert (np.abs(mesh.vertices) == 0.5).any(axis=1).sum() > 50  # the six caps
    inside = [p for p in np.random.default_rng(0).uniform(-0.5, 0.5, (400, 3)) if np.linalg.norm(p) < 0.6]
    assert mesh.volume == pytest.approx(len(inside) / 400, abs=0.08)


def test_whole_box_inside_gives_the_box_and_cubes_keep_their_corners():
    box = extract_mesh(lambda points: points.norm(dim=-1) - 5.0, 2, 1.0)
    assert len(box.vertices) == 8 and box.is_watertight and box.volume == pytest.approx(1.0)
    mesh = extract_mesh(cube(0.3), 31, 2.0, chunk_slices=4)
    assert mesh.is_watertight and mesh.volume == pytest.approx(0.6**3, rel=0.03)
    assert outward_fraction(mesh) > 0.99


def test_box_size_and_level_set_world_coordinates():
    mesh = extract_mesh(sphere(0.6), 33, 2.0)
    assert np.abs(np.linalg.norm(mesh.vertices, axis=1) - 0.6).max() < 0.01
    shell = extract_mesh(sphere(0.3), 33, 1.0, level=0.1)
    assert np.abs(np.linalg.norm(shell.vertices, axis=1) - 0.4).max() < 0.01


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"resolution": 1}, "resolution"),
        ({"resolution": 8.0}, "resolution"),
        ({"box_size": 0.0}, "box_size"),
        ({"box_size": -1.0}, "box_size"),
        ({"box_size": float("nan")}, "box_size"),
        ({"chunk_slices": 0}, "chunk_slices"),
        ({"sdf_fn": sphere(0.3, (3.0, 0.0, 0.0))}, "no zero level set inside the box"),
        ({"sdf_fn": lambda points: points[:, 0] * float("nan")}, "non-finite"),
        ({"sdf_fn": lambda points: points[:5, 0]}, "one value per point"),
    ],
)
def test_clear_errors(kwargs, message):
    arguments = {"sdf_fn": sphere(0.3), "resolution": 8, "box_size": 1.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        extract_mesh(**arguments)


# ---------------------------------------------------------------------------------------------
# vertex_colors and save_mesh


class DirectionField:
    """Colour = (view direction + 1) / 2; the SDF is a sphere, so normals are radial."""

    planes = torch.zeros(1)

    def __call__(self, positions, directions):
        return {"rgb": (directions + 1) / 2}

    def normals(self, positions):
        return torch.nn.functional.normalize(positions, dim=-1)


def test_vertex_colors_look_along_minus_the_normal():
    vertices = np.array([[0.3, 0.0, 0.0], [0.0, -0.3, 0.0], [0.0, 0.0, 0.3]])
    colours = vertex_colors(DirectionField(), vertices, chunk_points=2)
    assert colours.dtype == np.uint8 and colours.shape == (3, 3)
    np.testing.assert_array_equal(colours, ((-vertices / 0.3 + 1) / 2 * 255 + 0.5).astype(np.uint8))
    given = vertex_colors(DirectionField(), vertices, normals=-vertices)
    np.testing.assert_array_equal(given, ((vertices / 0.3 + 1) / 2 * 255 + 0.5).astype(np.uint8))
    from_camera = vertex_colors(DirectionField(), vertices, directions=np.array([0.0, 0.0, -2.0]))
    np.testing.assert_array_equal(from_camera, np.tile([128, 128, 0], (3, 1)))


@pytest.mark.parametrize("suffix", [".ply", ".obj"])
def test_save_and_reload_keep_vertices_faces_and_colours(tmp_path, suffix):
    mesh = extract_mesh(sphere(0.3), 17, 1.0)
    colours = np.random.default_rng(0).integers(0, 256, (len(mesh.vertices), 3), dtype=np.uint8)
    mesh.visual.vertex_colors = colours
    path = save_mesh(mesh, tmp_path / "sub" / f"mesh{suffix}")
    loaded = trimesh.load(path, process=False, force="mesh")
    assert len(loaded.vertices) == len(mesh.vertices) and len(loaded.faces) == len(mesh.faces)
    np.testing.assert_allclose(loaded.vertices, mesh.vertices, atol=1e-6)
    np.testing.assert_array_equal(loaded.visual.vertex_colors[:, :3], colours)
    assert loaded.is_watertight


def test_largest_piece_is_the_one_with_the_most_area():
    big = trimesh.creation.icosphere(subdivisions=1, radius=0.3)
    small = trimesh.creation.icosphere(subdivisions=3, radius=0.05)  # more faces, less area
    small.apply_translation((0.6, 0.0, 0.0))
    piece, count = largest_piece(trimesh.util.concatenate([small, big]))
    assert count == 2 and len(piece.faces) == len(big.faces)
    assert largest_piece(big) == (big, 1)


def test_save_mesh_rejects_other_suffixes(tmp_path):
    with pytest.raises(ValueError, match=r"\.ply or \.obj"):
        save_mesh(extract_mesh(sphere(0.3), 9, 1.0), tmp_path / "mesh.stl")


# ---------------------------------------------------------------------------------------------
# python -m wysiwyg_gan.generate


def test_parse_seeds():
    assert parse_seeds(["0-3", "7,5", 3]) == [0, 1, 2, 3, 7, 5]
    for bad in (["-1"], ["3-1"], ["x"], ["1-"], []):
        with pytest.raises(ValueError):
            parse_seeds(bad)


def test_orbit_is_a_loop_of_distinct_cameras_starting_at_the_view():
    yaw, pitch = orbit_angles(GenerateConfig(checkpoint=None, video_frames=6, yaw=10.0, pitch=-3.0))
    assert (yaw[0].item(), pitch[0].item()) == (10.0, -3.0)
    assert len({(round(a, 4), round(b, 4)) for a, b in zip(yaw.tolist(), pitch.tolist())}) == 6
    assert yaw.max().item() <= 10.0 + 30.0 + 1e-4 and yaw.min().item() >= 10.0 - 30.0 - 1e-4
    assert pitch.max().item() <= -3.0 and pitch.min().item() >= -3.0 - 5.0 - 1e-4


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny"))


def read_json(path):
    return json.loads(path.read_text())


def test_cli_end_to_end(tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    main(
        [
            "--checkpoint", str(tiny_checkpoint.parent),  # a run folder: its newest checkpoint
            "--seeds", "0-1",
            "--out", str(out),
            "--video-frames", "5",
            "--mesh-resolution", "32",
            "--mesh-format", "ply", "obj",
        ]
    )  # fmt: skip
    summary = read_json(out / "generate.json")
    assert summary["checkpoint"] == str(tiny_checkpoint)
    assert summary["seeds"] == [0, 1] and summary["truncation_psi"] == 0.7
    assert summary["resolution"] == TINY_RESOLUTION
    assert summary["renderer"]["mode"] == "learned sampler" and summary["renderer"]["source"] == "checkpoint"
    assert summary["renderer"]["budget"] == "adaptive" and summary["samples_per_ray"] > 0
    for seed in (0, 1):
        stem = f"seed{seed:04d}"
        files = summary["outputs"][str(seed)]["files"]
        expected = ["", "_depth", "_normals", "_orbit.mp4", ".ply", ".obj"]
        assert files == [stem + (suffix if "." in suffix else suffix + ".png") for suffix in expected]
        assert all((out / name).is_file() for name in files)
        image = iio.imread(out / f"{stem}.png")
        depth = iio.imread(out / f"{stem}_depth.png")
        normals = iio.imread(out / f"{stem}_normals.png")
        assert image.shape == (16, 16, 3) and image.dtype == np.uint8
        assert depth.shape == (16, 16) and depth.dtype == np.uint16
        assert normals.shape == (16, 16, 3) and normals.dtype == np.uint8
        # The initial SDF is a blob at the centre: covered (and nearer than the far plane) in the
        # middle of the image, background in the corners.
        assert depth[8, 8] > 1000 and depth[0, 0] < 100
        assert normals[8, 8].max() > 50 and normals[0, 0].max() < 5
        # Facing the camera (+z) in the middle: the z channel is the largest.
        assert normals[8, 8, 2] > 200
        import imageio_ffmpeg

        frames, _ = imageio_ffmpeg.count_frames_and_secs(str(out / f"{stem}_orbit.mp4"))
        assert frames == 5
        for suffix in ("ply", "obj"):
            mesh = trimesh.load(out / f"{stem}.{suffix}", process=False, force="mesh")
            assert len(mesh.faces) > 100 and mesh.is_watertight and mesh.volume > 0
            assert mesh.visual.kind == "vertex"
        stats = summary["outputs"][str(seed)]["mesh"]
        assert stats["watertight"] and stats["vertices"] == len(mesh.vertices)
        # The closed blob lies inside the box and contains the origin.
        assert mesh.contains([[0.0, 0.0, 0.0]])[0]
    assert not np.array_equal(iio.imread(out / "seed0000.png"), iio.imread(out / "seed0001.png"))


def test_truncation_cutoff_truncates_only_the_first_ws(tiny_checkpoint, tmp_path):
    from wysiwyg_gan.inference import load_trained_gan
    from wysiwyg_gan.orbit_cameras import frontal_labels

    gan = load_trained_gan(tiny_checkpoint)
    gan.generator.mapping.w_avg.fill_(0.5)  # the untrained average is zero: make truncation visible
    z, condition = gan.latents([0, 1]), frontal_labels(2)
    full, none = gan.mapping(z, condition, 0.5), gan.mapping(z, condition, 1.0)
    cut = gan.mapping(z, condition, 0.5, truncation_cutoff=2)
    torch.testing.assert_close(cut[:, :2], full[:, :2])
    torch.testing.assert_close(cut[:, 2:], none[:, 2:])
    assert not torch.allclose(full[:, 2:], none[:, 2:])
    main(["--checkpoint", str(tiny_checkpoint), "--seeds", "0", "--truncation-cutoff", "2", "--out", str(tmp_path),
          "--no-progress"])  # fmt: skip
    assert read_json(tmp_path / "generate.json")["truncation_cutoff"] == 2


def test_cli_is_deterministic_and_honours_resolution_and_camera(tiny_checkpoint, tmp_path):
    arguments = ["--checkpoint", str(tiny_checkpoint), "--seeds", "3", "--resolution", "32", "--no-progress"]
    main([*arguments, "--out", str(tmp_path / "a")])
    main([*arguments, "--out", str(tmp_path / "b")])
    main([*arguments, "--out", str(tmp_path / "c"), "--yaw", "40", "--truncation-psi", "1.0"])
    for name in ("seed0003.png", "seed0003_depth.png", "seed0003_normals.png"):
        first, second = iio.imread(tmp_path / "a" / name), iio.imread(tmp_path / "b" / name)
        assert first.shape[:2] == (32, 32)
        np.testing.assert_array_equal(first, second)
    assert not np.array_equal(iio.imread(tmp_path / "a" / "seed0003.png"), iio.imread(tmp_path / "c" / "seed0003.png"))
    assert read_json(tmp_path / "c" / "generate.json")["camera"]["yaw_degrees"] == 40.0


def test_cli_gif_video_only_and_two_pass_checkpoint(tiny_checkpoint, tmp_path):
    state = load_checkpoint(tiny_checkpoint)
    state["images_seen"] = 0  # the start of the schedule: two-pass rendering
    early = save_checkpoint(state, tmp_path / "early" / checkpoint_name(0))
    out = tmp_path / "out"
    main(["--checkpoint", str(early), "--seeds", "2", "--out", str(out), "--no-images", "--video-frames", "4",
          "--video-format", "gif", "--resolution", "12", "--no-progress"])  # fmt: skip
    summary = read_json(out / "generate.json")
    assert summary["renderer"]["mode"] == "two-pass" and summary["samples_per_ray"] == 8  # saved 4 + 4
    assert summary["renderer"]["samples_per_ray"] == 8
    assert summary["outputs"]["2"]["files"] == ["seed0002_orbit.gif"]
    frames = iio.imread(out / "seed0002_orbit.gif", index=None)
    assert frames.shape[0] == 4 and frames.shape[1:3] == (12, 12)


def test_cli_falls_back_to_gif_once_without_ffmpeg(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    import imageio_ffmpeg

    def unavailable():
        raise RuntimeError("no ffmpeg here")

    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", unavailable)
    out = tmp_path / "out"
    main(["--checkpoint", str(tiny_checkpoint), "--seeds", "0-1", "--out", str(out), "--no-images",
          "--video-frames", "3", "--no-progress"])  # fmt: skip
    assert capsys.readouterr().out.count("writing GIF videos instead of mp4") == 1
    summary = read_json(out / "generate.json")
    assert summary["video"]["format"] == "gif"
    for seed in (0, 1):
        assert summary["outputs"][str(seed)]["files"] == [f"seed{seed:04d}_orbit.gif"]
        assert iio.imread(out / f"seed{seed:04d}_orbit.gif", index=None).shape[0] == 3
    assert not list(out.glob("*.mp4"))


def test_cli_errors_are_one_line_messages(tiny_checkpoint, tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(tiny_checkpoint.read_bytes()[:2000])
    empty_run = tmp_path / "empty_run"
    empty_run.mkdir()
    cases = [
        (["--checkpoint", str(tmp_path / "missing.pt")], "does not exist"),
        (["--checkpoint", str(corrupt)], "corrupt"),
        (["--checkpoint", str(empty_run)], "no checkpoint"),
        (["--checkpoint", str(tiny_checkpoint), "--resolution", "18"], "divisible"),
        (["--checkpoint", str(tiny_checkpoint), "--seeds", "4-2"], "--seeds"),
        (["--checkpoint", str(tiny_checkpoint), "--mesh-resolution", "1"], "--mesh-resolution"),
        (["--checkpoint", str(tiny_checkpoint), "--no-images"], "nothing to generate"),
        (["--checkpoint", str(tiny_checkpoint), "--renderer.budget", "0"], "--renderer.budget must be"),
        (["--checkpoint", str(tiny_checkpoint), "--renderer.adaptive-fraction", "2"], "--renderer.adaptive-fraction"),
        (["--checkpoint", str(tiny_checkpoint), "--renderer.adaptive-low", "9"], "must be <= its high (8)"),
        (["--checkpoint", str(tiny_checkpoint), "--renderer.coarse-samples", "8"], "renders with the learned sampler"),
    ]
    for arguments, message in cases:
        with pytest.raises(SystemExit) as info:
            main([*arguments, "--out", str(tmp_path / "out"), "--no-progress"])
        text = str(info.value.code)
        assert message in text and "\n" not in text, text


def test_cli_renderer_overrides_are_recorded(tiny_checkpoint, tmp_path):
    def run(name, *renderer):
        main(["--checkpoint", str(tiny_checkpoint), "--seeds", "0-1", "--out", str(tmp_path / name), "--no-progress",
              "--video-frames", "2", *renderer])  # fmt: skip
        return read_json(tmp_path / name / "generate.json")

    two_pass = run("two-pass", "--renderer.mode", "two-pass", "--renderer.coarse-samples", "8", "--renderer.fine-samples", "8")
    renderer = two_pass["renderer"]
    assert renderer["mode"] == "two-pass" and renderer["source"] == "override"
    assert (renderer["coarse_samples"], renderer["fine_samples"]) == (8, 8)
    assert two_pass["samples_per_ray"] == 16 and renderer["samples_per_ray"] == 16
    assert all(entry["samples_per_ray"] == 16 for entry in two_pass["outputs"].values())
    assert two_pass["options"]["renderer"]["mode"] == "two-pass"

    fixed = run("fixed", "--renderer.mode", "learned", "--renderer.budget", "6")
    assert fixed["renderer"]["mode"] == "learned sampler" and fixed["renderer"]["budget"] == 6
    assert fixed["samples_per_ray"] == 6 and fixed["renderer"]["samples_per_ray"] == 6

    adaptive = run("adaptive", "--renderer.adaptive-low", "4", "--renderer.adaptive-high", "12",
                   "--renderer.adaptive-fraction", "0.5")  # fmt: skip
    renderer = adaptive["renderer"]
    assert renderer["budget"] == "adaptive" and (renderer["adaptive_low"], renderer["adaptive_high"]) == (4, 12)
    assert renderer["adaptive_fraction"] == 0.5 and renderer["expected_samples_per_ray"] == 8
    assert 4 < adaptive["samples_per_ray"] < 12 and 4 < renderer["samples_per_ray"] < 12

    default = run("default")
    assert default["renderer"]["source"] == "checkpoint" and default["renderer"]["budget"] == "adaptive"
    # The saved policy: 4 samples for most rays, 8 for a tenth of them.
    assert 4 <= default["samples_per_ray"] < fixed["samples_per_ray"]
    for name in ("seed0000.png", "seed0001_depth.png"):
        assert not np.array_equal(iio.imread(tmp_path / "default" / name), iio.imread(tmp_path / "two-pass" / name))


def test_cli_learned_sampler_of_a_checkpoint_whose_sampler_never_trained_is_an_error(tiny_checkpoint, tmp_path):
    state = load_checkpoint(tiny_checkpoint)
    state["images_seen"] = 0
    early = save_checkpoint(state, tmp_path / "early" / checkpoint_name(0))
    with pytest.raises(SystemExit) as info:
        main(["--checkpoint", str(early), "--seeds", "0", "--out", str(tmp_path / "out"), "--no-progress",
              "--renderer.mode", "learned"])  # fmt: skip
    text = str(info.value.code)
    assert "was never trained" in text and "--renderer.mode two-pass" in text and "\n" not in text
