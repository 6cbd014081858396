"""VolSDF density: the Laplace-CDF law, stability for tiny beta, spatially varying beta."""

from __future__ import annotations

import math

import pytest
import torch

from learned_sampler import volsdf_density


def _laplace_density(s: float, beta: float) -> float:
    """(1 / beta) * Psi_beta(-s), Psi the CDF of a zero-mean Laplace(beta)."""
    x = -s
    cdf = 0.5 * math.exp(x / beta) if x <= 0 else 1.0 - 0.5 * math.exp(-x / beta)
    return cdf / beta


@pytest.mark.parametrize("beta", [0.01, 0.1, 0.5])
def test_matches_laplace_cdf_formula(beta):
    sdf_values = [-1.0, -0.3, -0.05, -0.001, 0.0, 0.001, 0.05, 0.3, 1.0]
    sdf = torch.tensor(sdf_values, dtype=torch.float64)
    density = volsdf_density(sdf, beta)
    expected = torch.tensor([_laplace_density(s, beta) for s in sdf_values], dtype=torch.float64)
    torch.testing.assert_close(density, expected)


def test_hand_values():
    beta = 0.1
    # On the surface: half the interior density.
    assert float(volsdf_density(torch.tensor(0.0), beta)) == pytest.approx(5.0)
    # One beta outside: 0.5 e^-1 / beta; one beta inside: (1 - 0.5 e^-1) / beta.
    assert float(volsdf_density(torch.tensor(0.1), beta)) == pytest.approx(5.0 * math.exp(-1.0), rel=1e-6)
    assert float(volsdf_density(torch.tensor(-0.1), beta)) == pytest.approx(10.0 - 5.0 * math.exp(-1.0), rel=1e-6)
    # Far outside: ~0; deep inside: ~1 / beta.
    assert float(volsdf_density(torch.tensor(2.0), beta)) < 1e-7
    assert float(volsdf_density(torch.tensor(-2.0), beta)) == pytest.approx(10.0, rel=1e-6)


def test_monotone_in_sdf_and_bounded_by_inverse_beta():
    sdf = torch.linspace(-1.0, 1.0, 201, dtype=torch.float64)
    density = volsdf_density(sdf, 0.05)
    assert bool((density.diff() <= 0).all())  # denser inside (sdf < 0)
    assert bool((density > 0).all()) and bool((density <= 1.0 / 0.05).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_values_and_gradients_for_tiny_beta_and_large_sdf(dtype):
    sdf_values = torch.tensor([-1e3, -10.0, -1e-3, -1e-7, 0.0, 1e-7, 1e-3, 10.0, 1e3], dtype=dtype)
    beta_values = torch.tensor([1e-6, 1e-4, 1e-2, 1.0, 10.0], dtype=dtype)
    sdf = sdf_values[:, None].expand(-1, 5).clone().requires_grad_(True)
    beta = beta_values[None, :].expand(9, -1).clone().requires_grad_(True)
    density = volsdf_density(sdf, beta)
    assert bool(torch.isfinite(density).all())
    assert bool((density >= 0).all())
    assert bool((density <= 1.0 / beta.detach() * (1 + 1e-6)).all())
    density.sum().backward()
    assert bool(torch.isfinite(sdf.grad).all())
    assert bool(torch.isfinite(beta.grad).all())
    # Deep inside at tiny beta the density is 1 / beta.
    torch.testing.assert_close(density[0, 0].detach(), torch.tensor(1e6, dtype=dtype))


def test_gradients_match_finite_differences_including_the_surface():
    # The density is C^1 in sdf (the Laplace pdf is continuous at 0), also exactly on the surface.
    sdf = torch.tensor([-0.2, -0.01, 0.0, 0.01, 0.2], dtype=torch.float64, requires_grad=True)
    beta = torch.tensor([0.05, 0.1, 0.1, 0.2, 0.3], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(volsdf_density, (sdf, beta))
    # d sigma / d s = -pdf(s) / beta = -exp(-|s| / beta) / (2 beta^2).
    s = torch.tensor([0.0, 0.05, -0.05], dtype=torch.float64, requires_grad=True)
    volsdf_density(s, 0.1).sum().backward()
    expected = -torch.exp(-s.detach().abs() / 0.1) / (2 * 0.1**2)
    torch.testing.assert_close(s.grad, expected)


def test_spatially_varying_beta_broadcasts():
    sdf = torch.linspace(-0.5, 0.5, 12).reshape(3, 4)
    beta = torch.tensor([0.01, 0.1, 1.0]).reshape(3, 1)
    density = volsdf_density(sdf, beta)
    assert density.shape == (3, 4)
    for row in range(3):
        torch.testing.assert_close(density[row], volsdf_density(sdf[row], float(beta[row])))
    # Per-sample beta of the same shape.
    per_sample = torch.rand(3, 4, generator=torch.Generator().manual_seed(0)) + 0.01
    density = volsdf_density(sdf, per_sample)
    expected = torch.tensor([[_laplace_density(float(s), float(b)) for s, b in zip(rs, rb)] for rs, rb in zip(sdf, per_sample)])
    torch.testing.assert_close(density, expected, rtol=1e-5, atol=1e-5)


def test_beta_gradient_flows():
    sdf = torch.tensor([-0.1, 0.0, 0.1])
    log_beta = torch.tensor(math.log(0.05), requires_grad=True)
    volsdf_density(sdf, log_beta.exp()).sum().backward()
    assert log_beta.grad is not None and float(log_beta.grad.abs()) > 0


@pytest.mark.parametrize("beta", [0.0, -0.1, torch.tensor([0.1, 0.0, 0.2]), torch.tensor([-1.0, 1.0, 1.0])])
def test_non_positive_beta_raises(beta):
    with pytest.raises(ValueError, match="beta"):
        volsdf_density(torch.zeros(3), beta)


def test_bad_dtypes_raise():
    with pytest.raises(ValueError, match="sdf"):
        volsdf_density(torch.zeros(3, dtype=torch.long), 0.1)
    with pytest.raises(ValueError, match="beta"):
        volsdf_density(torch.zeros(3), torch.ones(3, dtype=torch.long))
