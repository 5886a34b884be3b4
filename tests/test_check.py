"""`jetgen check`: offline deployability of small hand-built ONNX graphs and a minimal bundle."""
import hashlib
import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from jetgen.cli import main
from jetgen.errors import JetgenError
from jetgen.export.check import check_model
from jetgen.export import parser_tables as trt_support

LATENT, HIDDEN, OUT = 4, 8, 6


def decoder(opset=13, extra_nodes=(), extra_inits=(), batch="batch", w_scale=0.1, z_dims=None):
    """z (batch, LATENT) -> Gemm -> Relu -> Gemm -> Sigmoid -> x (batch, OUT)."""
    rng = np.random.RandomState(0)
    inits = [
        numpy_helper.from_array((rng.randn(LATENT, HIDDEN) * w_scale).astype(np.float32), "w1"),
        numpy_helper.from_array(np.zeros(HIDDEN, np.float32), "b1"),
        numpy_helper.from_array((rng.randn(HIDDEN, OUT) * w_scale).astype(np.float32), "w2"),
        numpy_helper.from_array(np.zeros(OUT, np.float32), "b2"),
    ] + list(extra_inits)
    nodes = [
        helper.make_node("Gemm", ["z", "w1", "b1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["hr"], name="relu1"),
        helper.make_node("Gemm", ["hr", "w2", "b2"], ["logits"], name="fc2"),
        helper.make_node("Sigmoid", ["logits"], ["x"], name="out"),
    ] + list(extra_nodes)
    outputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, OUT])]
    outputs += [helper.make_tensor_value_info(n.output[0], TensorProto.FLOAT, None) for n in extra_nodes]
    graph = helper.make_graph(
        nodes, "decoder",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, z_dims or [batch, LATENT])],
        outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def save(model, tmp_path, name="model.onnx"):
    model.ir_version = 8  # what exporters for these opsets write; onnxruntime reads it
    path = tmp_path / name
    onnx.save(model, str(path))
    return str(path)


def errors(report):
    return [f for f in report["findings"] if f["severity"] == "error"]


def test_plain_decoder_deploys_on_nano(tmp_path):
    report = check_model(save(decoder(), tmp_path), "nano", max_batch=64)
    assert report["deployable"], errors(report)
    assert report["memory"]["weights_bytes"] == 4 * (LATENT * HIDDEN + HIDDEN + HIDDEN * OUT + OUT)
    assert any(f["where"] == "memory" and f["severity"] == "info" for f in report["findings"])


def test_opset_17_flagged_for_nano_fine_for_orin(tmp_path):
    path = save(decoder(opset=17), tmp_path)
    nano = check_model(path, "nano", max_batch=64)
    assert not nano["deployable"]
    assert any("opset 17" in f["what"] for f in errors(nano))
    assert check_model(path, "orin", max_batch=64)["deployable"]


def test_random_normal_and_reciprocal_flagged_on_nano(tmp_path):
    extra = [helper.make_node("RandomNormal", [], ["noise"], name="noise", shape=[1, OUT]),
             helper.make_node("Reciprocal", ["x"], ["inv"], name="inv")]
    report = check_model(save(decoder(extra_nodes=extra), tmp_path), "nano", max_batch=64)
    flagged = set(f["where"] for f in errors(report))
    assert "noise (RandomNormal)" in flagged and "inv (Reciprocal)" in flagged
    # TensorRT 8.5 parses both; the random op still warns (randomness belongs in the runtime).
    xavier = check_model(save(decoder(extra_nodes=extra), tmp_path), "xavier", max_batch=64)
    assert xavier["deployable"]
    assert any(f["where"] == "noise (RandomNormal)" and f["severity"] == "warning" for f in xavier["findings"])


