"""The GAN's data package: EG3D dataset validation and loading, mirroring, the synthetic dataset."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

import wysiwyg_gan
from learned_sampler import rays_from_cameras
from wysiwyg_gan.data import (
    FAMILIES,
    CameraImageDataset,
    DatasetError,
    ShapeSpec,
    backdrop_images,
    default_dataset,
    load_shape_specs,
    mirror_camera_label,
    render_shapes,
    sample_camera_labels,
    sample_shape_spec,
    sample_surface_points,
    shape_sdf,
    split_camera_labels,
    synthesize_dataset,
    validate_dataset,
    write_dataset,
)
from wysiwyg_gan.data.synthesize import main as synthesize_main
from wysiwyg_gan.data.shape_sampling import OBJECT_RADIUS

# ----- helpers -----


def _labels(count: int, seed: int = 0) -> torch.Tensor:
    return sample_camera_labels(count, torch.Generator().manual_seed(seed))


def _images(count: int, size: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def _valid_entries(count: int) -> list:
    return [[f"img{i}.png", row] for i, row in enumerate(_labels(count).tolist())]


def _write_raw(folder: Path, dataset_json: object | str | None, images: dict[str, object]) -> Path:
    """A possibly broken dataset: ``images`` maps names to uint8 arrays or raw bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    if dataset_json is not None:
        text = dataset_json if isinstance(dataset_json, str) else json.dumps(dataset_json)
        (folder / "dataset.json").write_text(text)
    for name, content in images.items():
        if isinstance(content, bytes):
            (folder / name).write_bytes(content)
        else:
            Image.fromarray(content).save(folder / name)
    return folder


