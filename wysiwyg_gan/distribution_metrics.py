"""Distances between the distributions of real and generated images, in a learned feature space.

Pure functions on feature matrices ``(N, D)`` (one row per image), each usable alone:

* ``frechet_distance``: the FID formula (Heusel et al. 2017) between Gaussians fitted to the two sets;
* ``kernel_inception_distance``: KID (Binkowski et al. 2018), the unbiased MMD^2 with the cubic
  polynomial kernel, mean and standard deviation over random subsets;
* ``precision_recall``: improved precision and recall (Kynkaanniemi et al. 2019) with k-NN manifolds;
* ``family_coverage``: how far the generated images' predicted classes (the synthetic data's shape
  families) are from the reals' shares, so that one family standing in for all shows as a number.

``compare_features`` computes all of them, ``feature_report`` adds the real-vs-real floor; ``distribution_report`` does the
same from images through a ``wysiwyg_gan.feature_encoder.FeatureEncoder`` (the offline stand-in for
Inception, trained on the real set itself). Bad input raises ``ValueError`` naming the argument.

For a trained generator, ``generator_distribution`` renders seeds from the real set's cameras and
from the frontal one and reports all of the above against the real features (``real_features``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int, UInt8
from torch import Tensor
from torch.utils.data import Dataset

from learned_sampler.validation import check_finite, check_floating, check_positive_int
from wysiwyg_gan.images import images_to_uint8
from wysiwyg_gan.inference import TrainedGAN, render_seeds
from wysiwyg_gan.orbit_cameras import FRONTAL, orbit_labels

if TYPE_CHECKING:
    from wysiwyg_gan.feature_encoder import FeatureEncoder


def _check_features(name: str, features: object, min_samples: int = 2) -> Tensor:
    check_floating(name, features)
    if features.dim() != 2 or features.shape[1] < 1:
        raise ValueError(f"{name} must have shape (N, D) with D >= 1, got {tuple(features.shape)}")
    if features.shape[0] < min_samples:
        raise ValueError(f"{name} needs at least {min_samples} samples (rows), got {features.shape[0]}")
    return check_finite(name, features)


def _check_pair(real_features: Tensor, fake_features: Tensor, min_samples: int = 2) -> tuple[Tensor, Tensor]:
    real = _check_features("real_features", real_features, min_samples)
    fake = _check_features("fake_features", fake_features, min_samples)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"fake_features have {fake.shape[1]} dimensions but real_features have {real.shape[1]}")
    return real, fake.to(real.device)


def _sqrt_psd(matrix: Tensor) -> Tensor:
    """Symmetric square root of a symmetric positive semi-definite matrix (eigenvalues clamped at 0)."""
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0.0).sqrt()) @ vectors.T


def frechet_distance(
    real_features: Float[Tensor, "num_real dim"], fake_features: Float[Tensor, "num_fake dim"]
) -> float:
    """``|mu_r - mu_f|^2 + tr(C_r) + tr(C_f) - 2 tr((C_r C_f)^(1/2))``: the FID formula in any feature space.

    Means and unbiased covariances (``N - 1``) of each set, in float64. The trace of the matrix
    square root is ``sum sqrt(eig(C_r^(1/2) C_f C_r^(1/2)))``, a symmetric PSD matrix with the
    same eigenvalues as ``C_r C_f``, so no non-symmetric square root (which goes complex on
    rank-deficient covariances) is needed. Identical sets give 0 up to rounding (clamped at 0).
    """
    real, fake = _check_pair(real_features, fake_features)
    real, fake = real.double(), fake.double()
    mean_real, mean_fake = real.mean(0), fake.mean(0)
    cov_real, cov_fake = torch.cov(real.T).reshape(real.shape[1], -1), torch.cov(fake.T).reshape(fake.shape[1], -1)
    root = _sqrt_psd(cov_real)
    product = root @ cov_fake @ root
    trace_sqrt = torch.linalg.eigvalsh(0.5 * (product + product.T)).clamp_min(0.0).sqrt().sum()
    distance = (mean_real - mean_fake).square().sum() + cov_real.trace() + cov_fake.trace() - 2.0 * trace_sqrt
    return max(float(distance), 0.0)


def _polynomial_mmd(x: Tensor, y: Tensor) -> float:
    """Unbiased MMD^2 of two equal-size samples with ``k(a, b) = (a . b / d + 1)^3``."""
    m, dim = x.shape
    joint = torch.cat([x, y])
    kernel = (joint @ joint.T / dim + 1.0).double().pow(3)
    k_xx, k_yy, k_xy = kernel[:m, :m], kernel[m:, m:], kernel[:m, m:]
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return float(within - 2.0 * k_xy.mean())


def kernel_inception_distance(
    real_features: Float[Tensor, "num_real dim"],
    fake_features: Float[Tensor, "num_fake dim"],
    subset_size: int = 1000,
    subsets: int = 100,
    seed: int = 0,
) -> dict:
    """KID: the unbiased MMD^2 with the cubic polynomial kernel ``k(x, y) = (x . y / d + 1)^3``.

    As torch-fidelity computes it: ``subsets`` times, ``subset_size`` rows are drawn without
    replacement from each set and the unbiased estimate (U-statistic within each set, all pairs
    across) is taken; returns the mean (``kid``) and population standard deviation (``kid_std``)
    over subsets. ``subset_size`` is lowered to the smaller set's size (the value used is returned
    as ``subset_size``). Deterministic for a ``seed``. Values can be slightly negative (unbiased).
    """
    real, fake = _check_pair(real_features, fake_features)
    check_positive_int("subset_size", subset_size, minimum=2)
    check_positive_int("subsets", subsets)
    size = min(subset_size, len(real), len(fake))
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        real_rows = torch.randperm(len(real), generator=generator)[:size].to(real.device)
        fake_rows = torch.randperm(len(fake), generator=generator)[:size].to(real.device)
        values.append(_polynomial_mmd(real[real_rows].float(), fake[fake_rows].float()))
    spread = torch.tensor(values, dtype=torch.float64)
    return {"kid": float(spread.mean()), "kid_std": float(spread.std(correction=0)), "subset_size": size, "subsets": subsets}


def _distance_blocks(query: Tensor, reference: Tensor, chunk_size: int):
    """Euclidean distances from ``chunk_size`` query rows at a time to every reference row (float64)."""
    reference = reference.double()
    reference_norms = reference.square().sum(1)
    for start in range(0, len(query), chunk_size):
        block = query[start : start + chunk_size].double()
        squared = block.square().sum(1)[:, None] + reference_norms[None] - 2.0 * block @ reference.T
        yield start, squared.clamp_min(0.0).sqrt()


def knn_radii(
    features: Float[Tensor, "num dim"], k: int = 3, chunk_size: int = 512
) -> Float[Tensor, " num"]:
    """Distance from each row to its ``k``-th nearest other row (the radius of its k-NN ball), float64.

    The row itself (distance 0) is not counted; duplicates of it are. Memory: ``chunk_size x N``
    distances at a time.
    """
    check_positive_int("k", k)
    check_positive_int("chunk_size", chunk_size)
    features = _check_features("features", features, min_samples=k + 1)
    radii = torch.empty(len(features), dtype=torch.float64, device=features.device)
    for start, distances in _distance_blocks(features, features, chunk_size):
        radii[start : start + len(distances)] = distances.topk(k + 1, dim=1, largest=False).values[:, k]
    return radii


def _inside_fraction(query: Tensor, reference: Tensor, radii: Tensor, chunk_size: int) -> float:
    """Fraction of ``query`` rows inside at least one reference row's ball."""
    inside = 0
    for _, distances in _distance_blocks(query, reference, chunk_size):
        inside += int((distances <= radii[None]).any(dim=1).sum())
    return inside / len(query)


