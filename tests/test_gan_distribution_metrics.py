"""wysiwyg_gan.distribution_metrics (FID, KID, precision/recall in any feature space),
wysiwyg_gan.feature_encoder (the offline encoder) and colour drift along an orbit, with the CLI."""

from __future__ import annotations

import colorsys
import json
import math
import os
import warnings

import numpy as np
import pytest
import torch

from wysiwyg_gan.consistency_metrics import colour_drift, mean_foreground_colour, orbit_colour_drift, shape_colour_drift
from wysiwyg_gan.data.dataset import CameraImageDataset, DatasetError
from wysiwyg_gan.data.shapes import ShapeSpec
from wysiwyg_gan.data.synthetic import synthesize_dataset
from wysiwyg_gan.distribution_metrics import (
    distribution_report,
    family_coverage,
    feature_report,
    frechet_distance,
    kernel_inception_distance,
    knn_radii,
    precision_recall,
)
from wysiwyg_gan.feature_encoder import (
    EncoderConfig,
    EncoderError,
    augment,
    default_encoder_path,
    load_encoder,
    load_or_train_encoder,
    resolve_mode,
    save_encoder,
    train_encoder,
)
from wysiwyg_gan.metrics import MetricsArgs, main

TINY_ENCODER = EncoderConfig(input_resolution=16, feature_dim=16, steps=15, batch=16)
"""An encoder for 16 px test images that trains in about a second."""


def _gaussian(count: int, dim: int, seed: int) -> torch.Tensor:
    return torch.randn(count, dim, generator=torch.Generator().manual_seed(seed))


# ----- FID and KID -----


def test_frechet_distance_is_zero_for_identical_sets_and_matches_the_formula():
    x = _gaussian(500, 8, 0)
    assert frechet_distance(x, x.clone()) == pytest.approx(0.0, abs=1e-9)
    # Equal covariances: only the mean term is left, 9 per dimension.
    assert frechet_distance(x, x + 3.0) == pytest.approx(72.0, rel=1e-6)
    scipy_linalg = pytest.importorskip("scipy.linalg")
    y = _gaussian(400, 8, 1) @ torch.diag(torch.linspace(0.5, 2.0, 8)) + 0.3
    mu_x, mu_y = x.double().mean(0).numpy(), y.double().mean(0).numpy()
    cov_x, cov_y = np.cov(x.double().numpy(), rowvar=False), np.cov(y.double().numpy(), rowvar=False)
    expected = ((mu_x - mu_y) ** 2).sum() + np.trace(cov_x + cov_y - 2 * scipy_linalg.sqrtm(cov_x @ cov_y).real)
    assert frechet_distance(x, y) == pytest.approx(float(expected), rel=1e-6)


def test_kid_near_zero_for_identical_sets_large_when_shifted_and_exact_on_full_subsets():
    x = _gaussian(300, 8, 0)
    same = kernel_inception_distance(x, x.clone(), subset_size=100, subsets=50)
    shifted = kernel_inception_distance(x, x + 1.0, subset_size=100, subsets=50)
    assert abs(same["kid"]) < 0.1 and shifted["kid"] > 5.0 and shifted["kid"] > 5 * shifted["kid_std"]
    assert same == kernel_inception_distance(x, x.clone(), subset_size=100, subsets=50)  # seeded
    # Subsets as large as the sets: every subset is the whole set, so the direct U-statistic.
    a, b = _gaussian(20, 4, 1).double(), _gaussian(20, 4, 2).double() + 0.5
    kernel = lambda p, q: (p @ q.T / 4 + 1) ** 3  # noqa: E731
    k_aa, k_bb = kernel(a, a), kernel(b, b)
    direct = (k_aa.sum() - k_aa.trace() + k_bb.sum() - k_bb.trace()) / (20 * 19) - 2 * kernel(a, b).mean()
    full = kernel_inception_distance(a, b, subset_size=1000, subsets=3)
    assert full["subset_size"] == 20 and full["kid_std"] == pytest.approx(0.0, abs=1e-9)
    assert full["kid"] == pytest.approx(float(direct), rel=1e-5)


# ----- precision and recall -----


def _on_a_line(values) -> torch.Tensor:
    return torch.tensor([[value, 0.0] for value in values], dtype=torch.float64)


