"""nerfstudio method `wysiwyg-sampler`: nerfacto with the learned ray sampler."""