def precision_recall(
    real_features: Float[Tensor, "num_real dim"],
    fake_features: Float[Tensor, "num_fake dim"],
    k: int = 3,
    chunk_size: int = 512,
) -> dict:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN manifolds.

    A set's manifold is the union of balls around its rows, each with the radius of the distance to
    its ``k``-th nearest neighbour in the set (``knn_radii``). ``precision`` is the fraction of fakes
    inside the real manifold (are the samples realistic?), ``recall`` the fraction of reals inside
    the fake manifold (is the real variety covered? a mode-collapsed generator has tiny balls and
    low recall). Distances are computed ``chunk_size`` rows at a time in float64, so 10k x 10k
    needs ``chunk_size x 10k`` doubles (40 MB), not the full matrix. Both sets need more than ``k`` rows.
    """
    check_positive_int("k", k)
    check_positive_int("chunk_size", chunk_size)
    real, fake = _check_pair(real_features, fake_features, min_samples=k + 1)
    real_radii = knn_radii(real, k, chunk_size)
    fake_radii = knn_radii(fake, k, chunk_size)
    return {
        "precision": _inside_fraction(fake, real, real_radii, chunk_size),
        "recall": _inside_fraction(real, fake, fake_radii, chunk_size),
        "k": k,
    }


def _real_halves(real: Tensor, seed: int) -> tuple[Tensor, Tensor]:
    """Two disjoint random halves of ``real``'s rows (seeded): the sets of every real-vs-real floor."""
    order = torch.randperm(len(real), generator=torch.Generator().manual_seed(seed)).to(real.device)
    half = len(real) // 2
    return real[order[:half]], real[order[half : 2 * half]]