def test_precision_recall_of_a_hand_checked_example():
    reals = _on_a_line([0, 1, 2, 3])
    fakes = _on_a_line([0.5, 0.7, 10])
    # k = 1: every real's ball has radius 1; the fakes' radii are 0.2, 0.2 and 9.3.
    assert knn_radii(reals, k=1).tolist() == [1.0, 1.0, 1.0, 1.0]
    assert knn_radii(reals, k=2).tolist() == [2.0, 1.0, 1.0, 2.0]
    torch.testing.assert_close(knn_radii(fakes, k=1), torch.tensor([0.2, 0.2, 9.3], dtype=torch.float64))
    # Precision: 0.5 and 0.7 lie within 1 of a real, 10 does not. Recall: the outlier's ball
    # (radius 9.3 around 10) holds 1, 2 and 3; 0 is 0.5 from the nearest fake, outside its 0.2 ball.
    for chunk_size in (1, 2, 512):
        result = precision_recall(reals, fakes, k=1, chunk_size=chunk_size)
        assert result == {"precision": pytest.approx(2 / 3), "recall": pytest.approx(3 / 4), "k": 1}


def test_a_collapsed_generator_has_low_recall_and_real_halves_score_high():
    reals = _gaussian(600, 16, 0)
    halves = precision_recall(reals[:300], reals[300:])
    assert halves["precision"] > 0.6 and halves["recall"] > 0.6
    collapsed = reals[:1].expand(300, -1).clone()  # every fake is one real sample
    result = precision_recall(reals, collapsed)
    assert result["recall"] < 0.1 and result["precision"] == 1.0
    report = feature_report(reals, collapsed, kid_subsets=10)
    assert report["recall"] < 0.1 and report["real_floor"]["recall"] > 0.6 and report["real_floor"]["precision"] > 0.6
    assert report["fid"] > 10 * report["real_floor"]["fid"] and report["kid"] > 10 * abs(report["real_floor"]["kid"])
    assert (report["real_floor"]["num_reals"], report["real_floor"]["num_fakes"]) == (300, 300)


def test_family_coverage_sees_one_family_standing_in_for_all():
    reals = torch.arange(700) % 7  # seven families, equal shares
    same = family_coverage(reals, torch.arange(70) % 7, 7)
    assert same["total_variation"] == pytest.approx(0.0) and same["covered"] == 7 and same["present_in_reals"] == 7
    assert same["real_floor"]["total_variation"] < 0.1 and same["real_floor"]["covered"] == 7
    collapsed = family_coverage(reals, torch.full((70,), 2), 7)
    assert collapsed["total_variation"] == pytest.approx(6 / 7) and collapsed["covered"] == 1
    assert collapsed["fake_shares"][2] == 1.0 and collapsed["real_shares"][2] == pytest.approx(1 / 7)
    # Two families at a third of their share each are not covered; the other five are.
    fakes = torch.cat([torch.full((5,), 0), torch.full((5,), 1), torch.arange(2, 7).repeat_interleave(38)])
    assert family_coverage(reals, fakes, 7)["covered"] == 5


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: family_coverage(torch.zeros(4, 2, dtype=torch.long), torch.zeros(4, dtype=torch.long), 3), "real_families must be a 1-D integer"),
        (lambda: family_coverage(torch.zeros(4, dtype=torch.long), torch.zeros(4), 3), "fake_families must be a 1-D integer"),
        (lambda: family_coverage(torch.zeros(4, dtype=torch.long), torch.full((4,), 3), 3), r"fake_families must lie in \[0, 3\)"),
        (lambda: frechet_distance(torch.zeros(10), torch.zeros(10, 2)), "real_features must have shape"),
        (lambda: frechet_distance(torch.zeros(10, 2), torch.full((10, 2), math.nan)), "fake_features contains"),
        (lambda: frechet_distance(torch.zeros(10, 2), torch.zeros(10, 3)), "fake_features have 3 dimensions"),
        (lambda: frechet_distance(torch.zeros(1, 2), torch.zeros(10, 2)), "real_features needs at least 2"),
        (lambda: frechet_distance(torch.zeros(10, 2, dtype=torch.long), torch.zeros(10, 2)), "real_features must be a floating"),
        (lambda: kernel_inception_distance(torch.zeros(10, 2), torch.zeros(10, 2), subset_size=1), "subset_size"),
        (lambda: precision_recall(torch.zeros(3, 2), torch.zeros(10, 2), k=3), "real_features needs at least 4"),
        (lambda: precision_recall(torch.zeros(10, 2), torch.zeros(10, 2), k=0), "k must be"),
        (lambda: feature_report(torch.zeros(6, 2), torch.zeros(10, 2), k=3), "real_features need at least 8"),
        (lambda: distribution_report(None, torch.zeros(4, 3, 8, 8), torch.zeros(4, 2)), "pass an encoder"),
        (lambda: distribution_report(None, torch.zeros(4, 3, 8), torch.zeros(4, 2)), "real must be images"),
    ],
)
def test_bad_input_is_a_one_line_value_error(call, match):
    with pytest.raises(ValueError, match=match) as error:
        call()
    assert "\n" not in str(error.value)


