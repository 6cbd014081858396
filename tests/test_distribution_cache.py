"""``DistributionCache``: whole-image predictions looked up by pixel, dropped when stale."""

from __future__ import annotations

import pytest
import torch

from wysiwyg_nerfstudio.distribution_cache import DistributionCache


def random_image_prediction(height: int, width: int, bins: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    distribution = torch.rand(height, width, bins, generator=generator).softmax(-1)
    budgets = torch.randint(16, 33, (height, width), generator=generator)
    return distribution, budgets


def test_lookup_returns_each_pixels_row_of_its_image():
    cache = DistributionCache(max_age=10)
    images = {3: random_image_prediction(4, 5, 8, seed=0), 7: random_image_prediction(6, 2, 8, seed=1)}
    for camera, (distribution, budgets) in images.items():
        cache.store(camera, distribution, budgets, step=0)
    pixels = torch.tensor([[7, 5, 1], [3, 0, 0], [3, 3, 4], [7, 0, 0], [3, 0, 0]])
    distribution, budgets = cache.lookup(pixels)
    assert distribution.dtype == torch.float32 and distribution.shape == (5, 8)
    for row, (camera, y, x) in enumerate(pixels.tolist()):
        expected_distribution, expected_budgets = images[camera]
        # Stored in half precision, renormalised on lookup.
        assert torch.allclose(distribution[row], expected_distribution[y, x], atol=1e-3)
        assert int(budgets[row]) == int(expected_budgets[y, x])
    assert torch.allclose(distribution.sum(-1), torch.ones(5))


def test_predictions_are_dropped_after_max_age_iterations():
    cache = DistributionCache(max_age=3)
    distribution, budgets = random_image_prediction(2, 2, 4, seed=0)
    cache.store(0, distribution, budgets, step=5)
    cache.store(1, distribution, budgets, step=6)
    cache.drop_stale(step=7)
    assert cache.missing(torch.tensor([0, 1, 1, 2])) == [2]
    cache.drop_stale(step=8)
    assert cache.missing(torch.tensor([0, 1, 2])) == [0, 2]


def test_bad_lookups_and_ages_are_rejected():
    with pytest.raises(ValueError, match="max_age"):
        DistributionCache(max_age=0)
    cache = DistributionCache(max_age=1)
    distribution, budgets = random_image_prediction(2, 2, 4, seed=0)
    cache.store(0, distribution, budgets, step=0)
    with pytest.raises(KeyError, match=r"training images \[4\]"):
        cache.lookup(torch.tensor([[0, 0, 0], [4, 1, 1]]))
    with pytest.raises(ValueError, match=r"\(num_rays, 3\)"):
        cache.lookup(torch.tensor([0, 1, 1]))
