"""One benchmark process: ``python -m jetgen.bench.worker SPEC.json`` measures one backend (or the
machine's matrix-multiply peak, or the conditional accuracy of saved samples) and writes JSON.

jetgen.bench.run starts one worker per backend, one after another, each with the same thread count
in its environment, so no backend's threads (ONNX Runtime's spinning workers, torch's OpenMP pool)
slow another's timings. Backends:

- ``torch``: PyTorch eager on the run directory (jetgen.bench.torch_ref);
- ``onnxruntime``: a bare ``onnxruntime.InferenceSession`` per graph and plain numpy around it, what
  a user of ONNX Runtime alone would write (the reference for the runtime's own overhead);
- ``ort``, ``trt``: ``jetgen.runtime.Model`` on that backend.

Each timed measurement warms up first, then records every call; a Jetson's power samples are
integrated over each timed window. Python 3.6 compatible; torch only in the torch backend.
"""
import json
import os
import sys
import time

import numpy as np

from jetgen import modalities
from jetgen.bench.stats import time_calls
from jetgen.runtime import backends as runtime_backends

ADAM = (0.9, 0.999, 1e-8)


class TorchBackend(object):
    def __init__(self, spec, manifest):
        from jetgen.bench.torch_ref import TorchReference
        self.ref = TorchReference(spec["run_dir"], spec["threads"])
        self.gen = self.ref.torch.Generator().manual_seed(0)
        self.manifest = manifest
        self.prior = manifest["model"]["prior"]
        self.half = modalities.part(manifest["model"]["modality"], "bench")
        self.providers = ["torch {}".format(self.ref.torch.__version__)]

    def decode(self, z, y):
        return self.ref.decode(z, y)

    def sample(self, n, y):
        return self.ref.sample(n, y, self.gen)

    def complete(self, x, mask, y, z0, steps, lr):
        if self.half is not None:
            return self.half.torch_complete(self.ref, self.manifest, x, mask, z0, steps, lr)
        return self.ref.complete(x, mask, y, z0, self.prior, steps, lr)

    def decoder_outputs(self, feeds):
        return {"x": self.ref.decode(feeds["z"], feeds.get("y"))}


class SessionBackend(object):
    """Bare ONNX Runtime: InferenceSession.run and numpy, no jetgen runtime code on the timed path."""

    def __init__(self, spec, manifest):
        import onnxruntime as ort
        from jetgen.runtime.backends.ort import choose_providers
        from jetgen.runtime.priors import prior_from_manifest
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(spec["threads"])
        # the providers jetgen's ort backend would pick here (CUDA where this onnxruntime has it), so
        # the bare session is the floor of the same computation
        providers = choose_providers(ort.get_available_providers())[0]
        self.sessions = {}
        for graph in ("decoder", "latent_grad"):
            entry = manifest["graphs"].get(graph)
            if entry:
                self.sessions[graph] = ort.InferenceSession(os.path.join(spec["bundle"], entry["file"]), so,
                                                            providers=providers)
        self.prior = prior_from_manifest(manifest["model"]["prior"])  # built once, outside the timing
        half = modalities.part(manifest["model"]["modality"], "bench")
        # the objective's weights: the modality's own (points: loss_scale, prior_weight), else 1 and 1
        self.loss_scale, self.prior_weight = (1.0, 1.0) if half is None else half.objective_weights(manifest)
        self.rng = np.random.RandomState(0)
        self.providers = self.sessions["decoder"].get_providers()

    def _feeds(self, z, y):
        return {"z": z} if y is None else {"z": z, "y": y}

    def decode(self, z, y):
        return self.sessions["decoder"].run(None, self._feeds(z, y))[0]

    def sample(self, n, y):
        return self.decode(self.prior.sample(n, 1.0, self.rng), y)

    def complete(self, x, mask, y, z0, steps, lr):
        """Adam on z over the latent_grad session with the prior's term: the runtime's algorithm without
        its checks, early stopping or best-so-far tracking."""
        session, (b1, b2, eps) = self.sessions["latent_grad"], ADAM
        z = z0.astype(np.float64)
        m, v = np.zeros_like(z), np.zeros_like(z)
        feeds = {"target": x, "mask": mask}
        if y is not None:
            feeds["y"] = y
        for t in range(1, steps + 1):
            feeds["z"] = z.astype(np.float32)
            _, grad = session.run(None, feeds)
            g = self.loss_scale * grad.astype(np.float64) + self.prior_weight * self.prior.term(z)[1]
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            z = self.prior.project(z - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps))
        return z

    def decoder_outputs(self, feeds):
        return {"x": self.decode(feeds["z"], feeds.get("y"))}


class ModelBackend(object):
    """jetgen.runtime.Model on ``ort`` or ``trt``."""

    def __init__(self, spec, manifest):
        from jetgen.runtime import backends
        from jetgen.runtime.model import Model
        self.model = Model.open(spec["bundle"], backend=spec["backend"], precision=spec["precision"],
                                **backends.session_options(spec["backend"], spec["threads"]))
        self.providers = self.model.session("decoder").providers
        self.engine = getattr(self.model.session("decoder"), "engine_info", None)
        self.half = modalities.part(self.model.modality, "bench")

    def decode(self, z, y):
        return self.model.decode(z, y)

    def sample(self, n, y):
        return self.model.sample(n, labels=y)

    def complete(self, x, mask, y, z0, steps, lr):
        if self.half is not None:  # the modality's own call (points: the observed points of each cloud)
            return self.half.model_complete(self.model, x, mask, z0, steps, lr)
        return self.model.complete(x, mask, labels=y, steps=steps, lr=lr, tol=None, init=z0).z

    def decoder_outputs(self, feeds):
        return self.model.run("decoder", feeds)


