"""8-bit conversion of rendered colours: one rounding rule everywhere."""

from __future__ import annotations

import torch

from wysiwyg_gan.images import depth_to_unit, images_to_uint8, to_hwc_uint8, unit_to_uint8


def test_unit_colours_round_to_the_nearest_level_and_clamp():
    colours = torch.tensor([-0.5, 0.0, 0.499 / 255, 0.501 / 255, 0.5, 1.0, 2.0])
    assert unit_to_uint8(colours).tolist() == [0, 0, 0, 1, 128, 255, 255]
    assert unit_to_uint8(colours).dtype == torch.uint8


def test_images_in_minus_one_to_one_match_stylegans_formula():
    images = torch.linspace(-1, 1, 3 * 16 * 16).reshape(1, 3, 16, 16)
    expected = (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    assert torch.equal(images_to_uint8(images), expected)


def test_channels_first_images_become_height_width_channels_arrays():
    image = torch.zeros(3, 4, 5)
    image[0] = 1.0
    array = to_hwc_uint8(image)
    assert array.shape == (4, 5, 3) and array.dtype.name == "uint8"
    assert (array[..., 0] == 255).all() and (array[..., 1:] == 0).all()


def test_depth_maps_are_bright_near_and_black_on_the_background():
    depth = torch.tensor([2.0, 2.25, 2.775, 3.3, 2.5])
    opacity = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0])
    torch.testing.assert_close(depth_to_unit(depth, opacity, 2.25, 3.3), torch.tensor([1.0, 1.0, 0.5, 0.0, 0.0]))
