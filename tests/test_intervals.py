"""RayIntervals: construction helpers, deltas, budgets and batch indexing."""

from __future__ import annotations

import torch

from learned_sampler import RayIntervals


def test_from_edges_uses_midpoints():
    starts = torch.tensor([[0.0, 1.0, 3.0]])
    ends = torch.tensor([[1.0, 3.0, 4.0]])
    intervals = RayIntervals.from_edges(starts, ends)
    torch.testing.assert_close(intervals.t_samples, torch.tensor([[0.5, 2.0, 3.5]]))
    torch.testing.assert_close(intervals.deltas, torch.tensor([[1.0, 2.0, 1.0]]))
    assert intervals.mask is None and intervals.num_samples == 3 and intervals.batch_shape == (1,)


def test_from_points_tiles_near_far():
    t = torch.tensor([[1.0, 1.5, 3.0], [2.0, 2.2, 2.4]])
    nears = torch.tensor([0.5, 2.0])
    fars = torch.tensor([4.0, 3.0])
    intervals = RayIntervals.from_points(t, nears, fars)
    torch.testing.assert_close(intervals.t_starts, torch.tensor([[0.5, 1.25, 2.25], [2.0, 2.1, 2.3]]))
    torch.testing.assert_close(intervals.t_ends, torch.tensor([[1.25, 2.25, 4.0], [2.1, 2.3, 3.0]]))
    torch.testing.assert_close(intervals.t_samples, t)
    torch.testing.assert_close(intervals.deltas.sum(-1), fars - nears)
    assert bool((intervals.t_starts <= intervals.t_samples).all())
    assert bool((intervals.t_samples <= intervals.t_ends).all())


def test_from_points_with_a_mask_ends_each_ray_at_far():
    """Rays with fewer real samples: the last real one reaches far, padding is empty at far."""
    t = torch.tensor([[1.0, 1.5, 3.0], [2.0, 2.4, 9.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    nears, fars = torch.tensor([0.5, 2.0]), torch.tensor([4.0, 3.0])
    intervals = RayIntervals.from_points(t, nears, fars, mask)
    torch.testing.assert_close(intervals.t_starts, torch.tensor([[0.5, 1.25, 2.25], [2.0, 2.2, 3.0]]))
    torch.testing.assert_close(intervals.t_ends, torch.tensor([[1.25, 2.25, 4.0], [2.2, 3.0, 3.0]]))
    torch.testing.assert_close(intervals.t_samples, torch.tensor([[1.0, 1.5, 3.0], [2.0, 2.4, 3.0]]))
    torch.testing.assert_close(intervals.deltas.sum(-1), fars - nears)
    assert torch.equal(intervals.mask, mask)


def test_samples_per_ray_with_and_without_mask():
    starts = torch.zeros(2, 3, 4)
    intervals = RayIntervals.from_edges(starts, starts + 1)
    torch.testing.assert_close(intervals.samples_per_ray(), torch.full((2, 3), 4.0))
    mask = torch.arange(4).expand(2, 3, 4) < torch.tensor([[1, 2, 3], [4, 4, 2]])[..., None]
    masked = RayIntervals(starts, starts + 1, starts + 0.5, mask)
    torch.testing.assert_close(masked.samples_per_ray(), torch.tensor([[1.0, 2.0, 3.0], [4.0, 4.0, 2.0]]))


def test_indexing_and_reshape_carry_every_field():
    generator = torch.Generator().manual_seed(0)
    starts = torch.rand(2, 3, 5, generator=generator)
    mask = torch.rand(2, 3, 5, generator=generator) > 0.3
    evaluated = torch.rand(2, 3, 5, generator=generator) > 0.5
    outputs = {"density": torch.rand(2, 3, 5, generator=generator), "rgb": torch.rand(2, 3, 5, 3, generator=generator)}
    intervals = RayIntervals(starts, starts + 1, starts + 0.5, mask, evaluated, outputs)

    sub = intervals[1, 1:]
    assert sub.batch_shape == (2,) and sub.num_samples == 5
    torch.testing.assert_close(sub.t_starts, starts[1, 1:])
    assert torch.equal(sub.mask, mask[1, 1:]) and torch.equal(sub.evaluated, evaluated[1, 1:])
    torch.testing.assert_close(sub.field_outputs["rgb"], outputs["rgb"][1, 1:])

    flat = intervals.reshape(6)
    assert flat.batch_shape == (6,)
    torch.testing.assert_close(flat.t_ends, (starts + 1).reshape(6, 5))
    assert torch.equal(flat.mask, mask.reshape(6, 5))
    assert flat.field_outputs["rgb"].shape == (6, 5, 3)
    torch.testing.assert_close(flat.field_outputs["rgb"], outputs["rgb"].reshape(6, 5, 3))
    torch.testing.assert_close(flat.field_outputs["density"], outputs["density"].reshape(6, 5))
