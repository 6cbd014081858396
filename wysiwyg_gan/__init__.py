"""WYSIWYG GAN: a 3D GAN that renders every pixel with the learned ray sampler."""
