"""What the TensorRT ONNX parser (onnx-tensorrt) accepts, per TensorRT version, as data.

Read by ``jetgen.export.check``. A wrong entry is fixed here and nowhere else.

Sources (onnx/onnx-tensorrt, read through the stored public copies):
- ``docs/operators.md`` at commit 009d6541b4ee1fa3f3150cd7cbabe7e56aa54840 (TensorRT 8.4 table);
- ``docs/operators.md`` at commit 6d0ab7be324d02c7feb3a306b6fdbeae84f71ddc (TensorRT 8.5 table);
- ``docs/operators.md`` of the TensorRT 8.0 release (used to cross-check the 8.2 table);
- ``docs/operators.md`` of the TensorRT 10.15 release (the newest 10.x table stored);
- ``docs/Changelog.md`` (10.15 version), which lists the ops each release added.
The 8.2, 8.6 and 10.3 tables are derived from those by the changelog, as each entry below says.
"""

# Ops (default ONNX domain) in the 8.4 table marked "Y". The starting point for 8.2 and 8.5.
_TRT84_SUPPORTED = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization
Cast Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum
DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor
Gather GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater
GreaterOrEqual GRU HardSigmoid Identity If ImageScaler InstanceNormalization IsNaN LeakyRelu
Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean
Min Mul Neg NonMaxSuppression Not Or Pad ParametricSoftplus Pow PRelu QuantizeLinear
RandomUniform RandomUniformLike Range ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence
RNN Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Sigmoid Sign Sin Sinh
Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh
ThresholdedRelu Tile TopK Transpose Unsqueeze Upsample Where Xor
""".split())

# 8.2 = the 8.4 table without Xor (the changelog's "TensorRT 8.4 GA: added Shrink, Xor"; Shrink is
# "N" in the 8.4 table anyway). Cross-check: the 8.0 table plus the 8.2 EA additions (Einsum, IsNaN,
# GatherND, Scatter, ScatterElements, ScatterND, Sign, Round) gives the same set except that the 8.0
# table marks Dropout, If and NonMaxSuppression "N" (all three have 8.x importers; 8.2 EA changelog
# mentions If) and SoftmaxCrossEntropyLoss "Y" (the 8.4 table says "N"; we keep it out).
_TRT82_SUPPORTED = _TRT84_SUPPORTED - {"Xor"}

# Ops in the 8.5 table marked "Y" = 8.4 plus what the 8.5 table adds.
_TRT85_SUPPORTED = _TRT84_SUPPORTED | frozenset("""
GridSample HardSwish MeanVarianceNormalization Mod NonZero OneHot RandomNormal RandomNormalLike
Reciprocal RoiAlign Shrink Trilu
""".split())

# 8.6 = 8.5 plus the changelog's "TensorRT 8.6 EA: added GroupNormalization, LayerNormalization, IsInf".
_TRT86_SUPPORTED = _TRT85_SUPPORTED | {"GroupNormalization", "LayerNormalization", "IsInf"}

# Ops in the 10.15 table marked "Y".
_TRT1015_SUPPORTED = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh Attention AveragePool
BatchNormalization BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape
Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum
Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm
GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample
GroupNormalization GRU HammingWindow HannWindow HardSigmoid HardSwish Hardmax Identity If
ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log
LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean
MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence
RMSNormalization RNN RoiAlign RotaryEmbedding Round STFT ScaledTanh Scan Scatter ScatterElements
ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign
SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh TensorScatter ThresholdedRelu Tile TopK
Transpose Trilu Unsqueeze Upsample Where Xor
""".split())

# 10.3 = 10.15 without what the changelog says came later: BlackmanWindow, HammingWindow,
# HannWindow (10.4), STFT (10.5), Attention (10.14), RotaryEmbedding, RMSNormalization,
# TensorScatter (10.15). Not confirmed: that Gelu, Mish and CastLike were already in 10.3 (the
# changelog names no release adding them after 10.0).
_TRT103_SUPPORTED = _TRT1015_SUPPORTED - {
    "BlackmanWindow", "HammingWindow", "HannWindow", "STFT", "Attention", "RotaryEmbedding",
    "RMSNormalization", "TensorScatter"}

