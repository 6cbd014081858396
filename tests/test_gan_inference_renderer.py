"""``RenderOverride``: evaluation-time renderers and budgets of a trained GAN (``wysiwyg_gan.inference``)."""

from __future__ import annotations

import pytest
import torch

from gan_helpers import write_tiny_checkpoint
from wysiwyg_gan.inference import RenderOverride, load_trained_gan
from wysiwyg_gan.orbit_cameras import frontal_labels, offset_orbit_labels
from wysiwyg_gan.rendering import render_generator


@pytest.fixture(scope="module")
def early_checkpoint(tmp_path_factory):
    """A checkpoint from before the sampler's supervision started: it renders two-pass."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("early"), images_seen=0)


@pytest.fixture(scope="module")
def supervised_checkpoint(tmp_path_factory):
    """Sampler supervised (from 16 images) but not yet rendering with it (from 24)."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("supervised"), images_seen=20)


def _field_and_labels(gan, seeds=(0, 1)):
    labels = offset_orbit_labels(torch.tensor([0.0, 20.0]), torch.tensor([0.0, -5.0]))[: len(seeds)]
    field = gan.field(gan.mapping(gan.latents(list(seeds)), frontal_labels(len(seeds))))
    return field, labels


@torch.no_grad()
@pytest.mark.parametrize("which", ["late", "early"])
def test_default_renders_as_the_checkpoint_saved(which, tiny_checkpoint, early_checkpoint):
    gan = load_trained_gan(tiny_checkpoint if which == "late" else early_checkpoint)
    assert gan.uses_learned_sampler == (which == "late")
    field, labels = _field_and_labels(gan)
    images = gan.render(field, labels)
    saved = render_generator(
        field, labels, gan.resolution, gan.sampler, gan.config.render, learned=which == "late", stratified=False
    )
    torch.testing.assert_close(images.image, saved.image, rtol=0, atol=0)
    assert images.samples_per_ray == saved.samples_per_ray
    report = gan.renderer_report()
    assert report["source"] == "checkpoint" and report["override"] == {"mode": "checkpoint"}
    assert report["samples_per_ray"] == pytest.approx(saved.samples_per_ray)
    if which == "late":
        assert report["mode"] == "learned sampler" and report["budget"] == "adaptive"
        assert (report["adaptive_low"], report["adaptive_high"], report["adaptive_fraction"]) == (4, 8, 0.1)
    else:
        assert report["mode"] == "two-pass" and (report["coarse_samples"], report["fine_samples"]) == (4, 4)
        assert saved.samples_per_ray == 8


@torch.no_grad()
def test_overrides_set_the_samples_per_ray(tiny_checkpoint):
    gan = load_trained_gan(tiny_checkpoint)
    field, labels = _field_and_labels(gan)
    gan.set_renderer(RenderOverride(mode="two-pass", coarse_samples=8, fine_samples=8))
    assert not gan.uses_learned_sampler and gan.render(field, labels).samples_per_ray == 16
    gan.set_renderer(RenderOverride(mode="learned", budget=6))
    assert gan.uses_learned_sampler and gan.render(field, labels).samples_per_ray == 6
    gan.set_renderer(RenderOverride(adaptive_low=4, adaptive_high=12, adaptive_fraction=0.5))
    adaptive = gan.render(field, labels).samples_per_ray
    assert 4 < adaptive < 12
    # The tally weights each render by its rays: 16, 6 and the adaptive mean over equal ray counts.
    assert gan.mean_samples_per_ray == pytest.approx((16 + 6 + adaptive) / 3)
    report = gan.renderer_report()
    assert report["source"] == "override" and report["budget"] == "adaptive"
    assert (report["adaptive_low"], report["adaptive_high"], report["adaptive_fraction"]) == (4, 12, 0.5)
    assert report["expected_samples_per_ray"] == 8.0
    # A fraction of 0 or 1 gives every ray the low or the high budget.
    gan.set_renderer(RenderOverride(adaptive_fraction=0.0))
    assert gan.render(field, labels).samples_per_ray == 4
    gan.set_renderer(RenderOverride(budget="adaptive", adaptive_fraction=1.0))
    assert gan.render(field, labels).samples_per_ray == 8


