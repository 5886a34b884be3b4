"""jetgen: latent generative models from a desktop GPU to NVIDIA Jetson boards.

This module stays tiny and Python 3.6 compatible: the torch-free runtime imports it.
"""
__version__ = "0.1.0"

from jetgen import _moved  # noqa: E402  (old import paths of modules moved into jetgen.modalities)

_moved.install()
