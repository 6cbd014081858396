"""The triplane generator, its decoder MLPs and the GAN's rendering modes."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from gan_helpers import tiny_generator_config
from learned_sampler import LearnedSampler, LearnedSamplerConfig
from wysiwyg_gan.config import cpu_preset
from wysiwyg_gan.networks.mlp import (
    MLP,
    TcnnMLP,
    fused_layout,
    pack_fused_weights,
    positional_encoding,
    to_backend,
    unpack_fused_weights,
)
from wysiwyg_gan.networks.triplane import (
    BETA_MIN,
    TriplaneGenerator,
    beta_from_logits,
    rgb_from_logits,
    sample_triplane,
)
from wysiwyg_gan.orbit_cameras import frontal_labels, orbit_camera_labels
from wysiwyg_gan.rendering import RenderConfig, predict_proposal, render_two_pass, render_with_proposal


def test_positional_encoding_sizes_match_the_paper():
    x = torch.rand(5, 3)
    assert positional_encoding(x, 6).shape == (5, 39)
    assert positional_encoding(x, 2).shape == (5, 15)
    assert torch.equal(positional_encoding(x, 6)[:, :3], x)


def test_sample_triplane_uses_true_xy_xz_yz_planes_and_multiplies():
    resolution = 64
    coords = (torch.arange(resolution) + 0.5) / resolution - 0.5  # texel centres over [-0.5, 0.5]
    v, u = torch.meshgrid(coords, coords, indexing="ij")  # grid_sample: u along width, v along height
    planes = torch.stack([2 + u, 3 + v, 4 + u * v], dim=0)[None, :, None]  # (1, 3, 1, R, R)
    points = torch.tensor([[[0.1, -0.2, 0.3], [-0.25, 0.05, -0.1]]])
    features = sample_triplane(planes, points, box_size=1.0)[0, :, 0]
    x, y, z = points[0].unbind(-1)
    expected = (2 + x) * (3 + z) * (4 + y * z)  # xy plane reads x, xz plane reads z, yz plane reads y*z
    torch.testing.assert_close(features, expected, atol=2e-3, rtol=1e-3)
    outside = sample_triplane(planes, torch.tensor([[[0.0, 0.0, 0.9]]]), box_size=1.0)
    assert outside.abs().max() == 0  # zero padding outside the box


def test_sample_triplane_rejects_bad_shapes():
    with pytest.raises(ValueError, match="planes"):
        sample_triplane(torch.zeros(1, 2, 4, 8, 8), torch.zeros(1, 5, 3), 1.0)
    with pytest.raises(ValueError, match="points"):
        sample_triplane(torch.zeros(2, 3, 4, 8, 8), torch.zeros(1, 5, 3), 1.0)


def test_activations_follow_the_paper():
    beta = beta_from_logits(torch.tensor([-100.0, 0.0, 100.0]))
    torch.testing.assert_close(beta, torch.tensor([BETA_MIN, 0.01, 0.0199]))
    rgb = rgb_from_logits(torch.tensor([-100.0, 100.0]))
    torch.testing.assert_close(rgb, torch.tensor([-0.001, 1.001]))


def test_sdf_starts_as_a_sphere():
    torch.manual_seed(0)
    config = dataclasses.replace(tiny_generator_config(), sdf_hidden=64)
    generator = TriplaneGenerator(config)
    field = generator(torch.randn(2, config.z_dim), frontal_labels(2))
    directions = torch.nn.functional.normalize(torch.randn(2, 500, 3), dim=-1)
    on_sphere = field.sdf_outputs(directions * config.sphere_radius)[0]
    # The mean radius is exact; SAL's shape is only roughly round (radius within about +-50 %).
    assert on_sphere.mean().abs() < 0.01
    assert on_sphere.abs().max() < 0.15
    assert (field.sdf_outputs(directions * 0.1)[0] < 0).all() and (field.sdf_outputs(directions * 0.49)[0] > -0.05).all()
    beta = field.sdf_outputs(directions * 0.3)[1]
    assert beta.min() > 0.009 and beta.max() < 0.011  # ~0.01 at the beginning of training, as the paper says


def test_colour_starts_different_for_each_latent():
    # With torch's default initialisation of MLP_c and f_geo at ~0.1 scale, the colour at a point
    # varied by ~0.002 between latents: every latent started, and stayed, the same grey.
    torch.manual_seed(0)
    config = cpu_preset().generator.on_device("cpu")
    generator = TriplaneGenerator(config)
    points = ((torch.rand(1, 2000, 3) - 0.5) * 0.6).expand(16, -1, -1)
    with torch.no_grad():
        field = generator(torch.randn(16, config.z_dim), frontal_labels(16), noise_mode="const")
        geometry = field.sdf_outputs(points)[2]
        rgb = field(points, torch.zeros_like(points))["rgb"]
    assert 0.3 < geometry.std() < 5.0
    assert rgb.std(dim=0).mean() > 0.03


def test_field_outputs_and_normals():
    torch.manual_seed(0)
    generator = TriplaneGenerator(tiny_generator_config())
    field = generator(torch.randn(2, 16), frontal_labels(2))
    positions = torch.rand(2, 4, 5, 3) - 0.5
    directions = torch.nn.functional.normalize(torch.randn(2, 4, 5, 3), dim=-1)
    out = field(positions, directions)
    assert out["density"].shape == out["sdf"].shape == out["beta"].shape == (2, 4, 5)
    assert out["rgb"].shape == (2, 4, 5, 3) and (out["density"] >= 0).all()
    flipped = field(positions, -directions)
    torch.testing.assert_close(flipped["rgb"], out["rgb"])  # colour starts view-independent
    points = directions * 0.3
    normals = field.normals(points)
    torch.testing.assert_close(normals.norm(dim=-1), torch.ones(2, 4, 5))
    assert ((normals * directions).sum(-1) > 0).all()  # outward everywhere on the initial blob
    eps = 1e-3
    gradient = torch.stack(
        [
            field.sdf_outputs(points + eps * offset)[0] - field.sdf_outputs(points - eps * offset)[0]
            for offset in torch.eye(3)
        ],
        dim=-1,
    ).detach()
    torch.testing.assert_close(normals, torch.nn.functional.normalize(gradient, dim=-1), atol=2e-2, rtol=0)


def test_diffuse_colour_ignores_the_view_and_noise_inputs_can_be_left_out():
    torch.manual_seed(0)
    config = dataclasses.replace(tiny_generator_config(), view_dependent=False, noise_inputs=False)
    generator = TriplaneGenerator(config)
    with torch.no_grad():
        for parameter in generator.parameters():  # noise strengths start at 0: make them matter
            parameter.add_(0.1 * torch.randn_like(parameter))
    z, labels = torch.randn(2, 16), frontal_labels(2)
    first, second = generator(z, labels, noise_mode="random"), generator(z, labels, noise_mode="random")
    torch.testing.assert_close(first.planes, second.planes)  # no fresh noise in either pass
    positions = torch.rand(2, 4, 5, 3) - 0.5
    directions = torch.nn.functional.normalize(torch.randn(2, 4, 5, 3), dim=-1)
    torch.testing.assert_close(first(positions, directions)["rgb"], first(positions, -directions)["rgb"])
    assert generator.color_mlp.in_dim == config.geometry_features  # MLP_c reads f_geo only
    noisy = TriplaneGenerator(dataclasses.replace(config, noise_inputs=True))
    noisy.load_state_dict(generator.state_dict())
    with torch.no_grad():
        assert not torch.equal(noisy.synthesize_planes(noisy.mapping(z, labels)), noisy.synthesize_planes(noisy.mapping(z, labels)))


def test_mlp_torch_backend_is_the_module_itself():
    mlp = MLP(5, 16, 2, 3, "relu")
    assert to_backend(mlp, "torch") is mlp
    with pytest.raises(ValueError, match="backend"):
        to_backend(mlp, "cuda")


class _TorchTcnnNetwork(torch.nn.Module):
    """tiny-cuda-nn's ``Network`` in pure torch: one flat parameter vector in the padded layout."""

    def __init__(self, n_input_dims: int, n_output_dims: int, network_config: dict):
        super().__init__()
        hidden, layers = network_config["n_neurons"], network_config["n_hidden_layers"]
        self.sizes = (n_input_dims - 1, hidden, layers, n_output_dims)
        self.activation = torch.relu if network_config["activation"] == "ReLU" else torch.nn.functional.softplus
        _, padded_in, padded_out = fused_layout(n_input_dims - 1, hidden, n_output_dims)
        self.params = torch.nn.Parameter(torch.randn(hidden * padded_in + hidden * hidden * (layers - 1) + padded_out * hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = unpack_fused_weights(self.params, *self.sizes)
        for weight in weights[:-1]:
            x = self.activation(x @ weight.T)
        return x @ weights[-1].T


@pytest.mark.parametrize(("hidden", "layers", "activation"), [(64, 2, "relu"), (48, 1, "softplus")])
def test_fused_mlp_checkpoints_load_into_either_backend(monkeypatch, hidden, layers, activation):
    import types

    monkeypatch.setitem(__import__("sys").modules, "tinycudann", types.SimpleNamespace(Network=_TorchTcnnNetwork))
    torch.manual_seed(0)
    mlp = MLP(71, hidden, layers, 66, activation)
    mlp.init_sphere(0.3, 39)
    weights = [layer.weight for layer in mlp.layers]
    for original, unpacked in zip(weights, unpack_fused_weights(pack_fused_weights(weights, 71, hidden, 66), 71, hidden, layers, 66)):
        assert torch.equal(original, unpacked)
    x = torch.randn(32, 71)
    fused = TcnnMLP(71, hidden, layers, 66, activation)
    fused.load_from(mlp)
    torch.testing.assert_close(fused(x), mlp(x))
    # A fused run's state dict has MLP's keys and shapes: it loads into a torch MLP (a CPU machine)...
    state = fused.state_dict()
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in mlp.state_dict().items()}
    on_cpu = MLP(71, hidden, layers, 66, activation)
    on_cpu.load_state_dict(state)
    torch.testing.assert_close(on_cpu(x), mlp(x))
    # ... and a torch run's state dict loads into the fused twin.
    again = TcnnMLP(71, hidden, layers, 66, activation)
    again.load_state_dict(mlp.state_dict())
    torch.testing.assert_close(again(x), mlp(x))
    with pytest.raises(ValueError, match="parameters"):
        unpack_fused_weights(torch.zeros(10), 71, hidden, layers, 66)


def test_auto_backend_is_torch_off_cuda():
    config = tiny_generator_config()
    auto = dataclasses.replace(config, mlp_backend="auto")
    assert auto.on_device("cpu").mlp_backend == "torch" and auto.on_device("cuda:1").mlp_backend == "auto"
    assert config.on_device("cpu") is config


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the tiny-cuda-nn path needs CUDA")
def test_tcnn_mlp_matches_the_torch_reference():
    pytest.importorskip("tinycudann", reason="tiny-cuda-nn is not installed")
    torch.manual_seed(0)
    for activation, hidden, layers in (("relu", 64, 2), ("softplus", 64, 1)):
        mlp = MLP(71, hidden, layers, 66, activation)
        mlp.init_sphere(0.3, 39)
        fused = to_backend(mlp, "tcnn")
        x = torch.randn(4096, 71, device="cuda") * 0.3
        torch.testing.assert_close(fused(x), mlp.to("cuda")(x), atol=2e-2, rtol=2e-2)


def _labels(batch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return orbit_camera_labels(math.pi / 2 + 0.3 * torch.randn(batch, generator=generator), torch.full((batch,), math.pi / 2))


def test_two_pass_rendering_outputs():
    torch.manual_seed(0)
    generator = TriplaneGenerator(tiny_generator_config())
    labels = _labels(2)
    field = generator(torch.randn(2, 16), labels)
    images = render_two_pass(field, labels, 12, RenderConfig(coarse_samples=8, fine_samples=8))
    assert images.image.shape == (2, 3, 12, 12) and images.depth.shape == (2, 1, 12, 12)
    assert images.image.min() >= -1.01 and images.image.max() <= 1.01
    assert images.samples_per_ray == 16
    # Centre rays hit the initial blob (mean radius 0.3) in front of the origin, 2.7 away.
    assert images.opacity[:, 0, 6, 6].min() > 0.99
    assert ((images.depth[:, 0, 6, 6] > 2.25) & (images.depth[:, 0, 6, 6] < 2.6)).all()
    torch.testing.assert_close(images.surface_variance[:, 0, 6, 6], torch.full((2,), 0.01), atol=1e-3, rtol=0)


def test_a_field_of_one_latent_expands_to_a_batch_of_cameras():
    torch.manual_seed(0)
    generator = TriplaneGenerator(tiny_generator_config())
    labels = _labels(3)
    single = generator(torch.randn(1, 16), frontal_labels(1))
    repeated = single.expand(3)
    assert repeated.planes.shape[0] == 3 and torch.equal(repeated.planes[2], single.planes[0])
    render_config = RenderConfig(coarse_samples=8, fine_samples=8)
    batch = render_two_pass(repeated, labels, 8, render_config, stratified=False)
    alone = render_two_pass(single, labels[2:], 8, render_config, stratified=False)
    torch.testing.assert_close(batch.image[2:], alone.image)
    with pytest.raises(ValueError, match="only a field of one latent"):
        repeated.expand(2)


def test_learned_rendering_at_and_below_full_resolution():
    torch.manual_seed(0)
    generator = TriplaneGenerator(tiny_generator_config())
    sampler = LearnedSampler(
        LearnedSamplerConfig(num_bins=8, probe_samples=16, cnn_width=8, adaptive_low=4, adaptive_high=8, patch_size=8, target_samples=16)
    )
    labels = _labels(2)
    field = generator(torch.randn(2, 16), labels)
    config = RenderConfig()
    rays, proposal = predict_proposal(field, labels, 16, sampler, config)
    assert proposal.distribution.shape == (2, 16, 16, 8)
    full = render_with_proposal(field, labels, 16, proposal, sampler, config)
    assert full.image.shape == (2, 3, 16, 16) and full.uniform_sdf.shape == (2, 4, 4, 16)
    two_pass = render_two_pass(field, labels, 8, config)
    assert two_pass.uniform_sdf.numel() == 2 * 8 * 8 * config.coarse_samples  # the coarse pass's samples
    for images in (full, two_pass):  # L_dec's free-space mask lies over the same samples, 1 before 0 on every ray
        mask = images.uniform_free_space
        assert mask.shape == images.uniform_sdf.shape and not mask.requires_grad
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
    per_ray = full.uniform_free_space.reshape(-1, 16)
    assert (per_ray[:, 1:] <= per_ray[:, :-1]).all()
    assert full.samples_per_ray == pytest.approx(4.4, abs=0.05)  # adaptive 4/8 for 10 % of the rays
    low = render_with_proposal(field, labels, 12, proposal, sampler, config)
    assert low.image.shape == (2, 3, 12, 12)
    with pytest.raises(ValueError, match="camera labels"):
        render_two_pass(field, labels[:, :16], 8, config)