def family_coverage(
    real_families: Int[Tensor, "num_real"],
    fake_families: Int[Tensor, "num_fake"],
    num_families: int,
    seed: int = 0,
) -> dict:
    """Shares of each class (e.g. shape family) among reals and fakes, and how far apart they are.

    ``total_variation`` is half the L1 distance between the two share vectors: 0 when the fakes
    split between the classes as the reals do, 1 when they share no class. ``covered`` counts the
    classes present among the reals whose share among the fakes is at least half their share among
    the reals (a collapsed generator covers one or two). ``real_floor`` holds both numbers between
    two disjoint random halves of the reals (seeded), what a perfect generator scores at that size.
    """
    check_positive_int("num_families", num_families)
    rows = {}
    for name, values in (("real_families", real_families), ("fake_families", fake_families)):
        if not isinstance(values, Tensor) or values.dim() != 1 or len(values) < 2 or values.is_floating_point():
            shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
            raise ValueError(f"{name} must be a 1-D integer tensor with at least 2 entries, got {shape}")
        if int(values.min()) < 0 or int(values.max()) >= num_families:
            raise ValueError(f"{name} must lie in [0, {num_families}), got values in [{int(values.min())}, {int(values.max())}]")
        rows[name] = values.cpu()

    def compare(real: Tensor, fake: Tensor) -> dict:
        real_shares = torch.bincount(real, minlength=num_families).double() / len(real)
        fake_shares = torch.bincount(fake, minlength=num_families).double() / len(fake)
        covered = (real_shares > 0) & (fake_shares >= 0.5 * real_shares)
        return {
            "total_variation": float(0.5 * (real_shares - fake_shares).abs().sum()),
            "covered": int(covered.sum()),
            "real_shares": real_shares.tolist(),
            "fake_shares": fake_shares.tolist(),
        }

    real, fake = rows["real_families"], rows["fake_families"]
    report = compare(real, fake)
    floor = compare(*_real_halves(real, seed))
    report["real_floor"] = {"total_variation": floor["total_variation"], "covered": floor["covered"]}
    report["present_in_reals"] = int((torch.bincount(real, minlength=num_families) > 0).sum())
    return report


