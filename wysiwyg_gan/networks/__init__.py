"""StyleGAN2 building blocks, the triplane generator and the discriminator."""

from wysiwyg_gan.networks.discriminator import Discriminator, DiscriminatorBlock, MinibatchStd
from wysiwyg_gan.networks.layers import (
    EqualizedConv2d,
    EqualizedLinear,
    ModulatedConv2d,
    NoiseInjection,
    ToRGB,
)
from wysiwyg_gan.networks.mapping import MappingNetwork
from wysiwyg_gan.networks.synthesis import SynthesisBlock, SynthesisLayer, SynthesisNetwork

__all__ = [
    # layers
    "EqualizedConv2d",
    "EqualizedLinear",
    "ModulatedConv2d",
    "NoiseInjection",
    "ToRGB",
    # mapping and synthesis
    "MappingNetwork",
    "SynthesisBlock",
    "SynthesisLayer",
    "SynthesisNetwork",
    # discriminator
    "Discriminator",
    "DiscriminatorBlock",
    "MinibatchStd",
]
