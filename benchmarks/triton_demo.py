"""Serve `make demo`'s bundles (the cvae and the atlasnet) as Triton model repositories through a real
tritonserver from the registry's nvidia-pytriton wheel (the onnxruntime backend is the tests' labelled
stand-in), check every graph's golden vectors through tritonclient and the Python model's samples against
jetgen.runtime.Model (same seed). Loopback only; the server is stopped at the end.

    make demo && .venv/bin/python benchmarks/triton_demo.py [--demo out/demo]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from jetgen.runtime import Model  # noqa: E402
from jetgen.triton import local  # noqa: E402
from tests.test_triton import STANDIN, ask, errors, load_case, passes, run_graph  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", default=os.path.join(ROOT, "out", "demo"), help="make demo's output directory")
    args = parser.parse_args()
    import tritonclient.http as http

    why = local.problem()
    if why:
        sys.exit("tritonserver cannot run here: " + why)
    bundles = {"cvae": os.path.join(args.demo, "cvae.jetgen"),
               "shapes": os.path.join(args.demo, "shapes", "atlasnet.jetgen")}
    work = tempfile.mkdtemp(prefix="jetgen-triton-demo-")
    repos = []
    for name, bundle in sorted(bundles.items()):
        repos.append(os.path.join(work, name))
        subprocess.check_call([sys.executable, "-m", "jetgen.cli", "triton", bundle, "-o", repos[-1], "--name", name])
    srv = local.LocalServer(repos, backends={"onnxruntime": STANDIN})
    srv.start(timeout=180)
    print("tritonserver ready in {:.1f} s".format(srv.ready_s))
    client = http.InferenceServerClient(srv.url, connection_timeout=60, network_timeout=120)
    try:
        worst, checked = 0.0, 0
        for name, bundle in sorted(bundles.items()):
            manifest = json.load(open(os.path.join(bundle, "manifest.json")))
            for graph, entry in sorted(manifest["graphs"].items()):
                for case in entry.get("golden", []):
                    inputs, expected = load_case(bundle, graph, case)
                    if len(next(iter(inputs.values()))) > entry["batch"]["max"]:
                        continue
                    got = run_graph(client, "{}_{}".format(name, graph), entry, inputs)
                    for out, want in expected.items():
                        max_abs, max_rel = errors(got[out].reshape(want.shape), want)
                        if not passes(max_abs, max_rel, entry["precision"]):
                            sys.exit("{} {} {} {}: off by {:.3g}".format(name, graph, case["name"], out, max_abs))
                        worst, checked = max(worst, max_abs), checked + 1
        print("golden outputs checked through Triton: {}, worst max abs error {:.3g}".format(checked, worst))
        for name, labels in (("cvae", [3]), ("shapes", None)):
            m = Model.open(bundles[name])
            kw = {"labels": labels} if labels else {}
            x, z = ask(client, name, "sample", n=4, temperature=1.0, seed=5, **kw)
            want_x, want_z = m.sample(4, labels=labels[0] if labels else None, temperature=1.0, seed=5,
                                      return_latents=True)
            print("{}: sample through Triton's Python model: latents equal {}, max |x - runtime| {:.3g}".format(
                name, bool(np.array_equal(z, want_z)), float(np.abs(x - want_x).max())))
    finally:
        client.close()
        srv.stop()
        print("stopped in {:.1f} s".format(srv.stop_s))


if __name__ == "__main__":
    main()