# ----- colour drift -----


def _views(colours: torch.Tensor, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Views ``(B, V, 3, H, W)`` of a disc of one colour per view, composited over black."""
    axis = torch.arange(size) - (size - 1) / 2
    disc = ((axis[:, None] ** 2 + axis[None] ** 2) <= (size / 3) ** 2).float()
    opacity = disc.expand(*colours.shape[:2], 1, size, size)
    return colours[..., None, None] * opacity, opacity


def test_colour_drift_is_zero_for_identical_views_and_positive_for_a_hue_change():
    colour = torch.tensor([0.3, 0.6, 0.9])
    images, opacities = _views(colour.expand(2, 7, 3))
    torch.testing.assert_close(mean_foreground_colour(images, opacities), colour.expand(2, 7, 3))
    assert torch.equal(colour_drift(images, opacities), torch.zeros(2))
    hues = torch.tensor([colorsys.hsv_to_rgb(h, 0.8, 0.9) for h in np.linspace(0, 0.3, 7)], dtype=torch.float32)
    images, opacities = _views(hues[None])
    drift = float(colour_drift(images, opacities)[0])
    centre = hues.double().mean(0)
    assert drift == pytest.approx(float((hues.double() - centre).norm(dim=1).mean()), rel=1e-6) and drift > 0.1
    empty = torch.zeros(1, 3, 1, 8, 8)
    assert math.isnan(float(colour_drift(torch.zeros(1, 3, 3, 8, 8), empty)[0]))  # no foreground
    with pytest.raises(ValueError, match="images must have shape"):
        colour_drift(images[0], opacities[0])


def test_true_objects_drift_a_little_under_the_fixed_light():
    specs = [ShapeSpec("sphere", {"radius": 0.2}, colour=(0.8, 0.4, 0.2)), ShapeSpec("torus", {"major_radius": 0.18, "minor_radius": 0.06})]
    result = shape_colour_drift(specs, yaw_range=0.7, views=3, resolution=16)
    assert result["yaws"] == pytest.approx([-0.7, 0.0, 0.7]) and len(result["per_seed"]) == 2
    assert 0.0 < result["drift"] < 0.1  # Lambertian shading changes with the view, the albedo does not


def test_orbit_colour_drift_on_a_tiny_checkpoint(tiny_checkpoint):
    from wysiwyg_gan.inference import load_trained_gan

    gan = load_trained_gan(tiny_checkpoint)
    result = orbit_colour_drift(gan, [0, 1, 2], views=3, batch_size=2)
    assert result["yaws"][1] == 0.0 and len(result["per_seed"]) == 3 and result["seeds_with_foreground"] == 3
    assert 0.0 <= result["drift"] < 1.0 and result["samples_per_ray"] > 0
    assert orbit_colour_drift(gan, [0, 1, 2], views=3, batch_size=3)["per_seed"] == pytest.approx(result["per_seed"], rel=1e-4)


# ----- the feature encoder -----


@pytest.fixture(scope="module")
def synthetic_data(tmp_path_factory):
    """24 synthetic objects at 16 px, with their ground truth (geometry.json)."""
    return synthesize_dataset(tmp_path_factory.mktemp("synthetic") / "data", num_images=24, resolution=16, seed=0)


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv("WYSIWYG_GAN_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "wysiwyg_gan"


def _images(data, count: int | None = None) -> torch.Tensor:
    dataset = CameraImageDataset(data)
    return torch.stack([dataset[index][0] for index in range(count or len(dataset))])


def test_supervised_encoder_is_cached_reloads_exactly_and_is_deterministic(synthetic_data, cache_home, monkeypatch):
    encoder = load_or_train_encoder(synthetic_data, 16, config=TINY_ENCODER)
    path = default_encoder_path(synthetic_data, 16, config=TINY_ENCODER)
    assert encoder.mode == "supervised" and resolve_mode(synthetic_data) == "supervised"
    assert path.parent == cache_home / "encoders" and path.is_file() and encoder.metadata["path"] == str(path)
    assert encoder.metadata["num_images"] == 24 and encoder.metadata["resolution"] == 16
    state = torch.load(path, weights_only=True)  # plain tensors and data only
    assert state["mode"] == "supervised" and state["config"]["feature_dim"] == 16
    images = _images(synthetic_data)
    features = encoder.features(images)
    assert features.shape == (24, 16) and features.dtype == torch.float32
    assert features.mean(0).abs().max() < 1e-4 and float(features.var(0).mean()) == pytest.approx(1.0, rel=1e-3)
    uint8 = ((images + 1) * 127.5).round().to(torch.uint8)
    torch.testing.assert_close(encoder.features(uint8, batch_size=5), features, atol=1e-4, rtol=0)  # batch size changes the float sums
    # The second call loads the cached file instead of training.
    monkeypatch.setattr("wysiwyg_gan.feature_encoder.train_encoder", lambda *args, **kwargs: pytest.fail("retrained"))
    assert torch.equal(load_or_train_encoder(synthetic_data, 16, config=TINY_ENCODER).features(images), features)
    assert torch.equal(load_encoder(path).features(images), features)
    monkeypatch.undo()
    again = train_encoder(synthetic_data, 16, config=TINY_ENCODER)
    assert all(torch.equal(again.state_dict()[name], value) for name, value in encoder.state_dict().items())
    # Another resolution, mode or configuration is another cache entry.
    assert default_encoder_path(synthetic_data, 32, config=TINY_ENCODER) != path
    assert default_encoder_path(synthetic_data, 16, "contrastive", TINY_ENCODER) != path
    assert default_encoder_path(synthetic_data, 16) != path


def test_contrastive_encoder_on_a_dataset_without_ground_truth(tmp_path):
    from gan_helpers import write_tiny_dataset

    data = write_tiny_dataset(tmp_path / "data", num_images=8)
    assert resolve_mode(data) == "contrastive"
    path = tmp_path / "encoder.pt"
    encoder = load_or_train_encoder(data, 16, path=path, config=TINY_ENCODER)
    assert encoder.mode == "contrastive" and path.is_file()
    features = encoder.features(_images(data))
    assert features.shape == (8, 16) and bool(torch.isfinite(features).all())
    assert torch.equal(load_encoder(path).features(_images(data)), features)
    with pytest.raises(EncoderError, match="only a supervised encoder"):
        encoder.predict_families(features)
    with pytest.raises(DatasetError, match="geometry.json"):
        train_encoder(data, 16, "supervised", TINY_ENCODER)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_or_train_encoder(data, 32, path=path)  # an existing file is used, with a warning
    assert any("was trained on" in str(warning.message) for warning in caught)


def test_augmentations_never_change_the_hue():
    red = torch.tensor([0.6, -0.6, -0.6])[:, None, None].expand(4, 3, 16, 16).clone()
    views = augment(red, EncoderConfig(), torch.Generator().manual_seed(0))
    assert views.shape == red.shape
    torch.testing.assert_close(views[:, 1], views[:, 2])  # green = blue: still a red
    assert bool((views[:, 0] > views[:, 1]).all())


def test_collapsed_fakes_through_the_encoder_have_low_recall(synthetic_data, cache_home):
    encoder = load_or_train_encoder(synthetic_data, 16, config=TINY_ENCODER)
    reals = _images(synthetic_data)
    report = distribution_report(encoder, reals, reals[:1].expand(12, -1, -1, -1), kid_subsets=5)
    assert report["recall"] < 0.1 and report["feature_dim"] == 16
    assert report["real_floor"]["num_reals"] == 12
    # The supervised head classifies feature rows as features() returns them.
    families = encoder.predict_families(encoder.features(reals))
    assert families.shape == (24,) and families.dtype == torch.long and int(families.max()) < 7
    # Precomputed real features give the same numbers as the images.
    same = distribution_report(encoder, encoder.features(reals), reals[:1].expand(12, -1, -1, -1), kid_subsets=5)
    assert same == report


def test_generator_distribution_reports_shape_families_with_a_supervised_encoder(tiny_checkpoint, synthetic_data, cache_home):
    from wysiwyg_gan.data.shapes import FAMILIES
    from wysiwyg_gan.inference import load_trained_gan
    from wysiwyg_gan.distribution_metrics import generator_distribution
    from wysiwyg_gan.inference import render_cameras

    gan = load_trained_gan(tiny_checkpoint)
    encoder = load_or_train_encoder(synthetic_data, 16, config=TINY_ENCODER)
    reals = CameraImageDataset(synthetic_data)
    labels = render_cameras(reals, 6, seed=0)
    report = generator_distribution(gan, encoder, encoder.features(_images(synthetic_data)), list(range(6)), labels, labels, kid_subset_size=4, kid_subsets=3)
    families = report["families"]
    assert families["names"] == list(FAMILIES) and len(families["fake_shares"]) == len(FAMILIES)
    assert sum(families["fake_shares"]) == pytest.approx(1.0) and 0.0 <= families["total_variation"] <= 1.0
    assert 0 <= report["frontal_view"]["families"]["covered"] <= families["present_in_reals"]


def test_encoder_bad_input_and_bad_files(tmp_path, synthetic_data, cache_home):
    encoder = load_or_train_encoder(synthetic_data, 16, config=TINY_ENCODER)
    with pytest.raises(ValueError, match=r"images must be a \(N, 3, H, W\)"):
        encoder.features(torch.zeros(2, 4, 16, 16))
    with pytest.raises(ValueError, match="images contains"):
        encoder.features(torch.full((2, 3, 16, 16), math.nan))
    with pytest.raises(ValueError, match="input_resolution"):
        EncoderConfig(input_resolution=12)
    with pytest.raises(ValueError, match="steps"):
        EncoderConfig(steps=0)
    with pytest.raises(ValueError, match=r"features must have shape \(N, 16\)"):
        encoder.predict_families(torch.zeros(3, 8))
    with pytest.raises(EncoderError, match="does not exist"):
        load_encoder(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not an encoder")
    with pytest.raises(EncoderError, match="corrupt"):
        load_encoder(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(EncoderError, match="not a wysiwyg_gan feature encoder"):
        load_encoder(foreign)
    saved = save_encoder(encoder, tmp_path / "sub" / "copy.pt")  # atomic: nothing else left in the folder
    assert os.listdir(saved.parent) == ["copy.pt"]


# ----- the command line -----


def test_default_metrics_need_no_download():
    assert MetricsArgs().metrics == ("distribution", "normals", "consistency", "drift", "nfs", "relief")


def test_cli_distribution_and_drift(tiny_checkpoint, tmp_path):
    data = tiny_checkpoint.parent.parent / "data"  # gan_helpers.write_tiny_checkpoint's dataset
    encoder_path = tmp_path / "encoder.pt"
    load_or_train_encoder(data, 16, path=encoder_path, config=TINY_ENCODER)
    out = tmp_path / "metrics.json"
    args = ["--checkpoint", str(tiny_checkpoint), "--metrics", "distribution", "drift", "--encoder", str(encoder_path)]
    args += ["--distribution-fakes", "12", "--num-seeds", "2", "--batch", "4", "--kid-subsets", "5", "--drift-views", "3"]
    args += ["--out", str(out), "--device", "cpu"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the encoder matches the checkpoint's data: no warning
        main(args)
    report = json.loads(out.read_text())
    assert report["metrics"] == ["distribution", "drift"] and set(report["seconds"]) == {"distribution", "drift"}
    distribution = report["results"]["distribution"]
    assert math.isfinite(distribution["fid"]) and math.isfinite(distribution["kid"])
    assert 0 <= distribution["frontal_view"]["recall"] <= 1 and math.isfinite(distribution["frontal_view"]["fid"])
    assert "families" not in distribution  # a contrastive encoder knows no shape families
    assert 0.0 <= distribution["precision"] <= 1.0 and 0.0 <= distribution["recall"] <= 1.0
    assert (distribution["num_fakes"], distribution["num_reals"], distribution["k"]) == (12, 8, 3)
    assert distribution["real_floor"]["num_reals"] == 4 and distribution["mirror"] is False
    assert distribution["encoder"]["path"] == str(encoder_path) and distribution["encoder"]["mode"] == "contrastive"
    assert distribution["encoder"]["feature_dim"] == 16 and distribution["seeds"] == [0, 11]
    drift = report["results"]["drift"]
    assert len(drift["per_seed"]) == 2 and drift["views"] == 3 and drift["dataset_drift"] is None
    with pytest.raises(SystemExit, match="--drift-views"):
        main(args[:-4] + ["--drift-views", "0", "--out", str(out)])
