"""True normal maps of a dataset and the normal-map distribution metric (FID-N's idea)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from wysiwyg_gan.data.dataset import DatasetError, write_dataset
from wysiwyg_gan.data.normal_maps import (
    NORMALS_FOLDER,
    camera_space_normals,
    has_true_normals,
    normal_map_images,
    true_normal_maps,
)
from wysiwyg_gan.data.shapes import ShapeSpec
from wysiwyg_gan.data.synthetic import GEOMETRY_JSON, SYNTHETIC_VERSION, synthesize_dataset
from wysiwyg_gan.distribution_metrics import feature_report
from wysiwyg_gan.feature_encoder import EncoderConfig, load_or_train_encoder
from wysiwyg_gan.images import images_to_uint8
from wysiwyg_gan.inference import load_trained_gan
from wysiwyg_gan.metrics import main
from wysiwyg_gan.normal_metrics import generated_normal_maps, real_normal_features
from wysiwyg_gan.orbit_cameras import FRONTAL, orbit_camera_labels, orbit_labels

TINY_ENCODER = EncoderConfig(input_resolution=16, feature_dim=16, steps=15, batch=16)


def _sphere_dataset(path, yaws):
    """Spheres at the origin seen from ``yaws``, with their geometry (no images needed: black)."""
    labels = orbit_camera_labels(torch.tensor(yaws), torch.full((len(yaws),), FRONTAL))
    names = [f"img{index:08d}.png" for index in range(len(yaws))]
    geometry = {
        "version": SYNTHETIC_VERSION,
        "shapes": {name: ShapeSpec("sphere", {"radius": 0.3}).to_dict() for name in names},
    }
    images = np.zeros((len(yaws), 16, 16, 3), np.uint8)
    return write_dataset(path, images, labels, names, {GEOMETRY_JSON: json.dumps(geometry)})


def test_true_normals_of_a_sphere_face_the_camera_from_every_view(tmp_path):
    data = _sphere_dataset(tmp_path / "data", [FRONTAL, FRONTAL + 0.5])
    maps = true_normal_maps(data, [0, 1], 16)
    assert maps.shape == (2, 3, 16, 16) and has_true_normals(data)
    # A sphere centred on the optical axis: the centre pixels' normals point back at the camera,
    # -z in the camera's axes, whatever the view.
    centre = maps[:, :, 7:9, 7:9].mean(dim=(2, 3))
    torch.testing.assert_close(centre, torch.tensor([[0.0, 0.0, -1.0]] * 2), atol=0.1, rtol=0)
    assert (maps[:, :, 0, 0] == -1).all()  # black where nothing is
    # The right half of the frame sees normals pointing right (+x), the lower half down (+y).
    assert (maps[:, 0, 4:12, 10:13] > 0.2).all() and (maps[:, 1, 10:13, 4:12] > 0.2).all()


def test_camera_space_normals_and_their_encoding():
    labels = orbit_camera_labels(torch.tensor([FRONTAL]), torch.tensor([FRONTAL]))
    position = labels[0, :16].reshape(4, 4)[:3, 3]
    towards_camera = (position / position.norm()).reshape(1, 3, 1, 1)
    camera = camera_space_normals(towards_camera, labels)
    torch.testing.assert_close(camera[0, :, 0, 0], torch.tensor([0.0, 0.0, -1.0]), atol=1e-5, rtol=0)
    image = normal_map_images(camera, torch.full((1, 1, 1, 1), 0.5))
    torch.testing.assert_close(image[0, :, 0, 0], torch.tensor([-0.5, -0.5, -1.0]))  # (n + 1) / 2 * 0.5
    with pytest.raises(ValueError, match=r"need normals \(B, 3, H, W\) and labels"):
        camera_space_normals(towards_camera[0], labels)
    with pytest.raises(ValueError, match=r"need normals \(B, 3, H, W\) and coverage"):
        normal_map_images(camera, torch.ones(1, 3, 1, 1))


def test_normal_maps_from_a_normals_folder_and_clear_errors(tmp_path):
    labels = orbit_camera_labels(torch.full((2,), FRONTAL), torch.full((2,), FRONTAL))
    plain = write_dataset(tmp_path / "plain", np.zeros((2, 8, 8, 3), np.uint8), labels)
    assert not has_true_normals(plain)
    with pytest.raises(DatasetError, match="no true normal maps; add a normals/ folder"):
        true_normal_maps(plain, [0], 8)
    folder = plain / NORMALS_FOLDER
    folder.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    name = sorted(path.name for path in plain.glob("*.png"))[0]
    Image.fromarray(pixels).save(folder / name)
    assert has_true_normals(plain)
    maps = true_normal_maps(plain, [0], 8)
    torch.testing.assert_close(maps[0], torch.from_numpy(pixels).permute(2, 0, 1).float() / 127.5 - 1.0)
    assert true_normal_maps(plain, [0], 4).shape == (1, 3, 4, 4)  # resized like the images
    with pytest.raises(DatasetError, match="missing \\(every image needs its normal map\\)"):
        true_normal_maps(plain, [1], 8)


def test_normal_distribution_sees_normal_maps_that_differ_from_the_truth(tmp_path):
    data = synthesize_dataset(tmp_path / "data", num_images=24, resolution=16, seed=0)
    encoder = load_or_train_encoder(data, 16, path=tmp_path / "encoder.pt", config=TINY_ENCODER)
    reals = real_normal_features(encoder, data, 24, 24, seed=0, resolution=16)
    maps = true_normal_maps(data, list(range(24)), 16)
    flipped = encoder.features(images_to_uint8(-maps.flip(1)))  # a wrong convention: every normal changed
    same = encoder.features(images_to_uint8(maps))
    assert feature_report(reals, flipped, k=2)["fid"] > 5 * max(feature_report(reals, same, k=2)["fid"], 1e-3)


def test_generated_normal_maps_and_the_cli(tiny_checkpoint, tmp_path):
    gan = load_trained_gan(tiny_checkpoint, "cpu")
    labels = orbit_labels(FRONTAL, FRONTAL, 2)
    maps = generated_normal_maps(gan, [0, 1], labels, labels)
    assert maps.shape == (2, 3, gan.resolution, gan.resolution) and maps.min() >= -1 and maps.max() <= 1
    # The untrained SDF is a sphere at the centre: normals point back at the camera there.
    centre = maps[:, :, gan.resolution // 2, gan.resolution // 2]
    assert (centre[:, 2] < -0.8).all()
    out = tmp_path / "metrics.json"
    main(["--checkpoint", str(tiny_checkpoint), "--metrics", "normals", "--out", str(out), "--device", "cpu"])
    assert "no true normal maps" in json.loads(out.read_text())["results"]["normals"]["skipped"]
    data = synthesize_dataset(tmp_path / "synthetic", num_images=24, resolution=16, seed=0)
    encoder = tmp_path / "encoder.pt"
    load_or_train_encoder(data, 16, path=encoder, config=TINY_ENCODER)
    args = ["--checkpoint", str(tiny_checkpoint), "--data", str(data), "--metrics", "normals", "--encoder", str(encoder)]
    args += ["--distribution-fakes", "8", "--distribution-reals", "24", "--kid-subsets", "5", "--out", str(out)]
    main([*args, "--device", "cpu"])
    normals = json.loads(out.read_text())["results"]["normals"]
    assert math.isfinite(normals["fid"]) and normals["num_fakes"] == 8 and normals["num_reals"] == 24
    assert 0 <= normals["recall"] <= 1 and math.isfinite(normals["real_floor"]["fid"])


def test_the_evaluation_during_training_reports_normal_fid_on_data_with_true_normals(tmp_path):
    from gan_helpers import tiny_train_config

    from wysiwyg_gan.config import EvaluationConfig
    from wysiwyg_gan.data.dataset import CameraImageDataset
    from wysiwyg_gan.evaluation import RunEvaluator
    from wysiwyg_gan.training import GANTrainer

    data = synthesize_dataset(tmp_path / "data", num_images=24, resolution=16, seed=0)
    encoder = tmp_path / "encoder.pt"
    load_or_train_encoder(data, 16, path=encoder, config=TINY_ENCODER)
    evaluation = EvaluationConfig(num_fakes=8, num_reals=16, num_seeds=2, precision_recall_k=2, encoder=encoder)
    config = tiny_train_config(tmp_path / "run", data, evaluation=evaluation)
    trainer = GANTrainer(config, CameraImageDataset(data), torch.device("cpu"))
    values = RunEvaluator(config, data, torch.device("cpu")).evaluate(trainer)
    assert math.isfinite(values["eval/normal_fid"]) and math.isfinite(values["eval/floor_normal_fid"])
    assert 0 <= values["eval/normal_recall"] <= 1