def conv_transpose_model(weight_as_input):
    w = numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "w")
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2, 4, 4])]
    if weight_as_input:
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 1, 3, 3]))
    graph = helper.make_graph(
        [helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="deconv")], "deconv", inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1, 6, 6])],
        initializer=[] if weight_as_input else [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_conv_transpose_weight_must_be_initializer_on_trt82(tmp_path):
    bad = check_model(save(conv_transpose_model(True), tmp_path, "bad.onnx"), "nano", max_batch=8)
    assert any(f["where"] == "deconv (ConvTranspose)" for f in errors(bad))
    assert check_model(save(conv_transpose_model(True), tmp_path, "bad.onnx"), "xavier", max_batch=8)["deployable"]
    assert check_model(save(conv_transpose_model(False), tmp_path, "ok.onnx"), "nano", max_batch=8)["deployable"]


def test_int64_graph_input_flagged_before_trt10(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Cast", ["idx"], ["y"], name="cast", to=TensorProto.FLOAT)], "g",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])])
    path = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp_path)
    report = check_model(path, "nano", max_batch=8)
    assert any(f["where"] == "input idx" and "INT64" in f["what"] for f in errors(report))
    assert check_model(path, "orin", max_batch=8)["deployable"]


def test_int8_precision_needs_int8_hardware(tmp_path):
    path = save(decoder(), tmp_path)
    nano = check_model(path, "nano", precision="int8", max_batch=64)
    assert any(f["where"] == "precision int8" for f in errors(nano))
    assert check_model(path, "orin", precision="int8", max_batch=64)["deployable"]


def test_fp16_overflowing_initializer_flagged(tmp_path):
    huge = numpy_helper.from_array(np.array([1e6], np.float32), "scale")
    scale = helper.make_node("Mul", ["x", "scale"], ["scaled"], name="scale")
    path = save(decoder(extra_nodes=[scale], extra_inits=[huge]), tmp_path)
    fp16 = check_model(path, "nano", precision="fp16", max_batch=64)
    assert any(f["where"] == "initializer scale" for f in errors(fp16))
    assert check_model(path, "nano", precision="fp32", max_batch=64)["deployable"]


def test_tiny_weights_warn_under_fp16(tmp_path):
    report = check_model(save(decoder(w_scale=1e-6), tmp_path), "nano", precision="fp16", max_batch=64)
    assert report["deployable"]
    assert any(f["where"] == "initializers" and f["severity"] == "warning" for f in report["findings"])


def test_non_batch_dynamic_dim_flagged(tmp_path):
    path = save(decoder(z_dims=["batch", "latent"]), tmp_path)
    report = check_model(path, "orin", max_batch=64)
    assert any(f["where"] == "input z" and "axis 1" in f["what"] for f in errors(report))


def test_dynamic_batch_without_max_batch_warns(tmp_path):
    report = check_model(save(decoder(), tmp_path), "nano")
    assert report["deployable"]
    assert any(f["severity"] == "warning" and "batch" in f["what"] for f in report["findings"])
    assert report["memory"]["batch"] == 64


def test_com_microsoft_op_and_qdq_flagged(tmp_path):
    fused = helper.make_node("FusedGemm", ["x", "x"], ["f"], name="fused", domain="com.microsoft")
    model = decoder(extra_nodes=[fused])
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    report = check_model(save(model, tmp_path), "orin", max_batch=8)
    assert any(f["where"] == "fused (FusedGemm)" for f in errors(report))

    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    zero = numpy_helper.from_array(np.array(0, np.int8), "zp")
    q = helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="q")
    path = save(decoder(extra_nodes=[q], extra_inits=[scale, zero]), tmp_path, "qdq.onnx")
    assert not check_model(path, "nano", max_batch=8)["deployable"]
    assert check_model(path, "orin", precision="int8", max_batch=8)["deployable"]


def test_memory_over_budget_is_an_error(tmp_path):
    # 2 GB of activations at batch 2**20 with a (batch, 512) input on a 4 GB Nano (budget 2 GB).
    graph = helper.make_graph(
        [helper.make_node("Relu", ["z"], ["y"], name="relu")], "big",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 512])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 512])])
    path = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp_path)
    report = check_model(path, "nano", max_batch=2 ** 20)
    assert any(f["where"] == "memory" for f in errors(report))
    assert report["memory"]["activation_bytes"] == 2 * 4 * 512 * 2 ** 20


def test_calibration_finds_fp16_overflowing_activation(tmp_path):
    path = save(decoder(w_scale=1e5), tmp_path)  # logits far beyond 65504
    calib = tmp_path / "z.npy"
    np.save(str(calib), np.ones((4, LATENT), np.float32))
    report = check_model(path, "orin", precision="fp16", max_batch=8, calib=str(calib))
    assert any(f["where"] == "tensor logits" for f in errors(report))


def make_bundle(tmp_path, batch=True, precision="fp32"):
    bundle = tmp_path / "tiny.jetgen"
    bundle.mkdir()
    model = decoder()
    model.ir_version = 8
    data = model.SerializeToString()
    (bundle / "decoder.onnx").write_bytes(data)
    entry = {"file": "decoder.onnx", "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
             "opset": 13, "precision": precision}
    if batch:
        entry["batch"] = {"min": 1, "opt": 16, "max": 256}
    manifest = {"format": "jetgen-bundle", "format_version": 1, "name": "tiny",
                "graphs": {"decoder": entry}, "target": {"name": "nano"}, "precision": precision}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    return str(bundle)