# TensorRT "major.minor" -> the parser's table. A target uses the newest table not newer than its
# TensorRT version (8.5.2 -> "8.5", 10.3 -> "10.3").
SUPPORTED_OPS = {
    "8.2": {"ops": _TRT82_SUPPORTED, "source": "onnx-tensorrt docs/operators.md (8.4 table, "
            "commit 009d654) minus ops the changelog says 8.4 added; cross-checked with the 8.0 table"},
    "8.5": {"ops": _TRT85_SUPPORTED, "source": "onnx-tensorrt docs/operators.md (8.5 table, commit 6d0ab7b)"},
    "8.6": {"ops": _TRT86_SUPPORTED, "source": "8.5 table plus the 8.6 EA changelog additions"},
    "10.3": {"ops": _TRT103_SUPPORTED, "source": "onnx-tensorrt docs/operators.md (10.15 table) minus "
             "ops the changelog says 10.4 to 10.15 added"},
}

# Inputs the parser needs as build-time constants (an initializer or a Constant node's output):
# table -> op -> [(input index, input name in the ONNX spec)]. From each table's "Restrictions".
_CONST_INPUTS_8X = {
    "CumSum": [(1, "axis")],
    "Slice": [(3, "axes")],
    "Squeeze": [(1, "axes")],
    "Unsqueeze": [(1, "axes")],
    "InstanceNormalization": [(1, "scale"), (2, "B")],
}
CONSTANT_INPUTS = {
    "8.2": dict(_CONST_INPUTS_8X, ConvTranspose=[(1, "W")], TopK=[(1, "K")]),
    "8.5": dict(_CONST_INPUTS_8X, TopK=[(1, "K")]),
    "8.6": dict(_CONST_INPUTS_8X),  # 8.6 EA changelog: TopK with dynamic K
    # Squeeze/Unsqueeze axes, Pad axes and Dropout training_mode ("is_training") from the TensorRT 10.1
    # operators.md restrictions (FACTS.md); Pad takes tensor axes from 10.4 on, so 10.3 still needs them
    # constant. Slice takes tensor axes from 10.3 (no entry).
    "10.3": {
        "Squeeze": [(1, "axes")], "Unsqueeze": [(1, "axes")], "Pad": [(3, "axes")],
        "Dropout": [(2, "training_mode (is_training)")],
        "ReduceL1": [(1, "axes")], "ReduceL2": [(1, "axes")], "ReduceLogSum": [(1, "axes")],
        "ReduceLogSumExp": [(1, "axes")], "ReduceMax": [(1, "axes")], "ReduceMean": [(1, "axes")],
        "ReduceMin": [(1, "axes")], "ReduceProd": [(1, "axes")], "ReduceSum": [(1, "axes")],
        "ReduceSumSquare": [(1, "axes")], "CumSum": [(1, "axis")], "OneHot": [(1, "depth")],
    },
}

# Before TensorRT 9 the parser casts INT64 tensors to INT32, clamping out-of-range values
# (operators.md notes of 8.x; Changelog "9.0 EA: the parser no longer casts INT64 to INT32").
INT64_NATIVE_FROM = (9, 0)

# Explicit int8 quantisation ops; TensorRT needs them at opset 13 or later (per-axis scales).
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
QDQ_MIN_OPSET = 13

# Ops that draw random numbers inside the graph. jetgen keeps randomness out of graphs: the
# runtime draws noise and passes it in (FACTS.md), so these are flagged even where supported.
RANDOM_OPS = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
                        "Bernoulli", "Multinomial"})

# Domains the parser reads natively; anything else (com.microsoft, ai.onnx.ml) needs a plugin.
DEFAULT_DOMAINS = frozenset({"", "ai.onnx"})

# How to get rid of an unsupported op: op -> advice shown in the "fix" column.
REWRITES = {
    "Reciprocal": "write 1/x as a division by a constant 1 (Div) before export",
    "RandomNormal": "draw the noise in the runtime and pass it in as a graph input",
    "RandomNormalLike": "draw the noise in the runtime and pass it in as a graph input",
    "RandomUniform": "draw the noise in the runtime and pass it in as a graph input",
    "RandomUniformLike": "draw the noise in the runtime and pass it in as a graph input",
    "LayerNormalization": "export at opset 16 or lower so it is decomposed into supported ops",
    "GroupNormalization": "export at an opset where it is decomposed, or write it with ReduceMean",
    "Xor": "rewrite with And/Or/Not",
    "SoftmaxCrossEntropyLoss": "compute the loss with LogSoftmax and a Mul/ReduceSum",
    "NegativeLogLikelihoodLoss": "compute the loss with Gather or Mul and ReduceSum",
}


