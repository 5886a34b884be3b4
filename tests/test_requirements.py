"""Bundles say what runtime they need: the version table in jetgen.spec, the ONNX header reader, the
runtime refusing an old ONNX Runtime or TensorRT early (naming both versions), `check` and `info`
showing the versions, and check's TensorRT 10.3 constant-input rules and its jetgen re-export fix."""
import hashlib
import json
import os

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

import onnxruntime
from jetgen import spec
from jetgen.cli import main
from jetgen.errors import JetgenError
from jetgen.export.check import check_model
from jetgen.runtime import Model
from jetgen.runtime.backends.trt import session as trt_backend
from jetgen.runtime.requirements import check_onnxruntime, check_tensorrt, read_header
from tests.runtime_fixtures import make_bundle
from tests.test_trt_logic import fake_device  # noqa: F401  (fixture)


def tiny_model(opset, ir_version, nodes=None, inits=(), extra_inputs=()):
    nodes = nodes or [helper.make_node("Relu", ["z"], ["x"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 4])]
                              + list(extra_inputs),
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)], list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    helper.make_opsetid("com.example", 1)])
    model.ir_version = ir_version
    return model


def save(model, tmp_path, name="g.onnx"):
    path = str(tmp_path / name)
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("opset,ir,ort,trt", [(13, 7, "1.6", "8.0"), (17, 8, "1.12", "8.5"), (18, 8, "1.14", "9.2"),
                                              (19, 9, "1.16", "9.2"), (20, 9, "1.17", "10.0"), (21, 10, "1.18", "10.15")])
def test_the_table_gives_the_oldest_release(opset, ir, ort, trt):
    needs = spec.runtime_requirements(opset, ir)
    assert (needs["onnxruntime"], needs["tensorrt"]) == (ort, trt)


def test_the_tables_only_grow():
    for table in (spec.ONNXRUNTIME_SUPPORT, spec.TENSORRT_SUPPORT):
        versions = [spec.version_tuple(row[0]) for row in table]
        assert versions == sorted(versions)
        assert [row[1] for row in table] == sorted(row[1] for row in table)
    assert spec.runtime_requirements(30, 20)["onnxruntime"] is None  # beyond the table: said so, not guessed
    assert "newer than 1.20" in spec.runtime_requirements(30, 20)["notes"][0]


def test_the_header_reader_agrees_with_onnx(tmp_path):
    for opset, ir in ((13, 7), (20, 9)):
        path = save(tiny_model(opset, ir), tmp_path, "m{}.onnx".format(opset))
        assert read_header(path) == {"ir_version": ir, "opset": opset}
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x0f\xff\xff")
    with pytest.raises(JetgenError, match="Cannot read the ONNX header"):
        read_header(str(bad))


def test_an_old_onnxruntime_is_refused_before_its_own_error(tmp_path, monkeypatch):
    path = save(tiny_model(20, 9), tmp_path)
    with pytest.raises(JetgenError) as err:
        check_onnxruntime("1.15.1", path, "decoder")
    text = str(err.value)
    assert "needs ONNX Runtime 1.17 or newer, but this machine has ONNX Runtime 1.15.1" in text
    assert "opset 20, IR version 9" in text
    assert check_onnxruntime("1.17.0", path, "decoder")["onnxruntime"] == "1.17"
    check_onnxruntime("1.32.0", save(tiny_model(23, 11), tmp_path, "new.onnx"), "decoder")  # newer than the table
    # through the runtime: an opset-13 bundle on a (pretend) onnxruntime 1.5
    bundle, _ = make_bundle(str(tmp_path / "b.jetgen"))
    monkeypatch.setattr(onnxruntime, "__version__", "1.5.2")
    result = CliRunner().invoke(main, ["sample", bundle, "--n", "1", "--out", str(tmp_path / "x.npy")])
    assert result.exit_code == 1 and "needs ONNX Runtime 1.6 or newer, but this machine has ONNX Runtime 1.5.2" \
        in result.output


def test_a_manifest_may_ask_for_more_but_not_less(tmp_path):
    path = save(tiny_model(13, 7), tmp_path)
    with pytest.raises(JetgenError, match="needs ONNX Runtime 1.11 or newer"):
        check_onnxruntime("1.10.0", path, "decoder", {"requires": {"onnxruntime": "1.11"}})
    check_onnxruntime("1.10.0", path, "decoder", {"requires": {"onnxruntime": "1.2"}})


def test_an_old_tensorrt_is_refused_before_parsing(tmp_path, fake_device):  # noqa: F811
    path = save(tiny_model(20, 9), tmp_path)
    with pytest.raises(JetgenError, match="needs TensorRT 10.0 or newer, but this machine has TensorRT 8.5.2"):
        check_tensorrt("8.5.2", path, "decoder")
    with pytest.raises(JetgenError, match="older than TensorRT 10.3 parses"):
        check_tensorrt("10.3", save(tiny_model(8, 3), tmp_path, "old.onnx"), "decoder")
    _, calls = fake_device("8.2.1", "pycuda")
    graph = {"inputs": [{"name": "z", "shape": ["batch", 4]}], "outputs": [{"name": "x", "shape": ["batch", 4]}],
             "batch": {"min": 1, "opt": 2, "max": 4}}
    with pytest.raises(JetgenError, match="needs TensorRT 10.0 or newer, but this machine has TensorRT 8.2.1"):
        trt_backend.TrtSession(path, graph, str(tmp_path))
    assert "parse" not in [c[0] for c in calls]