def compare_features(
    real_features: Float[Tensor, "num_real dim"],
    fake_features: Float[Tensor, "num_fake dim"],
    k: int = 3,
    kid_subset_size: int = 1000,
    kid_subsets: int = 100,
    seed: int = 0,
) -> dict:
    """FID, KID (mean and std), precision and recall of the fakes against the reals (``feature_report``
    without the real-vs-real floor)."""
    check_positive_int("k", k)
    real, fake = _check_pair(real_features, fake_features, min_samples=k + 1)
    kid = kernel_inception_distance(real, fake, kid_subset_size, kid_subsets, seed)
    return {
        "fid": frechet_distance(real, fake),
        "kid": kid["kid"],
        "kid_std": kid["kid_std"],
        "kid_subset_size": kid["subset_size"],
        **precision_recall(real, fake, k),
        "num_reals": len(real),
        "num_fakes": len(fake),
    }


def feature_report(
    real_features: Float[Tensor, "num_real dim"],
    fake_features: Float[Tensor, "num_fake dim"],
    k: int = 3,
    kid_subset_size: int = 1000,
    kid_subsets: int = 100,
    seed: int = 0,
) -> dict:
    """FID, KID (mean and std), precision and recall of the fakes against the reals, and ``real_floor``.

    ``real_floor`` holds the same numbers between two disjoint random halves of the reals (seeded):
    what a perfect generator scores at that sample size, since every one of these estimates is
    biased by the finite sample (FID above 0, precision and recall below 1). The floor's sets have
    ``num_reals // 2`` rows each, so it matches the main numbers best when there are about half as
    many fakes as reals. The reals need at least ``2 (k + 1)`` rows.
    """
    check_positive_int("k", k)
    real, fake = _check_pair(real_features, fake_features, min_samples=k + 1)
    if len(real) < 2 * (k + 1):
        raise ValueError(f"real_features need at least {2 * (k + 1)} rows for the real-vs-real floor, got {len(real)}")
    report = compare_features(real, fake, k, kid_subset_size, kid_subsets, seed)
    report["real_floor"] = compare_features(*_real_halves(real, seed), k, kid_subset_size, kid_subsets, seed)
    return report


def _as_features(name: str, encoder: FeatureEncoder | None, values: Tensor, batch_size: int) -> Tensor:
    """Feature rows as they are (2-D), or images (4-D) through the encoder."""
    if not isinstance(values, Tensor):
        raise ValueError(f"{name} must be a tensor of images (N, 3, H, W) or features (N, D), got {type(values).__name__}")
    if values.dim() == 2:
        return values
    if values.dim() != 4:
        raise ValueError(f"{name} must be images (N, 3, H, W) or features (N, D), got shape {tuple(values.shape)}")
    if encoder is None:
        raise ValueError(f"{name} are images: pass an encoder to turn them into features")
    return encoder.features(values, batch_size=batch_size)


def distribution_report(
    encoder: FeatureEncoder | None,
    real: Float[Tensor, "num_real 3 height width"] | UInt8[Tensor, "num_real 3 height width"] | Float[Tensor, "num_real dim"],
    fake: Float[Tensor, "num_fake 3 height width"] | UInt8[Tensor, "num_fake 3 height width"] | Float[Tensor, "num_fake dim"],
    k: int = 3,
    kid_subset_size: int = 1000,
    kid_subsets: int = 100,
    seed: int = 0,
    batch_size: int = 256,
) -> dict:
    """``feature_report`` of images (or features) in the encoder's feature space.

    ``real`` and ``fake`` are each images, ``(N, 3, H, W)`` floats in [-1, 1] or uint8, encoded by
    ``encoder.features`` ``batch_size`` at a time, or precomputed feature rows ``(N, D)`` (e.g. the
    real set's features, computed once). The report adds ``feature_dim``.
    """
    real_features = _as_features("real", encoder, real, batch_size)
    fake_features = _as_features("fake", encoder, fake, batch_size)
    report = feature_report(real_features, fake_features, k, kid_subset_size, kid_subsets, seed)
    report["feature_dim"] = real_features.shape[1]
    return report


# ----- a trained generator against the real set -----


