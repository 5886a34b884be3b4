"""Golden vectors: a few real inputs per graph and the outputs PyTorch gave at export, as ``.npy``
files under ``BUNDLE/golden/`` (jetgen.spec.GOLDEN_DIR), listed in ``manifest["graphs"][G]["golden"]``
(docs/bundle.md): ``[{"name", "inputs": {tensor: {"file", "sha256", "shape"}}, "outputs": {...}}]``.

Files are float32, written with ``allow_pickle=False`` and atomically, named
``GRAPH-CASE-TENSOR.npy`` (plain names, relative to golden/). The outputs come from the original,
unfolded PyTorch model, so a device can verify any graph or engine against the model itself.
"""
import hashlib
import io
import os

import numpy as np

from jetgen.spec import GOLDEN_DIR


def write_golden(source, graph, directory, max_batch):
    """Write the golden cases of ``graph`` into ``directory``/golden and return their manifest list."""
    from jetgen.export.feeds import golden_cases

    folder = os.path.join(directory, GOLDEN_DIR)
    os.makedirs(folder, exist_ok=True)
    entries = []
    for case, feeds in golden_cases(source, graph, max_batch):
        outputs = dict(zip(source.output_names(graph), source.reference(graph, feeds)))
        prefix = "{}-{}".format(graph, case)
        entries.append({"name": case,
                        "inputs": {k: _save(folder, prefix, k, v) for k, v in feeds.items()},
                        "outputs": {k: _save(folder, prefix, k, v) for k, v in outputs.items()}})
    return entries


def _save(folder, prefix, tensor, array):
    from jetgen.atomic import atomic_write_bytes

    array = np.ascontiguousarray(array, dtype=np.float32)
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    data = buf.getvalue()
    name = "{}-{}.npy".format(prefix, tensor)
    atomic_write_bytes(os.path.join(folder, name), data)
    return {"file": name, "sha256": hashlib.sha256(data).hexdigest(), "shape": list(array.shape)}