def test_info_shows_the_versions_each_graph_needs(tmp_path):
    bundle, _ = make_bundle(str(tmp_path / "b.jetgen"))
    result = CliRunner().invoke(main, ["info", bundle])
    assert result.exit_code == 0, result.output
    assert "needs ORT / TRT" in result.output and "1.6 / 8.0" in result.output
    data = json.loads(CliRunner().invoke(main, ["info", bundle, "--json"]).output)
    assert data["graphs"]["decoder"]["requires"]["onnxruntime"] == "1.6"


# -- check: TensorRT 10.3 constant inputs, re-export advice ------------------------------------------

def _axes_model(op, computed, opset=20):
    """z -> op(z, axes) where axes is an initializer or computed in the graph (Shape -> Slice)."""
    inits, nodes = [], []
    if op == "Dropout":
        mode = numpy_helper.from_array(np.array(False), "flag")
        if computed:
            nodes.append(helper.make_node("Identity", ["flag"], ["mode"], name="make_mode"))
        inits.append(mode)
        nodes.append(helper.make_node("Dropout", ["z", "", "mode" if computed else "flag"], ["x"], name="drop"))
        return tiny_model(opset, 9, nodes, inits)
    axes_value = {"Squeeze": [2], "Unsqueeze": [2], "Pad": [1]}[op]
    inits.append(numpy_helper.from_array(np.array(axes_value, np.int64), "axes_const"))
    if computed:  # Shape(z)[1:2] - 3: a tensor the parser cannot see at build time
        inits += [numpy_helper.from_array(np.array([1], np.int64), "one"),
                  numpy_helper.from_array(np.array([2], np.int64), "two"),
                  numpy_helper.from_array(np.array([3 if op != "Pad" else 3], np.int64), "three")]
        nodes += [helper.make_node("Shape", ["z"], ["shape"]), helper.make_node("Slice", ["shape", "one", "two"], ["d"]),
                  helper.make_node("Sub", ["d", "three"], ["axes"])]
    axes = "axes" if computed else "axes_const"
    if op == "Pad":
        inits.append(numpy_helper.from_array(np.array([1, 1], np.int64), "pads"))
        nodes.append(helper.make_node("Pad", ["z", "pads", "", axes], ["x"], name="pad"))
    elif op == "Squeeze":
        nodes += [helper.make_node("Unsqueeze", ["z", "axes_const"], ["u"], name="unsq0"),
                  helper.make_node("Squeeze", ["u", axes], ["x"], name="sq")]
    else:
        nodes.append(helper.make_node("Unsqueeze", ["z", axes], ["x"], name="unsq"))
    return tiny_model(opset, 9, nodes, inits)


@pytest.mark.parametrize("op,label", [("Squeeze", "axes"), ("Unsqueeze", "axes"), ("Pad", "axes"),
                                      ("Dropout", "training_mode")])
def test_orin_needs_constant_axes_and_training_mode(tmp_path, op, label):
    computed = check_model(save(_axes_model(op, True), tmp_path, "c.onnx"), "orin", max_batch=8)
    flagged = [f for f in computed["findings"] if f["severity"] == "error" and "TensorRT 10.3" in f["what"]]
    assert flagged and "input '{}".format(label) in flagged[0]["what"] and not computed["deployable"]
    constant = check_model(save(_axes_model(op, False), tmp_path, "k.onnx"), "orin", max_batch=8)
    assert not any("computed in the graph" in f["what"] for f in constant["findings"]), constant["findings"]


def test_check_reports_runtime_versions_and_jetgen_reexport(tmp_path):
    bundle, _ = make_bundle(str(tmp_path / "b.jetgen"))
    model = onnx.load(os.path.join(bundle, "decoder.onnx"))
    model.opset_import[0].version = 17  # as if exported for a newer board
    data = model.SerializeToString()
    open(os.path.join(bundle, "decoder.onnx"), "wb").write(data)
    manifest = json.load(open(os.path.join(bundle, "manifest.json")))
    manifest["graphs"]["decoder"].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data), opset=17)
    manifest["provenance"]["run"] = "runs/cvae"
    json.dump(manifest, open(os.path.join(bundle, "manifest.json"), "w"))
    report = check_model(bundle, "nano")
    opset_error = [f for f in report["findings"] if f["where"] == "opset 17"][0]
    assert opset_error["fix"] == "re-export for this board: jetgen export runs/cvae --target nano (opset 13)"
    assert "torch.onnx.export" not in json.dumps(report)
    versions = [f["what"] for f in report["findings"] if f["where"] == "runtime versions"]
    assert "needs ONNX Runtime >= 1.12 and TensorRT >= 8.5 (opset 17, IR version 7)" in versions
    # a single .onnx still gets the torch.onnx.export advice
    single = check_model(save(tiny_model(17, 8), tmp_path), "nano", max_batch=4)
    assert "torch.onnx.export(..., opset_version=13)" in [f for f in single["findings"]
                                                         if f["where"] == "opset 17"][0]["fix"]


def test_model_open_still_reads_bundles_with_golden_and_requires(tmp_path):
    bundle, _ = make_bundle(str(tmp_path / "b.jetgen"))
    manifest = json.load(open(os.path.join(bundle, "manifest.json")))
    manifest["graphs"]["decoder"]["requires"] = {"onnxruntime": "1.6", "tensorrt": "8.0"}
    json.dump(manifest, open(os.path.join(bundle, "manifest.json"), "w"))
    assert Model.open(bundle, intra_op_threads=1).sample(2, seed=0).shape == (2, 1, 8, 8)
    manifest["graphs"]["decoder"]["requires"] = {"onnxruntime": "latest"}
    json.dump(manifest, open(os.path.join(bundle, "manifest.json"), "w"))
    with pytest.raises(JetgenError, match="requires.onnxruntime 'latest' is not a version"):
        Model.open(bundle)