@torch.no_grad()
def generated_features(
    gan: TrainedGAN,
    encoder: FeatureEncoder,
    seeds: Sequence[int],
    render_labels: Float[Tensor, "num_seeds 25"],
    condition_labels: Float[Tensor, "num_seeds 25"],
    truncation_psi: float = 1.0,
    resolution: int | None = None,
    batch_size: int = 8,
) -> tuple[Float[Tensor, "num_seeds feature_dim"], float]:
    """Encoder features of the seeds' renders (``render_seeds``, ``batch_size`` at a time, quantised
    to uint8 as the real images are) and the mean field samples per ray. Renders below the run's
    resolution are upsampled to it first, as the discriminator sees them."""
    features, samples = [], []
    for start in range(0, len(seeds), batch_size):
        stop = start + batch_size
        images = render_seeds(gan, seeds[start:stop], render_labels[start:stop], condition_labels[start:stop], truncation_psi, resolution)
        image = images.image
        if image.shape[-1] != gan.resolution:
            image = F.interpolate(image, size=(gan.resolution,) * 2, mode="bilinear", align_corners=False)
        features.append(encoder.features(images_to_uint8(image)).cpu())
        samples.append(images.samples_per_ray)
    return torch.cat(features), float(np.mean(samples))


def real_features(
    encoder: FeatureEncoder, reals: Dataset, count: int, seed: int, batch_size: int = 64
) -> Float[Tensor, "num_reals feature_dim"]:
    """Encoder features of ``count`` real images at most: all of them, or a seeded random subset."""
    indices = torch.arange(len(reals))
    if len(reals) > count:
        indices = torch.randperm(len(reals), generator=torch.Generator().manual_seed(seed))[:count].sort().values
    return encoder.dataset_features(reals, indices.tolist(), batch_size=batch_size)


def generator_distribution(
    gan: TrainedGAN,
    encoder: FeatureEncoder,
    reals: Float[Tensor, "num_reals feature_dim"],
    seeds: Sequence[int],
    render_labels: Float[Tensor, "num_seeds 25"],
    condition_labels: Float[Tensor, "num_seeds 25"],
    truncation_psi: float = 1.0,
    k: int = 3,
    kid_subset_size: int = 1000,
    kid_subsets: int = 100,
    seed: int = 0,
    resolution: int | None = None,
    batch_size: int = 8,
) -> dict:
    """``feature_report`` of the seeds' renders from ``render_labels`` against the real features,
    plus ``frontal_view``: FID, KID, precision and recall of the same latents all rendered from the
    frontal camera, so that only the latents vary and colour that changes with the view cannot pass
    for diversity; and ``samples_per_ray``. With a supervised encoder (the synthetic data) it adds
    ``families``: ``family_coverage`` of the shape families its head predicts, for both camera sets."""
    features, samples_per_ray = generated_features(
        gan, encoder, seeds, render_labels, condition_labels, truncation_psi, resolution, batch_size
    )
    report = feature_report(reals, features, k, kid_subset_size, kid_subsets, seed)
    frontal = orbit_labels(FRONTAL, FRONTAL, len(seeds))
    frontal_features, _ = generated_features(gan, encoder, seeds, frontal, frontal, truncation_psi, resolution, batch_size)
    frontal_report = compare_features(reals, frontal_features, k, kid_subset_size, kid_subsets, seed)
    report["frontal_view"] = {key: frontal_report[key] for key in ("fid", "kid", "kid_std", "precision", "recall")}
    if encoder.mode == "supervised":
        from wysiwyg_gan.data.shapes import FAMILIES

        real_families = encoder.predict_families(reals)
        report["families"] = family_coverage(real_families, encoder.predict_families(features), len(FAMILIES), seed)
        report["families"]["names"] = list(FAMILIES)
        frontal_families = family_coverage(real_families, encoder.predict_families(frontal_features), len(FAMILIES), seed)
        report["frontal_view"]["families"] = {key: frontal_families[key] for key in ("total_variation", "covered", "fake_shares")}
    report["samples_per_ray"] = samples_per_ray
    return report