def test_bundle_uses_manifest_batch_and_precision(tmp_path):
    report = check_model(make_bundle(tmp_path), "nano")
    assert report["deployable"], errors(report)
    assert report["memory"]["batch"] == 256
    assert report["memory"]["graphs"]["decoder"]["activation_bytes"] > 0


def test_bundle_without_batch_range_or_with_int8_on_nano_fails(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    no_batch = check_model(make_bundle(tmp_path / "a", batch=False), "nano")
    assert any("batch range" in f["what"] for f in errors(no_batch))
    int8 = check_model(make_bundle(tmp_path / "b", precision="int8"), "nano")
    assert any(f["where"] == "precision int8" for f in errors(int8))


def test_bundle_with_changed_graph_is_flagged(tmp_path):
    bundle = make_bundle(tmp_path)
    onnx.save(decoder(w_scale=0.2), bundle + "/decoder.onnx")
    report = check_model(bundle, "nano")
    assert any("sha256" in f["what"] for f in errors(report))


def test_unusable_inputs_raise_one_sentence(tmp_path):
    with pytest.raises(JetgenError, match="Unknown target"):
        check_model(save(decoder(), tmp_path), "jetson-tk1")
    with pytest.raises(JetgenError, match="Nothing at"):
        check_model(str(tmp_path / "missing.onnx"), "nano")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x00\xffnot an onnx model at all")
    with pytest.raises(JetgenError, match="not a readable ONNX model"):
        check_model(str(corrupt), "nano")
    (tmp_path / "empty.jetgen").mkdir()
    with pytest.raises(JetgenError, match="no manifest.json"):
        check_model(str(tmp_path / "empty.jetgen"), "nano")


def test_every_target_has_a_parser_table():
    from jetgen.runtime.targets import TARGETS, trt_major_minor
    for row in TARGETS.values():
        assert trt_support.table_key(*trt_major_minor(row["tensorrt"])) is not None
    assert trt_support.table_key(8, 2) == "8.2" and trt_support.table_key(10, 3) == "10.3"
    assert "Reciprocal" not in trt_support.SUPPORTED_OPS["8.2"]["ops"]
    assert "Reciprocal" in trt_support.SUPPORTED_OPS["8.5"]["ops"]


def test_cli_table_and_exit_codes(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(main, ["check", save(decoder(), tmp_path, "ok.onnx"), "--target", "nano"])
    assert ok.exit_code == 0, ok.output
    assert "severity" in ok.output and "Deployable on nano" in ok.output
    bad = runner.invoke(main, ["check", save(decoder(opset=17), tmp_path, "bad.onnx"), "--target", "nano"])
    assert bad.exit_code == 1
    assert "NOT deployable on nano" in bad.output


def test_cli_json(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["check", save(decoder(opset=17), tmp_path), "--target", "nano",
                                  "--json", "--max-batch", "32"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["target"] == "nano" and report["deployable"] is False
    assert set(report["memory"]) >= {"weights_bytes", "activation_bytes", "total_bytes", "budget_bytes"}
    assert all(set(f) == {"severity", "graph", "where", "what", "fix"} for f in report["findings"])


def test_cli_bad_target_is_one_sentence(tmp_path):
    result = CliRunner().invoke(main, ["check", save(decoder(), tmp_path), "--target", "tk1"])
    assert result.exit_code == 2  # a usage error: the choices are listed (and shell completion knows them)
    assert "'tk1' is not one of" in result.output and "nano" in result.output and "Traceback" not in result.output


# -- attribute and value limits of the parser (parser_tables.ATTRIBUTE_LIMITS) ---------------------

def _one_node_model(node, inputs, outputs, inits=(), opset=13):
    graph = helper.make_graph([node], "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _attribute_errors(model, tmp_path, target, name="m.onnx", **kwargs):
    report = check_model(save(model, tmp_path, name), target, max_batch=8, **kwargs)
    return [f for f in errors(report) if "ONNX parser (" in f["what"]]


def _resize(**attrs):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1, 8, 8])
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="up", **attrs)
    return _one_node_model(node, [x], [y], [scales])


@pytest.mark.parametrize("attrs,target,words", [
    ({"mode": "cubic"}, "nano", "mode='cubic' is not imported (allowed: nearest, linear)"),
    ({"coordinate_transformation_mode": "tf_crop_and_resize", "mode": "linear"}, "orin",
     "coordinate_transformation_mode='tf_crop_and_resize' is not imported"),
    ({"mode": "nearest", "nearest_mode": "banker"}, "xavier", "nearest_mode='banker'"),
])
def test_resize_modes_outside_the_table_are_errors(tmp_path, attrs, target, words):
    found = _attribute_errors(_resize(**attrs), tmp_path, target)
    assert len(found) == 1 and found[0]["where"] == "up (Resize)" and words in found[0]["what"]
    assert found[0]["fix"]


@pytest.mark.parametrize("attrs,targets", [({}, ("nano", "xavier", "orin")),
                                           ({"mode": "linear", "coordinate_transformation_mode": "align_corners"},
                                            ("nano", "orin")),
                                           ({"mode": "cubic"}, ("xavier", "orin"))])
def test_supported_resize_modes_pass(tmp_path, attrs, targets):
    for target in targets:
        assert _attribute_errors(_resize(**attrs), tmp_path, target) == [], (attrs, target)


def _deconv(spatial):
    w = numpy_helper.from_array(np.ones((2, 1) + (2,) * spatial, np.float32), "w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2] + [3] * spatial)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1] + [4] * spatial)
    return _one_node_model(helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="deconv"), [x], [y], [w])


@pytest.mark.parametrize("target", ["nano", "xavier", "orin"])
def test_conv_transpose_beyond_3d_is_an_error(tmp_path, target):
    found = _attribute_errors(_deconv(4), tmp_path, target)
    assert len(found) == 1 and "a 4-D ConvTranspose is not imported (allowed: 1/2/3-D)" in found[0]["what"]
    for spatial in (2, 3):
        assert _attribute_errors(_deconv(spatial), tmp_path, target) == []


def _qdq(zero_point):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
             numpy_helper.from_array(np.array(zero_point, np.int8), "zp")]
    graph = helper.make_graph([helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="q"),
                               helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"], name="dq")],
                              "qdq", [x], [y], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("target", ["nano", "xavier", "orin"])
def test_non_zero_qdq_zero_points_are_errors(tmp_path, target):
    found = _attribute_errors(_qdq(3), tmp_path, target, precision="int8")
    assert sorted(f["where"] for f in found) == ["dq (DequantizeLinear)", "q (QuantizeLinear)"]
    assert all("zero point [3] is not 0" in f["what"] and "symmetric" in f["fix"] for f in found)
    assert _attribute_errors(_qdq(0), tmp_path, target, "zero.onnx", precision="int8") == []


def _topk(k, **attrs):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 5000])
    v = helper.make_tensor_value_info("v", TensorProto.FLOAT, ["batch", k])
    i = helper.make_tensor_value_info("i", TensorProto.INT64, ["batch", k])
    kk = numpy_helper.from_array(np.array([k], np.int64), "k")
    return _one_node_model(helper.make_node("TopK", ["x", "k"], ["v", "i"], name="top", **attrs), [x], [v, i], [kk])


def test_topk_sorted_and_k_limits(tmp_path):
    unsorted = _attribute_errors(_topk(5, sorted=0), tmp_path, "orin")
    assert len(unsorted) == 1 and "sorted=0 is not imported" in unsorted[0]["what"]
    assert _attribute_errors(_topk(5, sorted=0), tmp_path, "xavier") == []  # a 10.x restriction only
    assert _attribute_errors(_topk(5), tmp_path, "orin") == []
    big = _attribute_errors(_topk(4000), tmp_path, "orin", "big.onnx")
    assert len(big) == 1 and "k 4000 is above the limit of 3840" in big[0]["what"]


def test_every_attribute_rule_has_a_known_kind_and_words():
    kinds = {"attr_in", "attr_equals", "spatial_dims", "zero_point", "const_at_most"}
    assert set(trt_support.ATTRIBUTE_LIMITS) == set(trt_support.SUPPORTED_OPS)
    for key, ops in trt_support.ATTRIBUTE_LIMITS.items():
        for op, rules in ops.items():
            assert op in trt_support.SUPPORTED_OPS[key]["ops"], (key, op)
            for rule in rules:
                assert rule["kind"] in kinds and rule["why"] and rule["fix"], (key, op, rule)
