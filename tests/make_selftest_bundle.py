"""Write the tiny bundle ``jetgen selftest`` ships (jetgen/selftest_data/tiny.jetgen): the conditional
MLP cvae of tests/runtime_fixtures.py (8x8 images, 3 labels, latent 4; decoder, encoder and latent_grad
graphs built with onnx.helper at opset 13, IR version 8, so every JetPack's ONNX Runtime and TensorRT
reads them) with golden vectors whose reference outputs come from numpy (tests/golden_fixtures.py).

    PYTHONPATH=. python tests/make_selftest_bundle.py      # rewrites the shipped copy

The shipped files are what this writes; tests/test_selftest.py checks that they still are.
"""
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(ROOT, "jetgen", "selftest_data", "tiny.jetgen")


def make(path):
    """Write the bundle at ``path`` (which must not exist); return ``path``."""
    sys.path.insert(0, ROOT)
    from tests.golden_fixtures import add_golden
    from tests.runtime_fixtures import make_bundle

    _, weights = make_bundle(path, kind="cvae", n_labels=3, latent_dim=4, shape=(1, 8, 8), batch_max=64,
                             name="selftest-tiny")
    add_golden(path, weights, batches=(1, 5))
    return path


if __name__ == "__main__":
    if os.path.exists(TARGET):
        shutil.rmtree(TARGET)
    print(make(TARGET))
