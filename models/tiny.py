"""Small deterministic ONNX test models for onnxprune.

The module is torch-free: models are built with ``onnx.helper``,
``onnx.numpy_helper`` and numpy only.  Every builder returns a fresh
``onnx.ModelProto`` that passes ``onnx.checker.check_model(m, full_check=True)``
and runs in onnxruntime.

Conventions:

* graph input ``"x"`` (float32, batch 1, NCHW ``[1, 3, 16, 16]`` unless the
  builder says otherwise); a single output is called ``"y"``;
* ``ir_version=10`` and opset 17 unless the builder says otherwise;
* weights are random but deterministic (one ``numpy.random.default_rng`` seed
  per builder); conv / linear weights ~ N(0, 1/sqrt(fan_in)) so activations
  stay O(1);
* every bias, BN shift and per-channel constant is non-zero, so a pruner that
  drops a channel without folding its constant contribution into the
  consumer changes the model output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "BUILDERS",
    "DEFAULT_IR_VERSION",
    "DEFAULT_OPSET",
    "all_models",
    "concat",
    "control_flow",
    "conv_chain",
    "convtranspose",
    "depthwise_se",
    "dynamic",
    "flatten_gemm",
    "grouped",
    "make",
    "misc_ops",
    "mlp",
    "nhwc",
    "old_style",
    "reshape_matmul",
    "residual",
    "slice_ops",
    "tensor",
    "yolo_neck",
]

DEFAULT_OPSET = 17
DEFAULT_IR_VERSION = 10

Shape = Sequence[int | str | None]
Store = Literal["init", "constant", "identity"]

_IMAGE: list[int] = [1, 3, 16, 16]
_NCHW_TO_NHWC = [0, 2, 3, 1]
_NHWC_TO_NCHW = [0, 3, 1, 2]


def tensor(name: str, shape: Shape, elem_type: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    """A typed graph input/output declaration."""
    return helper.make_tensor_value_info(name, elem_type, list(shape))


def make(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[onnx.ValueInfoProto],
    outputs: Sequence[onnx.ValueInfoProto],
    inits: Sequence[onnx.TensorProto],
    opset: int = DEFAULT_OPSET,
    name: str = "tiny",
    ir_version: int = DEFAULT_IR_VERSION,
) -> onnx.ModelProto:
    """Wrap nodes/initializers into a model with an explicit IR version and opset."""
    graph = helper.make_graph(
        list(nodes), name, list(inputs), list(outputs), initializer=list(inits)
    )
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        ir_version=ir_version,
        producer_name="onnxprune.models.tiny",
    )


class _Graph:
    """Accumulates nodes and initializers; every op helper returns its output tensor name."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._counts: dict[str, int] = {}

    # -- names and constants -------------------------------------------------

    def fresh(self, prefix: str) -> str:
        """A new unique name ``prefix_<n>``."""
        n = self._counts.get(prefix, 0)
        self._counts[prefix] = n + 1
        return f"{prefix}_{n}"

    def init(self, name: str, value: Any, dtype: Any = np.float32) -> str:
        """Add an initializer called ``name``."""
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def ints(self, values: Sequence[int], prefix: str = "shape") -> str:
        """An int64 constant input (shapes, axes, split sizes, pads...)."""
        return self.init(self.fresh(prefix), values, np.int64)

    def scalar(self, value: float) -> str:
        """A float32 scalar initializer."""
        return self.init(self.fresh("scalar"), value)

    def param(self, name: str, value: Any, store: Store = "init") -> str:
        """A float parameter held as an initializer, a Constant node or Identity(Constant)."""
        if store == "init":
            return self.init(name, value)
        array = numpy_helper.from_array(np.asarray(value, dtype=np.float32))
        if store == "constant":
            return self.op("Constant", [], name=name, value=array)
        const = self.op("Constant", [], name=f"{name}.const", value=array)
        return self.op("Identity", [const], name=name)

    def bias(self, n: int) -> np.ndarray:
        """Random values bounded away from zero (|v| in [0.1, 0.5])."""
        return self.rng.uniform(0.1, 0.5, n) * self.rng.choice([-1.0, 1.0], n)

    def channel_const(self, c: int, shape: Sequence[int], prefix: str, scale: bool = False) -> str:
        """A per-channel constant reshaped to ``shape``: a shift, or a positive scale."""
        values = self.rng.uniform(0.5, 1.5, c) if scale else self.bias(c)
        return self.init(self.fresh(prefix), values.reshape(shape))

    # -- generic nodes -------------------------------------------------------

    def multi(
        self, op_type: str, inputs: Sequence[str], n_out: int, name: str | None = None, **attrs: Any
    ) -> list[str]:
        """Append a node with ``n_out`` outputs; the node is named like its (first) output."""
        base = name or self.fresh(op_type.lower())
        outs = [base] if n_out == 1 else [f"{base}_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=base, **attrs))
        return outs

    def op(self, op_type: str, inputs: Sequence[str], name: str | None = None, **attrs: Any) -> str:
        """Append a single-output node."""
        return self.multi(op_type, inputs, 1, name, **attrs)[0]

    def relu(self, x: str) -> str:
        return self.op("Relu", [x])

    def transpose(self, x: str, perm: Sequence[int]) -> str:
        return self.op("Transpose", [x], perm=list(perm))

    def concat(self, xs: Sequence[str]) -> str:
        """Channel concat (axis 1)."""
        return self.op("Concat", xs, axis=1)

    def maxpool(self, x: str, k: int = 2, stride: int = 2, pad: int = 0) -> str:
        return self.op(
            "MaxPool", [x], kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4
        )

    def act(self, x: str, kind: str | None) -> str:
        """Activation by op type; ``"Clip6"`` is ReLU6 as Clip with min/max inputs."""
        if kind is None:
            return x
        if kind == "Clip6":
            return self.op("Clip", [x, self.scalar(0.0), self.scalar(6.0)])
        return self.op(kind, [x])

    # -- layers --------------------------------------------------------------

    def conv(
        self,
        x: str,
        cin: int,
        cout: int,
        k: int = 3,
        stride: int = 1,
        group: int = 1,
        bias: bool = True,
        store: Store = "init",
    ) -> str:
        """Conv k x k with 'same' padding; weight [cout, cin/group, k, k]."""
        name = self.fresh("conv")
        fan_in = cin // group * k * k
        weight = self.rng.normal(0.0, 1.0 / np.sqrt(fan_in), (cout, cin // group, k, k))
        inputs = [x, self.param(f"{name}.weight", weight, store)]
        if bias:
            inputs.append(self.param(f"{name}.bias", self.bias(cout), store))
        return self.op(
            "Conv",
            inputs,
            name=name,
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[k // 2] * 4,
            group=group,
        )

    def deconv(self, x: str, cin: int, cout: int, k: int = 2, stride: int = 2) -> str:
        """ConvTranspose with bias; weight [cin, cout, k, k]."""
        name = self.fresh("deconv")
        weight = self.rng.normal(0.0, 1.0 / np.sqrt(cin), (cin, cout, k, k))
        inputs = [
            x,
            self.init(f"{name}.weight", weight),
            self.init(f"{name}.bias", self.bias(cout)),
        ]
        return self.op(
            "ConvTranspose", inputs, name=name, kernel_shape=[k, k], strides=[stride, stride]
        )

    def bn(self, x: str, c: int) -> str:
        """BatchNormalization with random gamma/beta/mean and positive var."""
        name = self.fresh("bn")
        stats = {
            "scale": self.rng.uniform(0.5, 1.5, c),
            "bias": self.bias(c),
            "mean": self.rng.normal(0.0, 0.1, c),
            "var": self.rng.uniform(0.5, 1.5, c),
        }
        inputs = [x] + [self.init(f"{name}.{key}", value) for key, value in stats.items()]
        return self.op("BatchNormalization", inputs, name=name, epsilon=1e-5)

    def cba(
        self,
        x: str,
        cin: int,
        cout: int,
        k: int = 3,
        stride: int = 1,
        group: int = 1,
        act: str | None = "Relu",
    ) -> str:
        """Conv (no bias) + BN + activation, PyTorch-export style."""
        return self.act(self.bn(self.conv(x, cin, cout, k, stride, group, bias=False), cout), act)

    def gemm(self, x: str, fin: int, fout: int, trans_b: bool = True) -> str:
        """Gemm with bias; weight [fout, fin] if ``trans_b`` else [fin, fout]."""
        name = self.fresh("gemm")
        weight = self.rng.normal(0.0, 1.0 / np.sqrt(fin), (fout, fin) if trans_b else (fin, fout))
        inputs = [
            x,
            self.init(f"{name}.weight", weight),
            self.init(f"{name}.bias", self.bias(fout)),
        ]
        return self.op("Gemm", inputs, name=name, transB=int(trans_b))

    def linear(self, x: str, fin: int, fout: int) -> str:
        """MatMul with a constant [fin, fout] weight followed by Add of a bias [fout]."""
        name = self.fresh("linear")
        weight = self.init(f"{name}.weight", self.rng.normal(0.0, 1.0 / np.sqrt(fin), (fin, fout)))
        matmul = self.op("MatMul", [x, weight], name=name)
        return self.op("Add", [matmul, self.init(f"{name}.bias", self.bias(fout))])

    # -- finishing -----------------------------------------------------------

    def _rename(self, old: str, new: str) -> None:
        for node in self.nodes:
            for names in (node.input, node.output):
                for i, value in enumerate(names):
                    if value == old:
                        names[i] = new

    def build(
        self,
        name: str,
        outputs: dict[str, tuple[str, Shape]],
        inputs: Sequence[onnx.ValueInfoProto] | None = None,
        opset: int = DEFAULT_OPSET,
        ir_version: int = DEFAULT_IR_VERSION,
        inits_as_inputs: bool = False,
    ) -> onnx.ModelProto:
        """Make the model; ``outputs`` maps public output name -> (tensor, shape)."""
        for public, (internal, _) in outputs.items():
            self._rename(internal, public)
        graph_inputs = list(inputs) if inputs is not None else [tensor("x", _IMAGE)]
        if inits_as_inputs:
            graph_inputs += [tensor(t.name, list(t.dims), t.data_type) for t in self.inits]
        graph_outputs = [tensor(public, shape) for public, (_, shape) in outputs.items()]
        return make(self.nodes, graph_inputs, graph_outputs, self.inits, opset, name, ir_version)


# -- shared blocks -------------------------------------------------------------


def _chain_body(g: _Graph, x: str) -> str:
    """Conv(3->16)+bias+BN+Relu -> Conv(16->24)+bias+Relu -> Conv(24->8)+bias."""
    h = g.relu(g.bn(g.conv(x, 3, 16), 16))
    h = g.relu(g.conv(h, 16, 24))
    return g.conv(h, 24, 8)


def _basic_block(g: _Graph, x: str, cin: int, cout: int, stride: int = 1) -> str:
    """ResNet basic block; a 1x1 conv+BN shortcut when the shape changes."""
    h = g.cba(g.cba(x, cin, cout, stride=stride), cout, cout, act=None)
    shortcut = (
        x if stride == 1 and cin == cout else g.cba(x, cin, cout, k=1, stride=stride, act=None)
    )
    return g.relu(g.op("Add", [h, shortcut]))


def _inverted_residual(
    g: _Graph, x: str, c: int, expand: int, reduce: int, reduce_mean: bool
) -> str:
    """MobileNetV3 block: expand+ReLU6 -> depthwise+HardSwish -> SE -> project, + residual."""
    e = c * expand
    h = g.cba(x, c, e, k=1, act="Clip6")
    h = g.cba(h, e, e, group=e, act="HardSwish")
    if reduce_mean:
        pooled = g.op("ReduceMean", [h], axes=[2, 3], keepdims=1)
    else:
        pooled = g.op("GlobalAveragePool", [h])
    gate = g.conv(g.relu(g.conv(pooled, e, reduce, k=1)), reduce, e, k=1)
    gate = g.op("Sigmoid" if reduce_mean else "HardSigmoid", [gate])
    h = g.cba(g.op("Mul", [h, gate]), e, c, k=1, act=None)
    return g.op("Add", [h, x])


def _conv_pool(g: _Graph, x: str, cin: int, cout: int) -> str:
    """Conv -> Relu -> MaxPool 2x2 (halves the spatial size)."""
    return g.maxpool(g.relu(g.conv(x, cin, cout)))


def _reshape_linear(g: _Graph, x: str, shape: Sequence[int]) -> str:
    """Conv(3->8) + pool on 16x16, Reshape to ``shape`` (= [1, 512]), MatMul+Add to 10."""
    flat = g.op("Reshape", [_conv_pool(g, x, 3, 8), g.ints(shape)])
    return g.linear(flat, 8 * 8 * 8, 10)


def _sppf(g: _Graph, x: str, c: int) -> str:
    """YOLOv5/v8 SPPF: 1x1 conv, three chained MaxPool k5 s1 p2, concat of the 4, 1x1 conv."""
    pooled = [g.cba(x, c, c // 2, k=1)]
    for _ in range(3):
        pooled.append(g.maxpool(pooled[-1], k=5, stride=1, pad=2))
    return g.cba(g.concat(pooled), 2 * c, c, k=1)


def _csp(g: _Graph, x: str, c: int) -> str:
    """1x1 conv -> Split in two halves (sizes as input) -> conv each -> Concat -> 1x1 conv."""
    h = g.cba(x, c, c, k=1)
    halves = g.multi("Split", [h, g.ints([c // 2, c // 2], "split")], 2, axis=1)
    return g.cba(g.concat([g.cba(half, c // 2, c // 2) for half in halves]), c, c, k=1)


def _relu_branch(name: str, source: str, shape: Shape) -> onnx.GraphProto:
    """An If branch body: Relu of an outer-scope tensor."""
    out = f"{name}_out"
    return helper.make_graph(
        [helper.make_node("Relu", [source], [out], name=name)], name, [], [tensor(out, shape)]
    )


# -- builders ------------------------------------------------------------------


def conv_chain() -> onnx.ModelProto:
    """Plain chain: conv->BN->Relu, conv+bias->Relu, conv.

    Exercises the basic producer/consumer coupling (out-channels of one conv are
    in-channels of the next) and bias/BN folding of pruned channels.
    x [1,3,16,16] -> y [1,8,16,16].
    """
    g = _Graph(1)
    return g.build("conv_chain", {"y": (_chain_body(g, "x"), [1, 8, 16, 16])})


def residual() -> onnx.ModelProto:
    """Stem + two ResNet basic blocks -> GlobalAveragePool -> Flatten -> Gemm.

    Block 1 has an identity shortcut, block 2 is stride 2 with a 1x1 conv+BN
    downsample shortcut.

    Exercises Add coupling: every conv feeding the same residual sum must keep
    the same channels (stem + block1 convs; block2 conv2 + downsample), and the
    Flatten->Gemm column slicing after GlobalAveragePool.
    x [1,3,16,16] -> y [1,10].
    """
    g = _Graph(2)
    h = g.cba("x", 3, 16)
    h = _basic_block(g, h, 16, 16)
    h = _basic_block(g, h, 16, 32, stride=2)
    flat = g.op("Flatten", [g.op("GlobalAveragePool", [h])], axis=1)
    return g.build("residual", {"y": (g.gemm(flat, 32, 10), [1, 10])})


def concat() -> onnx.ModelProto:
    """Concat of two conv branches (8 + 12 -> 20 channels) and a tensor concatenated with itself.

    Exercises channel-offset bookkeeping through Concat, and [a, a] where one
    producer channel maps to two consumer input channels.
    x [1,3,16,16] -> y [1,16,16,16], y_dup [1,8,16,16].
    """
    g = _Graph(3)
    a = g.relu(g.conv("x", 3, 8))
    b = g.relu(g.conv("x", 3, 12))
    y = g.conv(g.concat([a, b]), 20, 16)
    c = g.relu(g.conv("x", 3, 8))
    y_dup = g.conv(g.concat([c, c]), 16, 8)
    return g.build("concat", {"y": (y, [1, 16, 16, 16]), "y_dup": (y_dup, [1, 8, 16, 16])})


def depthwise_se() -> onnx.ModelProto:
    """Two MobileNetV3 inverted-residual blocks with squeeze-excite, then a 1x1 head conv.

    Exercises depthwise convs (group == C, in/out channels coupled), Clip with
    min/max inputs, HardSwish, the SE gate (GAP/ReduceMean -> conv reduce ->
    conv expand -> HardSigmoid/Sigmoid -> Mul) and residual Add.  Block 1 uses
    GlobalAveragePool + HardSigmoid; block 2 uses ReduceMean(axes=[2,3]) + Sigmoid.
    x [1,3,16,16] -> y [1,8,8,8].
    """
    g = _Graph(4)
    h = g.cba("x", 3, 16, stride=2)
    h = _inverted_residual(g, h, 16, expand=2, reduce=8, reduce_mean=False)
    h = _inverted_residual(g, h, 16, expand=2, reduce=8, reduce_mean=True)
    return g.build("depthwise_se", {"y": (g.conv(h, 16, 8, k=1), [1, 8, 8, 8])})


def flatten_gemm() -> onnx.ModelProto:
    """Conv -> Relu -> MaxPool -> Flatten -> Gemm(transB=1) -> Relu -> Gemm(transB=0).

    Exercises the conv-channel -> flattened-feature mapping (each channel owns
    H*W = 64 contiguous Gemm columns) and Gemm-to-Gemm pruning with both
    weight layouts.
    x [1,3,16,16] -> y [1,10].
    """
    g = _Graph(5)
    flat = g.op("Flatten", [_conv_pool(g, "x", 3, 8)], axis=1)
    h = g.relu(g.gemm(flat, 8 * 8 * 8, 32, trans_b=True))
    return g.build("flatten_gemm", {"y": (g.gemm(h, 32, 10, trans_b=False), [1, 10])})


def reshape_matmul() -> onnx.ModelProto:
    """Two conv -> pool -> Reshape -> MatMul+Add branches summed.

    Branch 1 reshapes with the constant shape [1, -1], branch 2 with the
    explicit [0, C*H*W] = [0, 512].  Exercises the flatten mapping through
    Reshape (the shape constant must be rewritten when C shrinks) and
    MatMul row slicing.
    x [1,3,16,16] -> y [1,10].
    """
    g = _Graph(6)
    a = _reshape_linear(g, "x", [1, -1])
    b = _reshape_linear(g, "x", [0, 8 * 8 * 8])
    return g.build("reshape_matmul", {"y": (g.op("Add", [a, b]), [1, 10])})


def yolo_neck() -> onnx.ModelProto:
    """YOLO-style backbone (P4 8x8, P5 4x4) + SPPF + PAN neck with CSP blocks and two heads.

    Exercises SPPF (MaxPool chain + 4-way Concat), nearest Resize (scales
    constant, empty roi), Concat across scales, Split with sizes as an input
    (the split constant must be rewritten), and multiple outputs.
    x [1,3,16,16] -> out_p4 [1,12,8,8], out_p5 [1,12,4,4].
    """
    g = _Graph(7)
    p4 = g.cba("x", 3, 16, stride=2)
    p5 = _sppf(g, g.cba(p4, 16, 32, stride=2), 32)
    lateral = g.cba(p5, 32, 16, k=1)
    scales = g.init(g.fresh("scales"), [1.0, 1.0, 2.0, 2.0])
    up = g.op(
        "Resize",
        [lateral, "", scales],
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )
    n4 = _csp(g, g.concat([up, p4]), 32)
    n5 = _csp(g, g.concat([g.cba(n4, 32, 16, stride=2), lateral]), 32)
    outputs: dict[str, tuple[str, Shape]] = {
        "out_p4": (g.conv(n4, 32, 12, k=1), [1, 12, 8, 8]),
        "out_p5": (g.conv(n5, 32, 12, k=1), [1, 12, 4, 4]),
    }
    return g.build("yolo_neck", outputs)


def nhwc() -> onnx.ModelProto:
    """TF-converter layout: NHWC input, Transpose sandwiches around NCHW convs.

    Exercises channel tracking through Transpose (channel axis moves 1 <-> 3)
    and a per-channel Add of a [C] constant broadcast on the last axis.
    x [1,12,12,3] (NHWC) -> y [1,12,12,8] (NHWC).
    """
    g = _Graph(8)
    h = g.relu(g.conv(g.transpose("x", _NHWC_TO_NCHW), 3, 16))
    h = g.op("Add", [g.transpose(h, _NCHW_TO_NHWC), g.channel_const(16, [16], "channel_bias")])
    y = g.transpose(g.conv(g.transpose(h, _NHWC_TO_NCHW), 16, 8), _NCHW_TO_NHWC)
    return g.build("nhwc", {"y": (y, [1, 12, 12, 8])}, inputs=[tensor("x", [1, 12, 12, 3])])


def mlp() -> onnx.ModelProto:
    """Transformer FFN: MatMul+Add -> exact Gelu (Div, Erf, Add, Mul, Mul) -> MatMul+Add -> + x.

    Exercises hidden-unit pruning of MatMul weights on a 3D [B, T, D] tensor
    (feature axis is the last one) through an element-wise Gelu subgraph with
    scalar constants; the residual Add pins D.
    x [1,6,16] -> y [1,6,16].
    """
    g = _Graph(9)
    h = g.linear("x", 16, 64)
    erf = g.op("Erf", [g.op("Div", [h, g.scalar(np.sqrt(2.0))])])
    gelu = g.op("Mul", [g.op("Mul", [h, g.op("Add", [erf, g.scalar(1.0)])]), g.scalar(0.5)])
    y = g.op("Add", [g.linear(gelu, 64, 16), "x"])
    return g.build("mlp", {"y": (y, [1, 6, 16])}, inputs=[tensor("x", [1, 6, 16])])


def convtranspose() -> onnx.ModelProto:
    """UNet-ish: conv (skip) -> stride-2 conv down -> ConvTranspose up -> Concat with skip -> conv.

    Exercises ConvTranspose, whose weight is [Cin, Cout, k, k] (output
    channels on axis 1), and Concat of decoder and skip channels.
    x [1,3,16,16] -> y [1,8,16,16].
    """
    g = _Graph(10)
    skip = g.cba("x", 3, 16)
    down = g.cba(skip, 16, 32, stride=2)
    up = g.relu(g.deconv(down, 32, 16))
    return g.build("convtranspose", {"y": (g.conv(g.concat([up, skip]), 32, 8), [1, 8, 16, 16])})


def misc_ops() -> onnx.ModelProto:
    """Conv (no bias) -> per-channel ops and pass-through ops -> Conv.

    Chain: Add [1,C,1,1] -> PRelu slope [C,1,1] -> InstanceNormalization ->
    LeakyRelu -> Pad (spatial) -> AveragePool -> x*Sigmoid(x) -> Mul [1,C,1,1]
    -> Dropout (inference) -> Identity -> Cast(float) -> Conv.  Exercises
    slicing of per-channel constants and parameters, and propagating channel
    identity through shape-preserving ops.
    x [1,3,16,16] -> y [1,8,9,9].
    """
    g = _Graph(11)
    c = 16
    h = g.op(
        "Add", [g.conv("x", 3, c, bias=False), g.channel_const(c, [1, c, 1, 1], "channel_bias")]
    )
    slope = g.init(g.fresh("prelu_slope"), g.rng.uniform(0.05, 0.3, (c, 1, 1)))
    h = g.op("PRelu", [h, slope])
    h = g.op(
        "InstanceNormalization",
        [h, g.channel_const(c, [c], "in_scale", scale=True), g.channel_const(c, [c], "in_bias")],
    )
    h = g.op("LeakyRelu", [h], alpha=0.1)
    h = g.op("Pad", [h, g.ints([0, 0, 1, 1, 0, 0, 1, 1], "pads")], mode="constant")
    h = g.op("AveragePool", [h], kernel_shape=[2, 2], strides=[2, 2])
    h = g.op("Mul", [h, g.op("Sigmoid", [h])])
    h = g.op("Mul", [h, g.channel_const(c, [1, c, 1, 1], "channel_scale", scale=True)])
    h = g.op("Cast", [g.op("Identity", [g.op("Dropout", [h])])], to=TensorProto.FLOAT)
    return g.build("misc_ops", {"y": (g.conv(h, c, 8), [1, 8, 9, 9])})


def grouped() -> onnx.ModelProto:
    """Conv -> grouped conv (group=4, 4 in-channels per group) -> conv.

    Exercises group coupling: channels may only be removed so that every group
    keeps the same size (or whole groups are removed), on both sides of the
    grouped conv.
    x [1,3,16,16] -> y [1,8,16,16].
    """
    g = _Graph(12)
    h = g.relu(g.conv("x", 3, 16))
    h = g.relu(g.conv(h, 16, 32, group=4))
    return g.build("grouped", {"y": (g.conv(h, 32, 8), [1, 8, 16, 16])})


def old_style() -> onnx.ModelProto:
    """Old-exporter style model: opset 9, ir_version 4, initializers also listed as graph inputs.

    Conv 1 holds weight and bias in Constant nodes; conv 2's weight and bias
    are Identity(Constant); BN kept unfolded; Upsample (opset-9, scales input)
    and Split with the ``split`` attribute.  Exercises weights that are not
    initializers and opset-dependent attribute/input forms.
    x [1,3,8,8] -> y [1,8,16,16].
    """
    g = _Graph(13)
    h = g.relu(g.bn(g.conv("x", 3, 16, store="constant"), 16))
    h = g.relu(g.conv(h, 16, 16, store="identity"))
    h = g.op("Upsample", [h, g.init(g.fresh("scales"), [1.0, 1.0, 2.0, 2.0])], mode="nearest")
    halves = g.multi("Split", [h], 2, axis=1, split=[8, 8])
    h = g.concat([g.relu(g.conv(half, 8, 8)) for half in halves])
    return g.build(
        "old_style",
        {"y": (g.conv(h, 16, 8), [1, 8, 16, 16])},
        inputs=[tensor("x", [1, 3, 8, 8])],
        opset=9,
        ir_version=4,
        inits_as_inputs=True,
    )


def dynamic() -> onnx.ModelProto:
    """The ``conv_chain`` graph with symbolic batch and spatial dims.

    Exercises pruning without concrete shapes.
    x [N,3,H,W] -> y [N,8,H,W].
    """
    g = _Graph(14)
    return g.build(
        "dynamic",
        {"y": (_chain_body(g, "x"), ["N", 8, "H", "W"])},
        inputs=[tensor("x", ["N", 3, "H", "W"])],
    )


def control_flow() -> onnx.ModelProto:
    """Conv -> If (both branches Relu an outer-scope tensor) -> conv, beside a plain chain.

    The If condition is a bool initializer (True).

    Exercises subgraph uses of an outer-scope tensor: a conv whose output is
    read inside an If body must either be left alone or have its uses in the
    subgraph tracked; the separate conv chain stays prunable.
    x [1,3,16,16] -> y [1,8,16,16], y_chain [1,8,16,16].
    """
    g = _Graph(15)
    c = g.conv("x", 3, 16)
    shape = [1, 16, 16, 16]
    cond = g.init("cond", True, np.bool_)
    branched = g.op(
        "If",
        [cond],
        then_branch=_relu_branch("then", c, shape),
        else_branch=_relu_branch("else", c, shape),
    )
    y = g.conv(branched, 16, 8)
    y_chain = g.conv(g.relu(g.conv("x", 3, 16)), 16, 8)
    return g.build("control_flow", {"y": (y, [1, 8, 16, 16]), "y_chain": (y_chain, [1, 8, 16, 16])})


def slice_ops() -> onnx.ModelProto:
    """Conv -> Slice channels [4:12] -> conv, then a GAP -> Squeeze -> Sigmoid -> Unsqueeze gate.

    Exercises Slice along the channel axis (starts/ends/axes are inputs that
    must be rewritten) and axis bookkeeping through Squeeze/Unsqueeze
    (axes [2, 3] as inputs) before a broadcast Mul with the features.
    x [1,3,16,16] -> y [1,8,16,16].
    """
    g = _Graph(16)
    h = g.relu(g.conv("x", 3, 16))
    h = g.op("Slice", [h, g.ints([4], "starts"), g.ints([12], "ends"), g.ints([1], "axes")])
    f = g.relu(g.conv(h, 8, 16))
    squeezed = g.op("Squeeze", [g.op("GlobalAveragePool", [f]), g.ints([2, 3], "axes")])
    gate = g.op("Unsqueeze", [g.op("Sigmoid", [squeezed]), g.ints([2, 3], "axes")])
    return g.build("slice_ops", {"y": (g.conv(g.op("Mul", [f, gate]), 16, 8), [1, 8, 16, 16])})


def single_conv(
    cin: int = 64, cout: int = 128, hw: int = 28, head: int = 8, head_k: int = 1
) -> onnx.ModelProto:
    """The staircase probe: 3x3 conv cin->cout at hw x hw, Relu, head_k conv cout->head.

    The 3x3 conv's output channels are the one prunable group; its latency over the width is
    the staircase the profiler must find (the head conv is the consumer side).
    x [1,cin,hw,hw] -> y [1,head,hw,hw].
    """
    g = _Graph(7)
    y = g.conv(g.relu(g.conv("x", cin, cout)), cout, head, k=head_k)
    return g.build("single_conv", {"y": (y, [1, head, hw, hw])}, inputs=[tensor("x", [1, cin, hw, hw])])


BUILDERS: dict[str, Callable[[], onnx.ModelProto]] = {
    builder.__name__: builder
    for builder in (
        conv_chain,
        residual,
        concat,
        depthwise_se,
        flatten_gemm,
        reshape_matmul,
        yolo_neck,
        nhwc,
        mlp,
        convtranspose,
        misc_ops,
        grouped,
        old_style,
        dynamic,
        control_flow,
        slice_ops,
        single_conv,
    )
}


def all_models() -> dict[str, onnx.ModelProto]:
    """Build every registered model (fresh protos each call)."""
    return {name: build() for name, build in BUILDERS.items()}
