"""The GAN's loss terms on values with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from wysiwyg_gan.losses import (
    decision_boundary_loss,
    discriminator_adversarial_loss,
    generator_adversarial_loss,
    r1_penalty,
    surface_tightness_loss,
)
from wysiwyg_gan.rendering import free_space_mask


def test_adversarial_losses_at_zero_logits_are_log_two():
    zeros = torch.zeros(4, 1)
    assert generator_adversarial_loss(zeros).item() == pytest.approx(math.log(2))
    assert discriminator_adversarial_loss(zeros, zeros).item() == pytest.approx(2 * math.log(2))
    # A confident, correct discriminator has a small loss; the generator then a large one.
    assert discriminator_adversarial_loss(torch.full((4, 1), 10.0), torch.full((4, 1), -10.0)) < 1e-3
    assert generator_adversarial_loss(torch.full((4, 1), -10.0)) > 9.9


def test_r1_penalty_of_a_linear_discriminator_is_its_squared_weight_norm():
    weight = torch.randn(3, 4, 4)
    images = torch.randn(2, 3, 4, 4, requires_grad=True)
    logits = (images * weight).sum(dim=(1, 2, 3))[:, None]
    torch.testing.assert_close(r1_penalty(logits, images), weight.square().sum())


def test_surface_tightness_is_zero_at_the_target_and_pulls_towards_it():
    surface = torch.full((2, 1, 3, 3), 0.01, requires_grad=True)
    opaque = torch.ones(2, 1, 3, 3)
    assert surface_tightness_loss(surface.detach(), opaque, 0.01) == 0
    surface_tightness_loss(surface, opaque, 0.001).backward()
    assert (surface.grad > 0).all()  # gradient descent lowers B towards 0.001


def test_surface_tightness_asks_nothing_of_empty_pixels():
    # An empty pixel renders B = 0: its target is 0 too, so the loss does not grow haze there.
    surface = torch.zeros(1, 1, 2, 2, requires_grad=True)
    empty = torch.zeros(1, 1, 2, 2)
    loss = surface_tightness_loss(surface, empty, 0.01)
    loss.backward()
    assert loss == 0 and (surface.grad == 0).all()
    # A half-transparent pixel's target is half of B_target.
    half = torch.full((1, 1, 1, 1), 0.5)
    assert surface_tightness_loss(torch.full((1, 1, 1, 1), 0.005), half, 0.01) == 0


def test_decision_boundary_loss_penalises_values_near_zero_only():
    sdf = torch.tensor([0.0, 0.005, 0.1, -0.1], requires_grad=True)
    loss = decision_boundary_loss(sdf, sharpness=100.0)
    torch.testing.assert_close(loss, (1 + math.exp(-0.5) + 2 * math.exp(-10)) / 4 * torch.ones(()))
    loss.backward()
    assert sdf.grad[1] < 0 and abs(sdf.grad[2]) < abs(sdf.grad[1]) / 1000  # pushes 0.005 away from 0, ignores 0.1


def test_free_space_mask_ends_where_the_transmittance_falls_below_one_half():
    # A ray through haze (0.1), then a surface (0.6): the mask covers the haze, not the surface or
    # what lies behind it; a ray that hits nothing is free space all along.
    weights = torch.tensor([[0.1, 0.1, 0.6, 0.1, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]], requires_grad=True)
    mask = free_space_mask(weights)
    assert mask.tolist() == [[1.0, 1.0, 0.0, 0.0, 0.0], [1.0] * 5] and not mask.requires_grad


def test_decision_boundary_loss_restricted_to_free_space_leaves_the_surface_alone():
    sdf = torch.tensor([0.001, 0.0, 0.002], requires_grad=True)  # a zero crossing in haze, then the surface
    free_space = torch.tensor([1.0, 0.0, 0.0])
    loss = decision_boundary_loss(sdf, sharpness=100.0, free_space=free_space)
    torch.testing.assert_close(loss, torch.tensor(math.exp(-0.1) / 3))  # the mean stays over every sample
    loss.backward()
    assert sdf.grad[0] < 0 and sdf.grad[1] == 0 and sdf.grad[2] == 0
    with pytest.raises(ValueError, match="free_space"):
        decision_boundary_loss(sdf, free_space=torch.ones(2))
