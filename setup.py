# Shim for old pip (JetPack 4 ships pip 9, which runs setup.py); metadata is in setup.cfg.
from setuptools import setup

setup()