@torch.no_grad()
def test_an_override_leaves_the_saved_sampler_and_config_alone(tiny_checkpoint):
    gan = load_trained_gan(tiny_checkpoint)
    saved_sampler_config, saved_render_config = gan.sampler.config, gan.config.render
    gan.set_renderer(RenderOverride(budget=6))
    assert gan.render_sampler is not gan.sampler and gan.render_sampler.config.budget == 6
    assert gan.render_sampler.proposal_network is gan.sampler.proposal_network
    assert gan.sampler.config is saved_sampler_config and gan.sampler.config.budget == "adaptive"
    gan.set_renderer(RenderOverride(mode="two-pass", fine_samples=7))
    assert gan.render_config.fine_samples == 7 and gan.render_config.coarse_samples == 4
    assert gan.config.render is saved_render_config and saved_render_config.fine_samples == 4
    gan.set_renderer(RenderOverride())
    assert gan.render_sampler is gan.sampler and gan.render_config is saved_render_config


@torch.no_grad()
def test_learned_sampler_on_a_checkpoint_that_still_rendered_two_pass(supervised_checkpoint):
    gan = load_trained_gan(supervised_checkpoint)
    assert not gan.uses_learned_sampler and gan.sampler_trained
    field, labels = _field_and_labels(gan)
    assert gan.render(field, labels).samples_per_ray == 8  # the saved two-pass 4 + 4
    gan.set_renderer(RenderOverride(mode="learned", budget=5))
    assert gan.uses_learned_sampler and gan.render(field, labels).samples_per_ray == 5
    assert gan.renderer_report()["probe_samples_per_ray"] == gan.config.sampler.probe_samples_per_ray


@pytest.mark.parametrize(
    "renderer, message",
    [
        (RenderOverride(budget=0), "--renderer.budget must be an integer >= 1"),
        (RenderOverride(mode="learned", adaptive_low=0), "--renderer.adaptive-low must be >= 1"),
        (RenderOverride(adaptive_high=-2), "--renderer.adaptive-high must be >= 1"),
        (RenderOverride(adaptive_fraction=1.5), "--renderer.adaptive-fraction must be in [0, 1]"),
        (RenderOverride(adaptive_fraction=-0.1), "--renderer.adaptive-fraction must be in [0, 1]"),
        (RenderOverride(mode="two-pass", coarse_samples=1), "--renderer.coarse-samples must be >= 2"),
        (RenderOverride(mode="two-pass", fine_samples=0), "--renderer.fine-samples must be >= 1"),
        (RenderOverride(adaptive_low=12, adaptive_high=6), "low (12) must be <= its high (6)"),
        (RenderOverride(adaptive_low=12), "low (12) must be <= its high (8)"),  # the checkpoint's high
        (RenderOverride(budget=8, adaptive_high=16), "--renderer.budget 8 is a fixed budget"),
        (RenderOverride(mode="two-pass", budget=8), "--renderer.budget set the learned sampler"),
        (RenderOverride(mode="learned", fine_samples=8), "--renderer.fine-samples set the two-pass renderer"),
        (RenderOverride(coarse_samples=8), "this checkpoint renders with the learned sampler"),
        (RenderOverride(mode="bilinear"), "--renderer.mode must be checkpoint, learned or two-pass"),
    ],
)
def test_bad_overrides_are_one_line_errors_and_keep_the_renderer(renderer, message, tiny_checkpoint):
    gan = load_trained_gan(tiny_checkpoint)
    gan.set_renderer(RenderOverride(budget=5))
    with pytest.raises(ValueError) as info:
        gan.set_renderer(renderer)
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)
    assert gan.renderer == RenderOverride(budget=5) and gan.render_sampler.config.budget == 5
    with pytest.raises(ValueError) as info:
        load_trained_gan(tiny_checkpoint, renderer=renderer)
    assert message in str(info.value)


def test_learned_sampler_needs_a_trained_cnn(early_checkpoint):
    gan = load_trained_gan(early_checkpoint)
    assert not gan.sampler_trained
    with pytest.raises(ValueError, match="was never trained") as info:
        gan.set_renderer(RenderOverride(mode="learned"))
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="this checkpoint renders with two-pass sampling"):
        gan.set_renderer(RenderOverride(budget=4))
    gan.set_renderer(RenderOverride(mode="two-pass", coarse_samples=3, fine_samples=2))
    assert gan.render_config.coarse_samples == 3