# the references, then every backend of the runtime's table through jetgen.runtime.Model
BACKENDS = dict([("torch", TorchBackend), ("onnxruntime", SessionBackend)] +
                [(name, ModelBackend) for name in runtime_backends.names()])


def _golden_error(backend, bundle_dir):
    """Largest absolute error of the decoder on the bundle's golden cases against the outputs stored at
    export (PyTorch fp32); None when the bundle has none."""
    from jetgen.runtime.bundle import Bundle
    from jetgen.runtime.verify import errors, load_case

    bundle = Bundle.open(bundle_dir, verify=False)
    cases = bundle.graph("decoder").get("golden") or []
    worst = None
    for case in cases:
        feeds, expected = load_case(bundle.path, "decoder", case)
        got = backend.decoder_outputs(feeds)
        worst = max(worst or 0.0, errors(got["x"], expected["x"])[0])
    return {"max_abs": worst, "cases": len(cases)}


def _measure(spec, fn, batch, monitor, task, min_time=None, min_iters=5, warmup=None):
    samples, window = time_calls(fn, warmup=spec["warmup"] if warmup is None else warmup,
                                 min_time=spec["min_time"] if min_time is None else min_time,
                                 max_iters=spec["max_iters"], min_iters=min_iters)
    row = {"task": task, "batch": batch, "samples": samples, "window": list(window)}
    if monitor is not None and monitor.available:
        row["mj_per_item"] = monitor.energy_per_item_mj(window, len(samples) * batch)
        row["power_rail"] = monitor.rail
    return row


def _timed_rows(spec, backend, data, monitor):
    rows, y = [], data.get("y")
    ys = (lambda b: None) if y is None else (lambda b: y[:b])
    tasks = spec["tasks"]
    for b in spec["batch_sizes"] if "decode" in tasks else ():
        z = data["z"][:b]
        rows.append(_measure(spec, lambda: backend.decode(z, ys(b)), b, monitor, "decode"))
    if "sample" in tasks:
        n = spec["sample_batch"]
        rows.append(_measure(spec, lambda: backend.sample(n, ys(n)), n, monitor, "sample"))
    if "complete" in tasks and "targets" in data:
        n, steps = spec["complete_batch"], spec["complete_steps"]
        args = (data["targets"], data["mask"], ys(n), data["z0"], steps, spec["complete_lr"])
        # one warm-up call: a completion is many graph runs, so one call warms every cache it uses
        row = _measure(spec, lambda: backend.complete(*args), n, monitor, "complete",
                       min_time=spec["complete_min_time"], min_iters=3, warmup=min(1, spec["warmup"]))
        row["steps"] = steps
        rows.append(row)
    return rows


def run_backend(spec):
    """Measure one backend as ``spec`` says; the result dict the parent reads."""
    from jetgen.bench.power import JetsonMonitor
    from jetgen.spec import read_manifest

    manifest = read_manifest(spec["bundle"])
    backend = BACKENDS[spec["backend"]](spec, manifest)
    data = dict(np.load(spec["inputs"], allow_pickle=False).items())
    result = {"providers": list(backend.providers), "engine": getattr(backend, "engine", None)}
    with JetsonMonitor() as monitor:
        result["rows"] = _timed_rows(spec, backend, data, monitor)
    result["quality"] = _golden_error(backend, spec["bundle"])
    if spec.get("samples_out") and "z_acc" in data:
        np.save(spec["samples_out"], backend.decode(data["z_acc"], data["y_acc"]).astype(np.float32),
                allow_pickle=False)
    return result


def run_accuracy(spec):
    """Conditional accuracy of saved samples (label k drawn, classified as k?) with the classifier
    ``jetgen eval`` uses, trained on the run's own training images. Needs torch and scikit-learn."""
    from jetgen.train.evaluate import load_run_data
    from jetgen.train.metrics import fit_digit_classifier
    from jetgen.train.rundir import load_run

    data = load_run_data(load_run(spec["run_dir"]).config)
    clf = fit_digit_classifier(data.train_x, data.train_y)
    labels = np.load(spec["labels"], allow_pickle=False)
    out = {}
    for tag, path in spec["samples"].items():
        images = np.load(path, allow_pickle=False)
        out[tag] = float(np.mean(clf.predict(images.reshape(len(images), -1)) == labels))
    return {"accuracy": out, "classifier_test_accuracy": float(np.mean(
        clf.predict(data.test_x.numpy().reshape(len(data.test_x), -1)) == data.test_y.numpy()))}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as handle:
        spec = json.load(handle)
    start = time.time()
    if spec["kind"] == "peak":
        from jetgen.bench.flops import matmul_peak
        result = matmul_peak(spec.get("min_time", 1.0), threads=spec.get("threads"))
    elif spec["kind"] == "accuracy":
        result = run_accuracy(spec)
    else:
        result = run_backend(spec)
    result["seconds"] = time.time() - start
    with open(spec["out"], "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    try:
        main()
    except Exception as err:  # the parent shows this sentence in the row of the backend that failed
        sys.stderr.write("{}: {}\n".format(type(err).__name__, err))
        sys.exit(3)
