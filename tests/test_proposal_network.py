"""The proposal CNN: shapes, gradients and the Table A4 layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from learned_sampler import ProposalNetwork, depth_guided_prior, robust_distribution


def _inputs(batch: int, bins: int, height: int, width: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    weights = torch.softmax(torch.randn(batch, bins, height, width, generator=generator), dim=1)
    rgb = torch.rand(batch, 3, height, width, generator=generator)
    directions = torch.nn.functional.normalize(torch.randn(batch, 3, height, width, generator=generator), dim=1)
    return weights, rgb, directions


@pytest.mark.parametrize("downscale", [1, 2, 4])
def test_output_shape(downscale):
    torch.manual_seed(0)
    network = ProposalNetwork(num_bins=6, downscale=downscale, width=8)
    logits = network(*_inputs(2, 6, 3, 5))
    assert logits.shape == (2, 6, 3 * downscale, 5 * downscale)
    assert bool(torch.isfinite(logits).all())


@pytest.mark.parametrize("downscale", [1, 4])
def test_gradient_reaches_every_parameter(downscale):
    torch.manual_seed(0)
    network = ProposalNetwork(num_bins=5, downscale=downscale, width=8)
    weights, rgb, directions = _inputs(2, 5, 4, 4)
    targets = torch.softmax(torch.randn(2, 5, 4 * downscale, 4 * downscale, generator=torch.Generator().manual_seed(1)), dim=1)
    loss = -(targets * torch.log_softmax(network(weights, rgb, directions), dim=1)).sum(1).mean()
    loss.backward()
    for name, parameter in network.named_parameters():
        assert parameter.grad is not None, name
        assert bool(torch.isfinite(parameter.grad).all()), name
        assert float(parameter.grad.abs().sum()) > 0, name


def test_table_a4_layout_for_downscale_4():
    network = ProposalNetwork(num_bins=10, downscale=4, width=16)
    convs = [m for m in network.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4 + 3 + 1 + 1 + 3 + 1
    assert len(network.low_res) == 4
    assert [len(stage) for stage in network.upsample_stages] == [3, 1]
    assert len(network.refine) == 3
    # Channels: K + 6 inputs (probe weights, rgb, view directions), hidden width, K outputs.
    assert network.low_res[0].in_channels == 10 + 6
    assert all(conv.kernel_size == (3, 3) for conv in convs)
    assert network.to_bins.out_channels == 10 and network.to_logits.out_channels == 10
    assert network.refine[0].in_channels == 10
    assert all(layer.out_channels == 16 for layer in [*network.low_res, *network.refine])
    assert all(layer.out_channels == 16 for stage in network.upsample_stages for layer in stage)


def test_other_layouts():
    assert len(ProposalNetwork(4, downscale=1, width=8).upsample_stages) == 0
    assert [len(s) for s in ProposalNetwork(4, downscale=8, width=8).upsample_stages] == [3, 1, 1]
    assert [len(s) for s in ProposalNetwork(4, downscale=2, width=8, upsample_layers=(2,)).upsample_stages] == [2]
    no_refine = ProposalNetwork(4, downscale=2, width=8, refine_layers=0)
    assert len(no_refine.refine) == 0 and no_refine.to_logits.in_channels == 4
    assert no_refine(*_inputs(1, 4, 2, 2)).shape == (1, 4, 4, 4)


def test_residual_on_upsampled_probe_weights():
    # With every conv zeroed but an identity to_logits path, the output is the upsampled weights.
    network = ProposalNetwork(num_bins=3, downscale=2, width=4, refine_layers=0)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.zero_()
        network.to_logits.weight[:, :, 1, 1] = torch.eye(3)
    weights, rgb, directions = _inputs(1, 3, 2, 2)
    expected = torch.nn.functional.interpolate(weights, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(network(weights, rgb, directions), expected)


@pytest.mark.parametrize(("floor", "num_bins", "expected_kept"), [(1e-5, 64, 1), (1e-5, 192, 1), (1e-3, 64, 43)])
def test_probe_skip_floor_sets_the_kept_set_of_a_sharp_probe(floor, num_bins, expected_kept):
    # With the CNN's own logits at zero the skip alone sets p_hat: a floor holding less than
    # 1 - tau of the mass leaves a one-bin probe as one kept bin; 1e-3 over 64 bins holds 6 % of
    # it, so robust sampling also keeps 42 empty bins (the safety net the docstring describes).
    network = ProposalNetwork(num_bins=num_bins, downscale=4, width=8, probe_skip=True, probe_skip_floor=floor)
    nn.init.zeros_(network.to_logits.weight)
    nn.init.zeros_(network.to_logits.bias)
    weights = torch.zeros(1, num_bins, 2, 2)
    weights[:, num_bins // 3] = 1.0
    _, rgb, directions = _inputs(1, num_bins, 2, 2)
    p_hat = torch.softmax(network(weights, rgb, directions), dim=1).movedim(1, -1)
    kept = (robust_distribution(p_hat, tau=0.98) > 0).sum(dim=-1)
    assert kept.unique().tolist() == [expected_kept]


def test_probe_skip_adds_the_log_of_the_depth_guided_prior():
    """With the CNN's own logits at zero, the skip's output is log(depth_guided_prior + floor)."""
    network = ProposalNetwork(
        num_bins=16, downscale=2, width=8, probe_skip=True, probe_skip_depth_share=0.5, probe_skip_depth_sigma=1.5
    )
    nn.init.zeros_(network.to_logits.weight)
    nn.init.zeros_(network.to_logits.bias)
    weights, rgb, directions = _inputs(1, 16, 3, 3)
    expected = torch.log(depth_guided_prior(weights, 2, depth_share=0.5, depth_sigma=1.5) + network.probe_skip_floor)
    torch.testing.assert_close(network(weights, rgb, directions), expected)
    with pytest.raises(ValueError, match="probe_skip_depth_share"):
        ProposalNetwork(num_bins=16, probe_skip_depth_share=-0.1)
    with pytest.raises(ValueError, match="probe_skip_depth_sigma"):
        ProposalNetwork(num_bins=16, probe_skip_depth_sigma=0.0)


def test_bad_inputs_raise():
    network = ProposalNetwork(num_bins=4, downscale=2, width=8)
    weights, rgb, directions = _inputs(2, 4, 3, 3)
    with pytest.raises(ValueError, match="probe_weights"):
        network(weights[:, :3], rgb, directions)
    with pytest.raises(ValueError, match="probe_weights"):
        network(weights[0], rgb, directions)
    with pytest.raises(ValueError, match="probe_rgb"):
        network(weights, rgb[:, :, :2], directions)
    with pytest.raises(ValueError, match="probe_rgb"):
        network(weights, rgb[:1], directions)
    with pytest.raises(ValueError, match="view_directions"):
        network(weights, rgb, directions[:, :2])


def test_bad_construction_raises():
    with pytest.raises(ValueError, match="downscale"):
        ProposalNetwork(4, downscale=3)
    with pytest.raises(ValueError, match="num_bins"):
        ProposalNetwork(1)
    with pytest.raises(ValueError, match="upsample_layers"):
        ProposalNetwork(4, downscale=4, upsample_layers=(3,))
    with pytest.raises(ValueError, match="upsample_layers"):
        ProposalNetwork(4, downscale=2, upsample_layers=(0,))
    with pytest.raises(ValueError, match="width"):
        ProposalNetwork(4, width=0)
    for floor in (0.0, 1.0, float("nan")):
        with pytest.raises(ValueError, match="probe_skip_floor"):
            ProposalNetwork(4, probe_skip=True, probe_skip_floor=floor)