def table_key(major, minor):
    """The SUPPORTED_OPS key for TensorRT (major, minor), or None when older than every table."""
    best = None
    for key in SUPPORTED_OPS:
        kv = tuple(int(p) for p in key.split("."))
        if kv <= (major, minor) and (best is None or kv > best[0]):
            best = (kv, key)
    return best[1] if best else None


# Attribute and value limits the parser imposes beyond op names and constant inputs, per table:
# table -> op -> [rule, ...]. Each rule is a dict with a "kind" (how jetgen.export.check reads it),
# its parameters, "why" (the restriction as the operators.md tables state it, or "not confirmed") and
# "fix". Kinds:
#   attr_in         attribute ``attr`` (``default`` when absent) must be one of ``allowed``
#   attr_equals     attribute ``attr`` (``default`` when absent) must equal ``value``
#   spatial_dims    the op's spatial rank (its weight's rank - 2, or len(kernel_shape)) in ``allowed``
#   zero_point      input ``input`` (the zero point), when constant, must be all zeros
#   const_at_most   input ``input``, when constant, must be at most ``max``
_RESIZE_COORDS = ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners")
_RESIZE_NEAREST = ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil")
_RESIZE_FIX = "export the resize with a supported mode (nearest or linear, e.g. F.interpolate(mode='bilinear'))"
_SYMMETRIC = {"kind": "zero_point", "input": 2,
              "why": "TensorRT quantises symmetrically only: zero points must be 0",
              "fix": "quantise symmetrically (zero point 0), e.g. per-channel symmetric weights"}
_DECONV = {"kind": "spatial_dims", "allowed": (1, 2, 3),
           "why": "2D or 3D deconvolutions only (1-D is unsqueezed to 2-D by the importer: not confirmed)",
           "fix": "reshape to a 2-D or 3-D transposed convolution before export"}
_TOPK_K = {"kind": "const_at_most", "input": 1, "max": 3840,
           "why": "TensorRT's TopK layer takes K up to 3840", "fix": "take fewer than 3841 elements, or sort instead"}


def _limits(resize_modes, topk_sorted):
    rules = {
        "Resize": [
            {"kind": "attr_in", "attr": "mode", "default": "nearest", "allowed": resize_modes,
             "why": "supported resize modes", "fix": _RESIZE_FIX},
            {"kind": "attr_in", "attr": "coordinate_transformation_mode", "default": "half_pixel",
             "allowed": _RESIZE_COORDS, "why": "supported resize transformation modes",
             "fix": "export with half_pixel, asymmetric or align_corners (tf_crop_and_resize is not imported)"},
            {"kind": "attr_in", "attr": "nearest_mode", "default": "round_prefer_floor", "allowed": _RESIZE_NEAREST,
             "why": "supported nearest modes", "fix": _RESIZE_FIX},
        ],
        "ConvTranspose": [_DECONV],
        "QuantizeLinear": [_SYMMETRIC],
        "DequantizeLinear": [_SYMMETRIC],
        "TopK": [_TOPK_K],
    }
    if topk_sorted:
        rules["TopK"] = rules["TopK"] + [{
            "kind": "attr_equals", "attr": "sorted", "default": 1, "value": 1,
            "why": "TopK returns sorted values only (sorted=0 is not supported)",
            "fix": "export TopK with sorted=True (torch.topk's default)"}]
    return rules


# Resize: nearest and linear in every table; cubic from 8.5 (not confirmed for 8.5/8.6: the 8.5 table
# lists "cubic" under Resize's supported modes). TopK's sorted=0 restriction is in the 10.x tables.
ATTRIBUTE_LIMITS = {
    "8.2": _limits(("nearest", "linear"), topk_sorted=False),
    "8.5": _limits(("nearest", "linear", "cubic"), topk_sorted=False),
    "8.6": _limits(("nearest", "linear", "cubic"), topk_sorted=False),
    "10.3": _limits(("nearest", "linear", "cubic"), topk_sorted=True),
}