def _zip_folder(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w") as archive:
        for file in sorted(folder.rglob("*")):
            archive.write(file, file.relative_to(folder).as_posix())
    return target


def _project(labels: torch.Tensor, points: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel coordinates ``(u, v)`` of world points (..., 3) seen by cameras (..., 25)."""
    cam2world, intrinsics = split_camera_labels(labels.double())
    homogeneous = torch.cat([points.double(), torch.ones_like(points[..., :1]).double()], dim=-1)
    camera = (torch.linalg.inv(cam2world) @ homogeneous[..., None])[..., :3, 0]
    image = (intrinsics @ (camera / camera[..., 2:])[..., None])[..., 0]
    return image[..., :2] * size


def _mirror_spec(spec: ShapeSpec) -> ShapeSpec:
    """The object mirrored in world x (every primitive is symmetric in its local x)."""
    flip = np.diag([-1.0, 1.0, 1.0])
    return ShapeSpec(
        family=spec.family,
        parameters=spec.parameters,
        rotation=tuple(map(tuple, flip @ np.asarray(spec.rotation) @ flip)),
        translation=(-spec.translation[0], spec.translation[1], spec.translation[2]),
        colour=spec.colour,
        parts=tuple(_mirror_spec(part) for part in spec.parts),
    )


def _one_spec_per_family() -> list[ShapeSpec]:
    generator = torch.Generator().manual_seed(3)
    found: dict[str, ShapeSpec] = {}
    while len(found) < len(FAMILIES):
        spec = sample_shape_spec(generator)
        found.setdefault(spec.family, spec)
    return [found[family] for family in FAMILIES]


@pytest.fixture(scope="module")
def family_specs() -> list[ShapeSpec]:
    return _one_spec_per_family()


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    """A written dataset of 3 random 8x8 images, with its zip beside it."""
    root = tmp_path_factory.mktemp("data")
    folder = write_dataset(root / "folder", _images(3), _labels(3))
    _zip_folder(folder, root / "data.zip")
    return folder


# ----- validation -----

_SQUARE = np.zeros((8, 8, 3), np.uint8)


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


_BROKEN = {
    "missing dataset.json": (None, {"img0.png": _SQUARE}, "dataset.json: missing"),
    "malformed json": ("{labels: ", {}, "malformed JSON"),
    "labels missing": ({"other": []}, {}, '"labels"'),
    "labels not a list": ({"labels": {"img0.png": []}}, {}, "must be a list"),
    "entry not a pair": ({"labels": [["img0.png"]]}, {}, r"label 0 must be \[file name"),
    "label not a list": ({"labels": [["img0.png", 3.0]]}, {}, r"label 0 must be \[file name"),
    "name not a string": ({"labels": [[7, [0.0] * 25]]}, {}, "file name must be a non-empty string"),
    "name escapes": ({"labels": [["../img0.png", [0.0] * 25]]}, {}, "points outside the dataset"),
    "short label": ({"labels": [["img0.png", [0.0] * 24]]}, {"img0.png": _SQUARE}, "has 24 numbers, expected 25"),
    "non-number": ({"labels": [["img0.png", [0.0] * 24 + ["x"]]]}, {"img0.png": _SQUARE}, "not a number"),
    "nan": ('{"labels": [["img0.png", [NaN' + ", 0" * 24 + "]]]}", {"img0.png": _SQUARE}, "non-finite"),
    "infinity": ('{"labels": [["img0.png", [Infinity' + ", 0" * 24 + "]]]}", {"img0.png": _SQUARE}, "non-finite"),
    "duplicate": ({"labels": [["img0.png", [0.0] * 25]] * 2}, {"img0.png": _SQUARE}, "more than once"),
    "no images": ({"labels": []}, {}, "no images"),
    "missing image": ({"labels": [["img0.png", [0.0] * 25]]}, {}, "img0.png: labelled image file is missing"),
    "garbage image": ({"labels": [["img0.png", [0.0] * 25]]}, {"img0.png": b"not a png"}, "not a readable image"),
    "truncated image": (
        {"labels": [["img0.png", [0.0] * 25]]},
        {"img0.png": _png_bytes(_images(1, 32)[0])[:-30]},
        "corrupt image",
    ),
    "non-square": (
        {"labels": [["img0.png", [0.0] * 25]]},
        {"img0.png": np.zeros((8, 6, 3), np.uint8)},
        "6x8; images must be square",
    ),
    "different sizes": (
        {"labels": [["img0.png", [0.0] * 25], ["img1.png", [0.0] * 25]]},
        {"img0.png": _SQUARE, "img1.png": np.zeros((16, 16, 3), np.uint8)},
        "same size",
    ),
}


@pytest.mark.parametrize("case", sorted(_BROKEN))
def test_validate_dataset_names_the_problem(tmp_path, case):
    dataset_json, images, message = _BROKEN[case]
    folder = _write_raw(tmp_path / "data", dataset_json, images)
    with pytest.raises(DatasetError, match=message) as error:
        validate_dataset(folder)
    assert str(folder) in str(error.value)  # the message names the file
    # The same problem inside a zip is reported the same way.
    archive = _zip_folder(folder, tmp_path / "data.zip")
    with pytest.raises(DatasetError, match=message):
        validate_dataset(archive)


def test_validate_dataset_rejects_bad_paths(tmp_path):
    with pytest.raises(DatasetError, match="no such file or folder"):
        validate_dataset(tmp_path / "absent")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match="not a dataset folder or .zip"):
        validate_dataset(tmp_path / "notes.txt")
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DatasetError, match="corrupt or unreadable zip"):
        validate_dataset(tmp_path / "broken.zip")
    assert issubclass(DatasetError, ValueError)


def test_validate_dataset_describes_a_valid_dataset(small_dataset):
    info = validate_dataset(small_dataset)
    assert (info.num_images, info.resolution) == (3, 8)
    assert info.names == ("img00000000.png", "img00000001.png", "img00000002.png")
    assert info.labels.shape == (3, 25) and info.labels.dtype == np.float32
    torch.testing.assert_close(torch.from_numpy(info.labels), _labels(3))


# ----- mirroring -----


def test_mirror_camera_label_is_eg3d_flip_yaw_and_an_involution():
    labels = _labels(8)
    mirrored = mirror_camera_label(labels)
    torch.testing.assert_close(mirror_camera_label(mirrored), labels)
    expected = labels.clone().reshape(8, 25)
    for row, column in [(0, 1), (0, 2), (1, 0), (2, 0), (0, 3)]:
        expected[:, 4 * row + column] *= -1
    torch.testing.assert_close(mirrored, expected)  # EG3D's flip_yaw for centred cameras
    with pytest.raises(ValueError, match="25"):
        mirror_camera_label(torch.zeros(3, 24))


def test_mirrored_camera_sees_mirrored_points_at_mirrored_pixels():
    labels = _labels(6, seed=1).double()
    # An off-centre, skewed camera too: the mirror must handle general intrinsics.
    labels[3, 16 + 1], labels[3, 16 + 2], labels[3, 16 + 5] = 0.02, 0.43, 0.55
    mirrored = mirror_camera_label(labels)
    points = torch.randn(6, 50, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.3
    mirror_points = points * points.new_tensor([-1.0, 1.0, 1.0])
    size = 40
    pixels = _project(labels[:, None], points, size)
    mirror_pixels = _project(mirrored[:, None], mirror_points, size)
    torch.testing.assert_close(mirror_pixels[..., 0], size - pixels[..., 0])
    torch.testing.assert_close(mirror_pixels[..., 1], pixels[..., 1])
    # Pixel rays agree too: the mirrored camera's ray through column j is the mirror of the
    # original's ray through column W - 1 - j.
    rays = rays_from_cameras(*split_camera_labels(labels), size, size, 2.25, 3.3)
    mirror_rays = rays_from_cameras(*split_camera_labels(mirrored), size, size, 2.25, 3.3)
    flip = rays.origins.new_tensor([-1.0, 1.0, 1.0])
    torch.testing.assert_close(mirror_rays.origins, (rays.origins * flip).flip(2))
    torch.testing.assert_close(mirror_rays.directions, (rays.directions * flip).flip(2))


def test_mirrored_render_is_the_render_of_the_mirrored_object(family_specs):
    labels = _labels(len(family_specs), seed=2)
    images, _ = render_shapes(family_specs, labels, 24)
    mirrored, _ = render_shapes([_mirror_spec(spec) for spec in family_specs], mirror_camera_label(labels), 24)
    difference = (mirrored - images.flip(2)).abs()
    assert float(difference.mean()) < 2e-3
    assert float((difference.amax(-1) > 0.02).float().mean()) < 0.01  # a few edge rays at most


# ----- loading -----


def test_dataset_items_and_xflip(small_dataset):
    plain = CameraImageDataset(small_dataset)
    flipped = CameraImageDataset(small_dataset, xflip=True)
    assert (len(plain), len(flipped), plain.resolution) == (3, 6, 8)
    assert flipped.labels.shape == (6, 25) and flipped.names[3:] == plain.names
    pixels = _images(3)
    for index in range(3):
        image, label = plain[index]
        assert image.dtype == label.dtype == torch.float32 and image.shape == (3, 8, 8)
        expected = torch.from_numpy(pixels[index]).permute(2, 0, 1).float() / 127.5 - 1.0
        torch.testing.assert_close(image, expected)
        mirror_image, mirror_label = flipped[index + 3]
        torch.testing.assert_close(mirror_image, image.flip(-1))
        torch.testing.assert_close(mirror_label, mirror_camera_label(label))
        torch.testing.assert_close(flipped.labels[index + 3], mirror_label)
    torch.testing.assert_close(plain[-1][0], plain[2][0])
    with pytest.raises(IndexError):
        plain[3]


def test_zip_and_folder_give_identical_items_also_in_workers(small_dataset):
    folder = CameraImageDataset(small_dataset, xflip=True, cache=False)
    archive = CameraImageDataset(small_dataset.parent / "data.zip", xflip=True, cache=False)
    assert len(folder) == len(archive)
    for index in range(len(folder)):
        for a, b in zip(folder[index], archive[index]):
            assert torch.equal(a, b)
    # Workers reopen the zip: reading through an inherited handle would mix up their reads.
    loader = DataLoader(archive, batch_size=2, num_workers=2, shuffle=False)
    images = torch.cat([batch[0] for batch in loader])
    assert torch.equal(images, torch.stack([folder[i][0] for i in range(len(folder))]))


def test_dataset_converts_modes_and_resizes(tmp_path):
    grey = np.full((16, 16), 200, np.uint8)
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 30
    folder = _write_raw(tmp_path / "data", {"labels": _valid_entries(2)}, {"img0.png": grey, "img1.png": rgba})
    dataset = CameraImageDataset(folder, resolution=4)
    grey_item, rgba_item = dataset[0][0], dataset[1][0]
    assert dataset.resolution == 4 and grey_item.shape == rgba_item.shape == (3, 4, 4)
    torch.testing.assert_close(grey_item, torch.full((3, 4, 4), 200 / 127.5 - 1.0))
    torch.testing.assert_close(rgba_item[0], torch.ones(4, 4))  # alpha is dropped, not composited
    torch.testing.assert_close(rgba_item[1:], -torch.ones(2, 4, 4))
    with pytest.raises(ValueError, match="resolution"):
        CameraImageDataset(folder, resolution=0)
    # Resized images are cached at their output size, rounded as a stored copy of that size would be.
    ramp = np.repeat(np.arange(0, 256, 16, dtype=np.uint8)[None, :, None], 16, 0).repeat(3, 2)
    folder = _write_raw(tmp_path / "ramp", {"labels": _valid_entries(1)}, {"img0.png": ramp})
    small = CameraImageDataset(folder, resolution=4, cache=True)
    first = small[0][0]
    levels = (first + 1) * 127.5
    torch.testing.assert_close(levels, levels.round(), atol=1e-4, rtol=0)
    assert bool((levels[:, :, 1:] > levels[:, :, :-1]).all())  # the ramp survives the resize
    assert small._cache[0].shape == (4, 4, 3) and torch.equal(small[0][0], first)


def test_write_dataset_is_atomic_and_checks_its_input(tmp_path):
    target = tmp_path / "data"
    with pytest.raises(ValueError, match="square"):
        write_dataset(target, np.zeros((2, 8, 6, 3), np.uint8), _labels(2))
    with pytest.raises(ValueError, match="2 images for 3 labels"):
        write_dataset(target, _images(2), _labels(3))
    with pytest.raises(ValueError, match=r"\(N, 25\)"):
        write_dataset(target, _images(2), torch.zeros(2, 16))
    assert list(tmp_path.iterdir()) == []  # failures leave nothing behind, no temporary folder either
    write_dataset(target, iter(_images(2)), _labels(2), names=["a.png", "sub/b.png"], extra_files={"extra.txt": "hi"})
    assert validate_dataset(target).names == ("a.png", "sub/b.png")
    assert (target / "extra.txt").read_text() == "hi"
    with pytest.raises(FileExistsError):
        write_dataset(target, _images(2), _labels(2))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data"]


# ----- synthetic objects -----


def test_shape_specs_round_trip_and_validate(family_specs):
    for spec in family_specs:
        assert ShapeSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(ValueError, match="unknown shape family"):
        ShapeSpec("cone", {"radius": 0.1})
    with pytest.raises(ValueError, match="needs parameters"):
        ShapeSpec("sphere", {"size": 0.1})
    with pytest.raises(ValueError, match="rotation"):
        ShapeSpec("sphere", {"radius": 0.1}, rotation=((2.0, 0, 0), (0, 1.0, 0), (0, 0, 1.0)))
    with pytest.raises(ValueError, match="two or more parts"):
        ShapeSpec("compound", {"blend": 0.05})


def test_surface_points_lie_on_the_surface_with_sdf_gradient_normals(family_specs):
    generator = torch.Generator().manual_seed(0)
    for spec in family_specs:
        points, normals = sample_surface_points(spec, 500, generator)
        assert points.shape == normals.shape == (500, 3)
        assert float(shape_sdf(spec, points.double()).abs().max()) < 1e-5, spec.family
        torch.testing.assert_close(normals.norm(dim=-1), torch.ones(500))
        query = points.double().requires_grad_(True)
        (gradient,) = torch.autograd.grad(shape_sdf(spec, query).sum(), query)
        cosine = (torch.nn.functional.normalize(gradient, dim=-1) * normals.double()).sum(-1)
        # On sharp edges (cylinder rims) the gradient is discontinuous: allow those few points.
        assert float((cosine > 0.999).float().mean()) > 0.98, spec.family
        # Every object is inside the ball that the cameras frame whole (and the triplane box).
        assert float(points.norm(dim=-1).max()) < OBJECT_RADIUS + 1e-4
    # Points spread over the whole surface: a sphere's sample mean is near its centre.
    sphere = family_specs[FAMILIES.index("sphere")]
    sphere_points, _ = sample_surface_points(sphere, 2000, generator)
    assert float((sphere_points.mean(0) - torch.tensor(sphere.translation)).norm()) < 0.1 * sphere.parameters["radius"]


def test_render_silhouette_matches_where_rays_hit_the_sdf(family_specs):
    size = 24
    labels = _labels(len(family_specs), seed=4)
    images, coverage = render_shapes(family_specs, labels, size, supersample=1)
    assert images.shape == (len(family_specs), size, size, 3) and coverage.shape == images.shape[:-1]
    rays = rays_from_cameras(*split_camera_labels(labels), size, size, 2.25, 3.3)
    depths = torch.linspace(2.7 - OBJECT_RADIUS - 0.02, 2.7 + OBJECT_RADIUS + 0.02, 400)
    for index, spec in enumerate(family_specs):
        min_sdf = shape_sdf(spec, rays[index].points_at(depths.expand(size, size, -1))).amin(-1)
        disagree = (coverage[index] > 0.5) != (min_sdf < 0)
        # Only rays grazing the surface may disagree (the tracer stops within 5e-4 of it).
        assert bool((min_sdf[disagree].abs() < 2e-3).all()), spec.family
        assert int((min_sdf < 0).sum()) > 20, spec.family  # the object is in view
        hit = coverage[index] > 0.5
        assert bool((images[index][~hit] == 0).all())  # black background
        assert bool((images[index][hit].amax(-1) > 0.05).all())  # lit or ambient, never black


def test_cameras_have_a_frontal_bias():
    labels = _labels(4000)
    cam2world, intrinsics = split_camera_labels(labels)
    eyes = cam2world[:, :3, 3]
    torch.testing.assert_close(eyes.norm(dim=-1), torch.full((4000,), 2.7))
    yaw = torch.atan2(eyes[:, 2], -eyes[:, 0])  # EG3D: x = -r sin(phi) cos(yaw), z = r sin(phi) sin(yaw)
    assert abs(float(yaw.mean()) - math.pi / 2) < 0.03 and 0.3 < float(yaw.std()) < 0.4
    assert float((yaw - math.pi / 2).abs().max()) <= 1.05 + 1e-4
    torch.testing.assert_close(intrinsics[:, :2, 2], torch.full((4000, 2), 0.5))


def test_synthesize_dataset_is_deterministic_and_keeps_geometry(tmp_path):
    first = synthesize_dataset(tmp_path / "a", num_images=6, resolution=16, seed=7)
    second = synthesize_dataset(tmp_path / "b", num_images=6, resolution=16, seed=7)
    other = synthesize_dataset(tmp_path / "c", num_images=6, resolution=16, seed=8)
    files = sorted(path.name for path in first.iterdir())
    assert files == sorted(path.name for path in second.iterdir())
    assert all((first / name).read_bytes() == (second / name).read_bytes() for name in files)
    assert (first / "dataset.json").read_bytes() != (other / "dataset.json").read_bytes()
    info = validate_dataset(first)
    specs = load_shape_specs(first)
    assert sorted(specs) == list(info.names) and all(isinstance(spec, ShapeSpec) for spec in specs.values())
    with pytest.raises(FileExistsError):
        synthesize_dataset(first, num_images=2, resolution=16)
    with pytest.raises(DatasetError, match="geometry.json: missing"):
        load_shape_specs(write_dataset(tmp_path / "plain", _images(1), _labels(1)))


def test_backdrop_datasets_keep_the_objects_and_fill_the_background(tmp_path):
    plain = CameraImageDataset(synthesize_dataset(tmp_path / "plain", num_images=4, resolution=16, seed=3))
    backdrop_path = synthesize_dataset(tmp_path / "backdrop", num_images=4, resolution=16, seed=3, backdrop=True)
    backdrop = CameraImageDataset(backdrop_path)
    assert torch.equal(plain.labels, backdrop.labels) and load_shape_specs(backdrop_path) == load_shape_specs(tmp_path / "plain")
    for index in range(4):
        black, filled = plain[index][0], backdrop[index][0]
        empty = (black == -1.0).all(dim=0)
        assert 0 < int(empty.sum()) < empty.numel()
        assert bool((filled[:, empty] > -0.8).all())  # muted colours: no channel below 0.15
        covered = (black > -1.0).all(dim=0)
        torch.testing.assert_close(filled[:, covered & ~_edge(covered)], black[:, covered & ~_edge(covered)], atol=1 / 127.5, rtol=0)
    assert json.loads((backdrop_path / "geometry.json").read_text())["backdrop"] is True
    with pytest.raises(ValueError, match="num_images"):
        backdrop_images(0, 16)


def _edge(mask: torch.Tensor) -> torch.Tensor:
    """Pixels of ``mask`` next to a pixel outside it (antialiased edges blend with the backdrop)."""
    padded = torch.nn.functional.pad(mask[None, None].float(), (1, 1, 1, 1))
    return (torch.nn.functional.max_pool2d(1 - padded, 3, stride=1)[0, 0] > 0) & mask


def test_default_dataset_is_generated_once_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WYSIWYG_GAN_CACHE", str(tmp_path))
    path = default_dataset(resolution=16, num_images=3, seed=1)
    assert path.parent == tmp_path and path.name == "synthetic-v1-16-3-1"
    stamp = (path / "dataset.json").stat().st_mtime_ns
    assert default_dataset(resolution=16, num_images=3, seed=1) == path
    assert (path / "dataset.json").stat().st_mtime_ns == stamp
    assert len(CameraImageDataset(path)) == 3
    assert sorted(entry.name for entry in tmp_path.iterdir()) == [path.name]  # no temporary folders left


def test_synthesize_cli_writes_a_valid_dataset(tmp_path, capsys):
    out = tmp_path / "cli"
    # The package may be importable only from the checkout (e.g. an older editable install).
    root = str(Path(wysiwyg_gan.__file__).parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(
        [sys.executable, "-m", "wysiwyg_gan.data.synthesize", "--out", str(out), "--num-images", "2"]
        + ["--resolution", "8"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert str(out) in result.stdout and " s" in result.stdout
    assert validate_dataset(out).num_images == 2
    with pytest.raises(SystemExit) as failed:  # in-process: a second interpreter costs seconds
        synthesize_main(["--out", str(out), "--num-images", "1"])
    assert failed.value.code != 0 and "already exists" in capsys.readouterr().err
