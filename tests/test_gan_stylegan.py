"""StyleGAN2 building blocks of the WYSIWYG GAN: layers, mapping, synthesis and discriminator.

All networks are tiny (channel_base 256, channel_max 32, 16-32 px) so the file runs in seconds.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import wysiwyg_gan.networks as networks
from wysiwyg_gan.networks import (
    Discriminator,
    EqualizedConv2d,
    EqualizedLinear,
    MappingNetwork,
    MinibatchStd,
    ModulatedConv2d,
    NoiseInjection,
    SynthesisBlock,
    SynthesisLayer,
    SynthesisNetwork,
    ToRGB,
)

TINY = {"channel_base": 256, "channel_max": 32}


def _randn(*shape: int, seed: int = 7) -> torch.Tensor:
    # Seeds differ from the torch.manual_seed(0) used for initialisation: identical streams would
    # correlate inputs with weights.
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _set_noise_strength(module: torch.nn.Module, value: float) -> None:
    for layer in module.modules():
        if isinstance(layer, NoiseInjection):
            layer.strength.data.fill_(value)


def _assert_all_parameters_have_gradients(module: torch.nn.Module) -> None:
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None, name
        assert bool(torch.isfinite(parameter.grad).all()), name
        assert float(parameter.grad.abs().sum()) > 0, name


def test_public_names_are_exported():
    for name in networks.__all__:
        assert hasattr(networks, name), name


# --------------------------------------------------------------------------------------- layers


@pytest.mark.parametrize("lr_multiplier", [1.0, 0.01])
def test_equalized_linear_has_unit_output_std_at_init(lr_multiplier):
    torch.manual_seed(0)
    layer = EqualizedLinear(256, 256, bias_init=0.5, lr_multiplier=lr_multiplier)
    # Stored as N(0, 1) / lr_multiplier; the effective bias is bias_init.
    assert float(layer.weight.detach().std()) == pytest.approx(1.0 / lr_multiplier, rel=0.05)
    assert torch.allclose(layer.bias * layer.bias_gain, torch.full((256,), 0.5))
    with torch.no_grad():
        y = layer(_randn(512, 256)) - 0.5
    assert float(y.std()) == pytest.approx(1.0, abs=0.1)


def test_equalized_linear_lrelu_and_no_bias():
    torch.manual_seed(0)
    layer = EqualizedLinear(8, 4, bias=False, activation="lrelu")
    assert layer.bias is None
    x = _randn(3, 8)
    expected = F.leaky_relu(x @ (layer.weight / math.sqrt(8)).T, 0.2) * math.sqrt(2)
    assert torch.allclose(layer(x), expected, atol=1e-6)


@pytest.mark.parametrize(
    ("kernel_size", "up", "down", "out_size"), [(3, 1, 1, 8), (1, 1, 2, 4), (3, 1, 2, 4), (3, 2, 1, 16)]
)
def test_equalized_conv_shapes(kernel_size, up, down, out_size):
    torch.manual_seed(0)
    conv = EqualizedConv2d(4, 6, kernel_size, activation="lrelu", up=up, down=down)
    assert conv(_randn(2, 4, 8, 8)).shape == (2, 6, out_size, out_size)


def test_equalized_conv_has_unit_output_std_at_init():
    torch.manual_seed(0)
    conv = EqualizedConv2d(64, 64, 3)
    with torch.no_grad():
        y = conv(_randn(2, 64, 16, 16))[:, :, 1:-1, 1:-1]  # interior: no zero padding in the receptive field
    assert float(y.std()) == pytest.approx(1.0, abs=0.1)


def test_downsampling_blur_is_aligned():
    # Blur + stride-2 subsampling of a ramp x[i] = i: away from the zero-padded border, output m
    # is centred between input pixels 2m and 2m + 1, i.e. reads 2m + 0.5.
    conv = EqualizedConv2d(1, 1, 1, bias=False, down=2)
    conv.weight.data.fill_(1.0)
    ramp = torch.arange(8.0).expand(8, 8)[None, None]
    out = conv(ramp)[0, 0]
    assert torch.allclose(out[1:-1, 1:-1], torch.tensor([2.5, 4.5])[None].expand(2, 2))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kernel_size": 2}, "kernel_size must be odd"),
        ({"kernel_size": 3, "up": 2, "down": 2}, "up and down"),
        ({"kernel_size": 3, "down": 4}, "down must be 1 or 2"),
        ({"kernel_size": 3, "activation": "relu"}, "activation"),
    ],
)
def test_equalized_conv_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EqualizedConv2d(4, 4, **kwargs)


def test_equalized_conv_rejects_wrong_channels():
    with pytest.raises(ValueError, match=r"x must have shape \(batch, in_channels=4, height, width\)"):
        EqualizedConv2d(4, 4, 3)(_randn(1, 3, 8, 8))


def test_demodulation_gives_unit_output_std():
    torch.manual_seed(0)
    conv = ModulatedConv2d(64, 32, 3, w_dim=16, demodulate=True)
    with torch.no_grad():
        y = conv(_randn(4, 64, 16, 16), _randn(4, 16, seed=1))[:, :, 1:-1, 1:-1]
    # Each output channel of each sample, not only the pooled tensor, is normalised.
    per_channel = y.std(dim=(2, 3))
    assert float(per_channel.mean()) == pytest.approx(1.0, abs=0.08)
    assert float(per_channel.min()) > 0.75 and float(per_channel.max()) < 1.25


def test_modulated_conv_matches_per_sample_equation():
    torch.manual_seed(0)
    conv = ModulatedConv2d(5, 3, 3, w_dim=7, demodulate=True)
    x, w = _randn(2, 5, 6, 6), _randn(2, 7, seed=1)
    y = conv(x, w)
    for i in range(2):
        styles = w[i] @ (conv.affine.weight / math.sqrt(7)).T + conv.affine.bias
        kernel = conv.weight * styles[None, :, None, None] / math.sqrt(5 * 9)  # w'_ijk = s_i w_ijk
        kernel = kernel / torch.sqrt(kernel.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8)  # w''
        assert torch.allclose(y[i : i + 1], F.conv2d(x[i : i + 1], kernel, padding=1), atol=1e-5)


def test_demodulated_output_ignores_the_style_scale():
    torch.manual_seed(0)
    conv = ModulatedConv2d(4, 4, 3, w_dim=6)
    x, w = _randn(2, 4, 8, 8), _randn(2, 6, seed=1)
    before = conv(x, w)
    conv.affine.weight.data.mul_(3.0)
    conv.affine.bias.data.mul_(3.0)
    assert torch.allclose(conv(x, w), before, atol=1e-5)


def test_modulated_conv_upsamples_and_checks_shapes():
    torch.manual_seed(0)
    conv = ModulatedConv2d(4, 6, 3, w_dim=8, up=2)
    assert conv(_randn(3, 4, 5, 5), _randn(3, 8)).shape == (3, 6, 10, 10)
    with pytest.raises(ValueError, match=r"w must have shape \(batch=3, w_dim=8\)"):
        conv(_randn(3, 4, 5, 5), _randn(2, 8))
    with pytest.raises(ValueError, match="in_channels=4"):
        conv(_randn(3, 5, 5, 5), _randn(3, 8))


def test_noise_injection_modes():
    torch.manual_seed(0)
    noise = NoiseInjection(8)
    x = _randn(2, 3, 8, 8)
    assert float(noise.strength.detach()) == 0.0
    assert torch.equal(noise(x, "random"), x)  # strength starts at 0
    noise.strength.data.fill_(1.0)
    assert torch.equal(noise(x, "none"), x)
    assert torch.equal(noise(x, "const"), noise(x, "const"))
    added = noise(x, "const") - x
    assert torch.allclose(added, noise.noise_const.expand_as(x))  # one fixed buffer for the whole batch
    assert not torch.equal(noise(x, "random"), noise(x, "random"))
    assert "noise_const" in noise.state_dict()
    with pytest.raises(ValueError, match="noise_mode"):
        noise(x, "fixed")
    with pytest.raises(ValueError, match="8x8"):
        noise(_randn(2, 3, 4, 4), "const")


def test_torgb_is_not_demodulated():
    torch.manual_seed(0)
    torgb = ToRGB(8, 3, w_dim=4)
    x, w = _randn(2, 8, 4, 4), _randn(2, 4, seed=1)
    before = torgb(x, w)
    assert before.shape == (2, 3, 4, 4)
    torgb.conv.affine.weight.data.mul_(2.0)
    torgb.conv.affine.bias.data.mul_(2.0)
    assert torch.allclose(torgb(x, w), 2.0 * before, atol=1e-5)  # the style scales the output


# -------------------------------------------------------------------------------------- mapping


def test_mapping_shapes_and_truncation():
    torch.manual_seed(0)
    mapping = MappingNetwork(z_dim=16, c_dim=25, w_dim=8, num_ws=6)
    z, c = _randn(4, 16), _randn(4, 25, seed=1)
    ws = mapping(z, c)
    assert ws.shape == (4, 6, 8)
    assert torch.equal(ws, ws[:, :1].expand_as(ws))  # one w repeated

    mapping.w_avg.copy_(_randn(8, seed=2))
    assert torch.allclose(mapping(z, c, truncation_psi=0.0), mapping.w_avg.expand(4, 6, 8))
    half = mapping(z, c, truncation_psi=0.5, truncation_cutoff=2)
    assert torch.allclose(half[:, :2], 0.5 * (ws[:, :2] + mapping.w_avg), atol=1e-6)
    assert torch.equal(half[:, 2:], ws[:, 2:])


def test_mapping_tracks_w_avg():
    torch.manual_seed(0)
    mapping = MappingNetwork(z_dim=16, c_dim=0, w_dim=8, num_ws=2, w_avg_beta=0.9)
    z = _randn(5, 16)
    ws = mapping(z, None)
    assert torch.equal(mapping.w_avg, torch.zeros(8))  # not updated unless asked
    mapping(z, None, update_w_avg=True)
    assert torch.allclose(mapping.w_avg, 0.1 * ws[:, 0].mean(0), atol=1e-6)


def test_mapping_is_unconditional_with_c_dim_0_and_label_only_with_z_dim_0():
    torch.manual_seed(0)
    unconditional = MappingNetwork(z_dim=16, c_dim=0, w_dim=8, num_ws=3)
    assert unconditional.embed is None
    assert unconditional(_randn(2, 16), None).shape == (2, 3, 8)
    assert unconditional(_randn(2, 16), torch.zeros(2, 0)).shape == (2, 3, 8)
    label_only = MappingNetwork(z_dim=0, c_dim=25, w_dim=8, num_ws=1)
    assert label_only(None, _randn(2, 25)).shape == (2, 1, 8)
    with pytest.raises(ValueError, match="cannot both be 0"):
        MappingNetwork(z_dim=0, c_dim=0)


@pytest.mark.parametrize(
    ("z", "c", "message"),
    [
        (_randn(2, 15), _randn(2, 25), r"z must have shape \(batch, z_dim=16\), got \(2, 15\)"),
        (_randn(2, 16), _randn(3, 25), r"c must have shape \(batch=2, c_dim=25\), got \(3, 25\)"),
        (_randn(2, 16), None, "c is required: c_dim=25"),
        (_randn(16), _randn(1, 25), "z must have shape"),
        (torch.zeros(2, 16, dtype=torch.long), _randn(2, 25), "floating-point"),
    ],
)
def test_mapping_rejects_bad_shapes(z, c, message):
    mapping = MappingNetwork(z_dim=16, c_dim=25, w_dim=8, num_ws=2)
    with pytest.raises(ValueError, match=message):
        mapping(z, c)


def test_mapping_gradients_reach_every_parameter():
    torch.manual_seed(0)
    mapping = MappingNetwork(z_dim=16, c_dim=25, w_dim=8, num_ws=2)
    mapping(_randn(3, 16), _randn(3, 25)).square().sum().backward()
    _assert_all_parameters_have_gradients(mapping)


# ------------------------------------------------------------------------------------ synthesis


def test_synthesis_layer_shape():
    torch.manual_seed(0)
    layer = SynthesisLayer(4, 6, w_dim=8, resolution=16, up=2)
    assert layer(_randn(2, 4, 8, 8), _randn(2, 8)).shape == (2, 6, 16, 16)


def test_synthesis_blocks_and_skip_accumulation():
    torch.manual_seed(0)
    first = SynthesisBlock(0, 8, w_dim=6, resolution=4, img_channels=3)
    second = SynthesisBlock(8, 4, w_dim=6, resolution=8, img_channels=3, is_last=True)
    assert (first.num_conv, first.num_torgb, second.num_conv, second.num_torgb) == (1, 1, 2, 1)
    ws = _randn(2, 4, 6)
    x, img = first(None, None, ws[:, :2], noise_mode="const")
    assert x.shape == (2, 8, 4, 4) and img.shape == (2, 3, 4, 4)
    x2, img2 = second(x, img, ws[:, 1:4], noise_mode="const")
    assert x2.shape == (2, 4, 8, 8) and img2.shape == (2, 3, 8, 8)
    # img_8 = upsample2x(img_4) + toRGB_8(x_8)
    _, own = second(x, None, ws[:, 1:4], noise_mode="const")
    assert torch.allclose(img2, own + F.interpolate(img, scale_factor=2, mode="bilinear"), atol=1e-6)

    with pytest.raises(ValueError, match="x must be None for the first block"):
        first(x, None, ws[:, :2])
    with pytest.raises(ValueError, match=r"ws must have shape \(batch, num_conv \+ num_torgb=3, w_dim=6\)"):
        second(x, img, ws[:, :2])
    with pytest.raises(ValueError, match=r"x must have shape \(batch=2, in_channels=8, height=4, width=4\)"):
        second(x[:, :4], img, ws[:, 1:4])
    with pytest.raises(ValueError, match=r"img must have shape \(batch=2, img_channels=3"):
        second(x, img[:, :1], ws[:, 1:4])


def test_synthesis_network_shapes_and_num_ws():
    torch.manual_seed(0)
    synthesis = SynthesisNetwork(w_dim=8, img_resolution=32, img_channels=3, **TINY)
    assert synthesis.block_resolutions == [4, 8, 16, 32]
    assert synthesis.channels == {4: 32, 8: 32, 16: 16, 32: 8}  # min(256 // r, 32)
    assert synthesis.num_ws == 1 + 3 * 2 + 1
    assert synthesis(_randn(2, synthesis.num_ws, 8)).shape == (2, 3, 32, 32)
    assert SynthesisNetwork(w_dim=8, img_resolution=256, img_channels=3, channel_base=256, channel_max=4).num_ws == 14
    assert SynthesisNetwork(w_dim=8, img_resolution=4, img_channels=3, **TINY).num_ws == 2


def test_synthesis_noise_modes():
    torch.manual_seed(0)
    synthesis = SynthesisNetwork(w_dim=8, img_resolution=16, img_channels=3, **TINY)
    _set_noise_strength(synthesis, 0.5)
    ws = _randn(2, synthesis.num_ws, 8)
    assert torch.equal(synthesis(ws, noise_mode="const"), synthesis(ws, noise_mode="const"))
    assert not torch.allclose(synthesis(ws, noise_mode="random"), synthesis(ws, noise_mode="random"))
    assert not torch.allclose(synthesis(ws, noise_mode="none"), synthesis(ws, noise_mode="const"))


@pytest.mark.parametrize("resolution", [2, 24, 48])
def test_synthesis_rejects_non_power_of_two_resolution(resolution):
    with pytest.raises(ValueError, match="img_resolution must be a power of two >= 4"):
        SynthesisNetwork(w_dim=8, img_resolution=resolution, img_channels=3, **TINY)


def test_synthesis_rejects_wrong_ws():
    synthesis = SynthesisNetwork(w_dim=8, img_resolution=16, img_channels=3, **TINY)
    with pytest.raises(ValueError, match=r"ws must have shape \(batch, num_ws=6, w_dim=8\), got \(2, 5, 8\)"):
        synthesis(_randn(2, 5, 8))


def test_generator_gradients_reach_every_parameter():
    torch.manual_seed(0)
    synthesis = SynthesisNetwork(w_dim=8, img_resolution=16, img_channels=3, **TINY)
    mapping = MappingNetwork(z_dim=8, c_dim=25, w_dim=8, num_ws=synthesis.num_ws)
    img = synthesis(mapping(_randn(2, 8), _randn(2, 25, seed=1)), noise_mode="random")
    (img * _randn(*img.shape, seed=2)).sum().backward()
    _assert_all_parameters_have_gradients(mapping)
    _assert_all_parameters_have_gradients(synthesis)


# -------------------------------------------------------------------------------- discriminator


def test_minibatch_std_matches_grouped_statistic():
    x = _randn(8, 4, 3, 3)
    out = MinibatchStd(group_size=4, num_channels=2)(x)
    assert out.shape == (8, 6, 3, 3)
    assert torch.equal(out[:, :4], x)
    # Strided groups: sample i is in group i mod 2, as a (4, 2, ...) reshape of the batch gives.
    grouped = x.reshape(4, 2, 2, 2, 3, 3)  # (member, group, mbstd channel, channels per slice, h, w)
    expected = torch.sqrt(grouped.var(dim=0, unbiased=False) + 1e-8).mean(dim=(2, 3, 4))  # (group, slice)
    for i in range(8):
        assert torch.allclose(out[i, 4:], expected[i % 2][:, None, None].expand(2, 3, 3), atol=1e-6)


@pytest.mark.parametrize("batch", [1, 3, 5, 6, 7])
def test_minibatch_std_works_for_any_batch_size(batch):
    x = _randn(batch, 4, 2, 2)
    out = MinibatchStd(group_size=4)(x)
    assert out.shape == (batch, 5, 2, 2)
    assert bool(torch.isfinite(out).all())
    num_groups = math.ceil(batch / min(4, batch))
    for group in range(num_groups):
        members = x[group::num_groups]
        assert 1 <= len(members) <= 4
        expected = torch.sqrt(members.var(dim=0, unbiased=False) + 1e-8).mean()
        assert torch.allclose(out[group::num_groups, 4], expected.expand(len(members), 2, 2), atol=1e-6)
    if batch > 1:
        assert float(out[:, 4].min()) > 0.01  # nobody is alone in a group


@pytest.mark.parametrize("resolution", [16, 32])
def test_discriminator_shapes(resolution):
    torch.manual_seed(0)
    discriminator = Discriminator(25, img_resolution=resolution, **TINY)
    assert len(discriminator.blocks) == int(math.log2(resolution)) - 2
    assert discriminator.cmap_dim == 32
    logits = discriminator(_randn(5, 3, resolution, resolution), _randn(5, 25, seed=1))
    assert logits.shape == (5, 1)
    assert bool(torch.isfinite(logits).all())


def test_discriminator_is_conditioned_on_c():
    torch.manual_seed(0)
    discriminator = Discriminator(25, img_resolution=16, **TINY)
    img = _randn(2, 3, 16, 16)
    assert not torch.allclose(discriminator(img, _randn(2, 25, seed=1)), discriminator(img, _randn(2, 25, seed=2)))


def test_unconditional_discriminator():
    torch.manual_seed(0)
    discriminator = Discriminator(0, img_resolution=16, img_channels=6, cmap_dim=8, **TINY)
    assert discriminator.mapping is None and discriminator.out.out_features == 1
    img = _randn(3, 6, 16, 16)
    assert discriminator(img, None).shape == (3, 1)
    assert torch.equal(discriminator(img, torch.zeros(3, 0)), discriminator(img, None))


def test_discriminator_gradients_reach_every_parameter():
    torch.manual_seed(0)
    discriminator = Discriminator(25, img_resolution=16, mapping_layers=2, **TINY)
    img = _randn(3, 3, 16, 16).requires_grad_(True)
    discriminator(img, _randn(3, 25, seed=1)).sum().backward()
    _assert_all_parameters_have_gradients(discriminator)
    assert img.grad is not None and float(img.grad.abs().sum()) > 0  # R1 needs d logits / d img


@pytest.mark.parametrize(
    ("img", "c", "message"),
    [
        (_randn(2, 3, 8, 8), _randn(2, 25), r"img must have shape \(batch, img_channels=3, height=16, width=16\)"),
        (_randn(2, 1, 16, 16), _randn(2, 25), "img_channels=3"),
        (_randn(2, 3, 16, 16), _randn(2, 24), r"c must have shape \(batch=2, c_dim=25\), got \(2, 24\)"),
        (_randn(2, 3, 16, 16), None, "c is required: c_dim=25"),
    ],
)
def test_discriminator_rejects_bad_shapes(img, c, message):
    discriminator = Discriminator(25, img_resolution=16, **TINY)
    with pytest.raises(ValueError, match=message):
        discriminator(img, c)


def test_discriminator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="img_resolution must be a power of two"):
        Discriminator(25, img_resolution=20, **TINY)
    with pytest.raises(ValueError, match="mbstd_num_channels=3 must divide"):
        Discriminator(25, img_resolution=16, mbstd_num_channels=3, **TINY)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_networks_run_on_cuda():
    torch.manual_seed(0)
    device = torch.device("cuda")
    synthesis = SynthesisNetwork(w_dim=8, img_resolution=16, img_channels=3, **TINY).to(device)
    mapping = MappingNetwork(z_dim=8, c_dim=25, w_dim=8, num_ws=synthesis.num_ws).to(device)
    discriminator = Discriminator(25, img_resolution=16, **TINY).to(device)
    c = torch.randn(3, 25, device=device)
    for noise_mode in ("random", "const", "none"):
        img = synthesis(mapping(torch.randn(3, 8, device=device), c, update_w_avg=True), noise_mode=noise_mode)
        logits = discriminator(img, c)
        assert logits.shape == (3, 1) and logits.device.type == "cuda"
    logits.sum().backward()
