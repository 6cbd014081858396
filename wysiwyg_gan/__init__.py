"""WYSIWYG GAN: a 3D GAN that renders every pixel with the learned ray sampler."""

import os

# OpenMP worker threads spin while they wait by default. On a CPU that other work shares, a
# spinning pool makes every training step many times slower than passive waiting. The package
# sets passive waiting, unless the environment says otherwise, before any of its modules imports
# torch; it has no effect when torch was imported first.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
