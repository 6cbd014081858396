"""``FieldRayPool``: regions of training images, random pixels drawn over them, their predictions looked up."""

from __future__ import annotations

import pytest
import torch

from wysiwyg_nerfstudio.field_ray_pool import FieldRayPool, Region, RegionPrediction

BINS = 8


def predicted(region: Region, seed: int) -> RegionPrediction:
    generator = torch.Generator().manual_seed(seed)
    distribution = torch.rand(region.height, region.width, BINS, generator=generator).softmax(-1)
    budgets = torch.randint(16, 33, (region.height, region.width), generator=generator)
    return RegionPrediction(region, distribution, budgets)


def test_regions_are_distinct_images_cropped_to_the_region_size():
    torch.manual_seed(0)
    pool = FieldRayPool(num_regions=3, region_size=10, refresh_every=5)
    heights, widths = torch.tensor([8, 20, 30, 12, 40]), torch.tensor([8, 25, 9, 12, 40])
    regions = pool.choose_regions(heights, widths)
    assert len(regions) == 3 and len({region.camera for region in regions}) == 3
    for region in regions:
        height, width = int(heights[region.camera]), int(widths[region.camera])
        assert (region.height, region.width) == (min(height, 10), min(width, 10))
        assert 0 <= region.top <= height - region.height and 0 <= region.left <= width - region.width
    assert len(FieldRayPool(num_regions=9, region_size=10, refresh_every=5).choose_regions(heights, widths)) == 5


def test_pixels_are_drawn_uniformly_over_the_regions_and_looked_up():
    torch.manual_seed(0)
    pool = FieldRayPool(num_regions=2, region_size=8, refresh_every=5)
    regions = [Region(camera=4, top=3, left=1, height=8, width=8), Region(camera=1, top=0, left=5, height=4, width=2)]
    predictions = [predicted(region, seed) for seed, region in enumerate(regions)]
    pool.refresh(predictions, step=0)
    pixels = pool.sample_pixels(20000)
    for region in regions:
        mine = pixels[pixels[:, 0] == region.camera]
        assert (mine[:, 1] >= region.top).all() and (mine[:, 1] < region.top + region.height).all()
        assert (mine[:, 2] >= region.left).all() and (mine[:, 2] < region.left + region.width).all()
    assert set(pixels[:, 0].tolist()) == {1, 4}
    # Uniform over the 64 + 8 pooled pixels: each region's share follows its area.
    assert float((pixels[:, 0] == 1).float().mean()) == pytest.approx(8 / 72, abs=0.01)
    distribution, budgets = pool.lookup(pixels[:50])
    assert distribution.dtype == torch.float32 and torch.allclose(distribution.sum(-1), torch.ones(50))
    by_camera = {prediction.region.camera: prediction for prediction in predictions}
    for row, (camera, y, x) in enumerate(pixels[:50].tolist()):
        prediction = by_camera[camera]
        y, x = y - prediction.region.top, x - prediction.region.left
        # Stored in half precision, renormalised on lookup.
        assert torch.allclose(distribution[row], prediction.distribution[y, x], atol=1e-3)
        assert int(budgets[row]) == int(prediction.budgets[y, x])


def test_refresh_schedule():
    pool = FieldRayPool(num_regions=1, region_size=4, refresh_every=3)
    assert pool.needs_refresh(0)
    pool.refresh([predicted(Region(0, 0, 0, 4, 4), seed=0)], step=5)
    assert not pool.needs_refresh(7) and pool.needs_refresh(8)


def test_bad_use_is_rejected():
    with pytest.raises(ValueError, match="num_regions"):
        FieldRayPool(num_regions=0, region_size=4, refresh_every=3)
    pool = FieldRayPool(num_regions=2, region_size=4, refresh_every=3)
    with pytest.raises(RuntimeError, match="training callback"):
        pool.sample_pixels(4)
    region = Region(2, 0, 0, 4, 4)
    with pytest.raises(ValueError, match="one region per image"):
        pool.refresh([predicted(region, 0), predicted(region, 1)], step=0)
    four_by_four = predicted(region, 0)
    with pytest.raises(ValueError, match="4x3 region"):
        pool.refresh([RegionPrediction(Region(2, 0, 0, 4, 3), four_by_four.distribution, four_by_four.budgets)], step=0)
    pool.refresh([predicted(region, 0)], step=0)
    with pytest.raises(KeyError, match="outside its pooled region"):
        pool.lookup(torch.tensor([[2, 4, 0]]))
    with pytest.raises(KeyError, match="training image 3"):
        pool.lookup(torch.tensor([[3, 0, 0]]))
    with pytest.raises(ValueError, match=r"\(num_rays, 3\)"):
        pool.lookup(torch.tensor([2, 0, 0]))
