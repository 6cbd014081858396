"""``FieldRayPool``: recent patch predictions kept first in first out, drawn uniformly over image positions."""

from __future__ import annotations

import pytest
import torch

from wysiwyg_nerfstudio.field_ray_pool import FieldRayPool

BINS = 8


def patch_predictions(num_patches: int, size: int, height: int, width: int, generator: torch.Generator):
    """Pixels of ``num_patches`` square patches placed uniformly (as nerfstudio's patch sampler
    places them) in 3 images, with random distributions and hit probabilities."""
    cameras = torch.randint(0, 3, (num_patches,), generator=generator)
    tops = torch.randint(0, height - size + 1, (num_patches,), generator=generator)
    lefts = torch.randint(0, width - size + 1, (num_patches,), generator=generator)
    steps = torch.arange(size)
    rows = (tops[:, None, None] + steps[None, :, None]).expand(-1, size, size)
    columns = (lefts[:, None, None] + steps[None, None, :]).expand(-1, size, size)
    pixels = torch.stack([cameras[:, None, None].expand(-1, size, size), rows, columns], -1).reshape(-1, 3)
    distributions = torch.rand(len(pixels), BINS, generator=generator).softmax(-1)
    hit_probabilities = torch.rand(len(pixels), generator=generator)
    return pixels, distributions, hit_probabilities


def test_drawn_pixels_carry_their_own_predictions():
    generator = torch.Generator().manual_seed(0)
    pool = FieldRayPool(capacity=1000, num_bins=BINS)
    pixels, distributions, hit_probabilities = patch_predictions(4, 5, 20, 20, generator)
    pool.add(pixels, distributions, hit_probabilities)
    assert len(pool) == 100
    drawn, drawn_distributions, drawn_hits = pool.draw(300)
    assert drawn.shape == (300, 3) and drawn_distributions.shape == (300, BINS) and drawn_hits.shape == (300,)
    assert drawn_hits.dtype == torch.float32
    assert drawn_distributions.dtype == torch.float32 and torch.allclose(drawn_distributions.sum(-1), torch.ones(300))
    for pixel, distribution, hit in zip(drawn, drawn_distributions, drawn_hits):
        # Patches may overlap: the pixel's prediction is one of those made for it.
        rows = (pixels == pixel).all(-1).nonzero()[:, 0]
        assert len(rows) >= 1
        assert any(
            torch.allclose(distribution, distributions[r], atol=2e-3) and abs(float(hit - hit_probabilities[r])) < 1e-3
            for r in rows
        )


def test_oldest_predictions_are_dropped_first():
    pool = FieldRayPool(capacity=6, num_bins=BINS)
    for batch in range(3):
        pixels = torch.tensor([[batch, row, 0] for row in range(4)])
        pool.add(pixels, torch.full((4, BINS), 1.0 / BINS), torch.full((4,), 0.5))
    assert len(pool) == 6
    kept = {tuple(pixel) for pixel in pool.pixels.tolist()}
    # Batch 0's four pixels went, then batch 1's first two; batch 2 is whole.
    assert kept == {(1, 2, 0), (1, 3, 0)} | {(2, row, 0) for row in range(4)}
    assert set(pool.draw(500)[0][:, 0].tolist()) == {1, 2}
    many = torch.tensor([[5, row, 1] for row in range(9)])
    pool.add(many, torch.full((9, BINS), 1.0 / BINS), torch.full((9,), 0.5))
    assert {tuple(pixel) for pixel in pool.pixels.tolist()} == {(5, row, 1) for row in range(3, 9)}


def test_draws_are_uniform_over_image_positions_despite_patch_placement():
    """Uniformly placed 8x8 patches cover a 16x16 image's corners 81 times less often than its
    centre; the draw weights undo that, so every position is drawn about equally often."""
    generator = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    pool = FieldRayPool(capacity=64 * 4000, num_bins=BINS)
    pool.add(*patch_predictions(4000, 8, 16, 16, generator))
    stored = torch.zeros(16, 16)
    stored.index_put_((pool.pixels[:, 1], pool.pixels[:, 2]), torch.ones(len(pool)), accumulate=True)
    assert stored[0, 0] * 20 < stored[8, 8]  # the pool itself is far from uniform
    drawn = pool.draw(200_000)[0]
    counts = torch.zeros(16, 16)
    counts.index_put_((drawn[:, 1], drawn[:, 2]), torch.ones(len(drawn)), accumulate=True)
    expected = len(drawn) / 256
    assert float(counts.min()) > 0.8 * expected and float(counts.max()) < 1.2 * expected


def test_bad_use_is_rejected():
    with pytest.raises(ValueError, match="capacity"):
        FieldRayPool(capacity=0, num_bins=BINS)
    pool = FieldRayPool(capacity=10, num_bins=BINS)
    with pytest.raises(RuntimeError, match="WysiwygPipeline"):
        pool.draw(4)
    pixels = torch.tensor([[0, 1, 2], [0, 1, 3]])
    with pytest.raises(ValueError, match="pixels"):
        pool.add(pixels[:, :2], torch.rand(2, BINS), torch.ones(2))
    with pytest.raises(ValueError, match="distributions"):
        pool.add(pixels, torch.rand(2, BINS + 1), torch.ones(2))
    with pytest.raises(ValueError, match="hit_probabilities"):
        pool.add(pixels, torch.rand(2, BINS), torch.ones(3))
    pool.add(pixels, torch.rand(2, BINS), torch.ones(2))
    with pytest.raises(ValueError, match="num_rays"):
        pool.draw(0)
