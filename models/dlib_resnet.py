"""Read dlib's face-descriptor ResNet (``dlib_face_recognition_resnet_model_v1.dat``)
and rebuild it as an OpenVINO model, with nothing but numpy and openvino.

The file format
===============
The ``.dat`` file is the network object written by dlib's ``serialize()``
(``dlib/serialize.h``, ``dlib/dnn/core.h``, ``dlib/dnn/layers.h``,
``dlib/dnn/input.h``, ``dlib/dnn/tensor.h``). Its building blocks:

* **integer**: one control byte (bit 0x80 = negative, low 4 bits = number of
  bytes that follow), then the absolute value, little-endian. ``0`` is just
  the byte ``0x00``.
* **float / double**: dlib's portable ``float_details``: an integer mantissa
  then an integer exponent, both in the integer encoding above;
  value = mantissa * 2**exponent (exponents 32000/32001/32002 mean +inf/-inf/NaN).
* **bool**: the ASCII byte ``'1'`` or ``'0'``.
* **string**: an integer length, then the bytes.
* **tensor** (``resizable_tensor``): integer version (2), integers
  num_samples, k, nr, nc, then num_samples*k*nr*nc raw little-endian float32.
* **alias_tensor** (a shape only): version (1), num_samples, k, nr, nc.

A network is a nest of C++ objects, the loss layer outermost. Each object
writes its version number and then *its subnetwork first*, before its own
details. So the file starts with a run of version numbers (loss layer, then one
per layer, outermost to innermost), then the input layer, and then the layer
details in **input-to-output order**:

* ``add_loss_layer``: version 1, loss details (``"loss_metric_2"``, margin,
  distance threshold), subnetwork.
* ``add_layer`` (a computational layer): version 2, subnetwork, details, three
  bools, tensors ``x_grad``, ``cached_output``, ``params_grad``.
* the ``add_layer`` right on top of the input: version 2 or 3, the input layer,
  details, three bools, tensors ``x_grad``, ``cached_output``, ``grad_final``,
  and (version 3) an integer ``sample_expansion_factor``.
* ``add_tag_layer`` and ``add_skip_layer``: version 1, subnetwork. Nothing else:
  **the file does not say which one it is, nor its tag number.** Those live only
  in the C++ type. We therefore check the file against the network type from
  dlib's ``examples/dnn_face_recognition_ex.cpp`` (``FACE_RESNET_V1`` below)
  and take the tags and skips from there.

Layer details (each starts with a name string that doubles as its version):

=====================  =====================================================
``input_rgb_image_sized``  avg_red, avg_green, avg_blue (float), NR, NC
``con_4``              params tensor, num_filters, nr, nc, stride_y, stride_x,
                       padding_y, padding_x, filters/biases alias tensors,
                       4 doubles (learning-rate/weight-decay multipliers).
                       params = filters (num_filters, k, nr, nc) then biases.
``affine_``            params tensor (gamma then beta, one per channel: the
                       batch norm already folded in), gamma/beta alias
                       tensors, int mode (0 = per channel)
``relu_``              nothing
``add_prev_``          nothing
``max_pool_2`` / ``avg_pool_2``  nr, nc, stride_y, stride_x, padding_y,
                       padding_x (nr = nc = 0 means "the whole image")
``fc_2``               num_outputs, num_inputs, params tensor
                       (num_inputs x num_outputs, row-major), weights/biases
                       alias tensors, int bias mode (1 = no bias), 4 doubles
=====================  =====================================================

The mapping to OpenVINO
=======================
* input: NHWC float 0..255 RGB -> transpose to NCHW, ``(x - avg) / 256``
  (dlib's ``input_rgb_image_sized::to_tensor``).
* ``con``: Convolution (OIHW weights, explicit padding) + bias.
* ``affine``: x * gamma[c] + beta[c].
* ``add_prev<tagN>``: adds the output of the nearest ``tagN`` below. dlib's
  ``tt::add`` accepts tensors of different sizes: the result has the larger
  size and missing values count as zero, aligned at the top-left. That happens
  in every down-sampling block of this network (channels 32 + 64 etc., and
  sizes 4x4 + 3x3 and 2x2 + 1x1 in the last two), so the smaller operand is
  zero-padded at the end of C, H and W before the Add.
* ``skip<tagN>``: continue from the output of the nearest ``tagN`` below.
* pooling: dlib's output size is ``1 + (n + 2*pad - window) // stride``, the
  same as OpenVINO's floor rounding; windows never touch padding here.
* ``avg_pool_everything``: mean over H and W. ``fc_no_bias``: flatten (C,H,W)
  and MatMul. ``loss_metric``: passes the 128-d output through unchanged.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from lookout.errors import ModelError

CHIP_SIZE = 150
DESCRIPTOR_SIZE = 128

# ----------------------------------------------------------------------------
# Parsed layers (input-to-output order)
# ----------------------------------------------------------------------------


@dataclass
class InputRGB:
    """dlib ``input_rgb_image[_sized]``: (pixel - avg) / 256, per channel."""

    avg_rgb: tuple[float, float, float]
    nr: int
    nc: int


@dataclass
class Conv:
    """dlib ``con_``: weights are OIHW, as stored."""

    weights: np.ndarray
    bias: np.ndarray
    stride: tuple[int, int]
    padding: tuple[int, int]

    @property
    def num_filters(self) -> int:
        return int(self.weights.shape[0])


@dataclass
class Affine:
    """dlib ``affine_`` in per-channel mode: x * gamma[c] + beta[c]."""

    gamma: np.ndarray
    beta: np.ndarray


@dataclass
class Relu:
    pass


@dataclass
class Pool:
    """dlib ``max_pool_`` / ``avg_pool_``; window (0, 0) = the whole image."""

    kind: str  # "max" or "avg"
    window: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass
class FcNoBias:
    """dlib ``fc_`` without bias: y = x @ weights, weights (inputs, outputs)."""

    weights: np.ndarray


@dataclass
class AddPrev:
    """dlib ``add_prev_<tagN>``: output + output of the nearest tagN below."""

    tag: int = 0  # filled in from the architecture


@dataclass
class Tag:
    """dlib ``add_tag_layer<N>``: names its input for a later add_prev/skip."""

    tag: int = 0


@dataclass
class Skip:
    """dlib ``add_skip_layer<tagN>``: continue from the nearest tagN below."""

    tag: int = 0


@dataclass
class TagOrSkip:
    """A tag or skip layer as found in the file (the file cannot tell which)."""


Layer = Conv | Affine | Relu | Pool | FcNoBias | AddPrev | Tag | Skip | TagOrSkip


@dataclass
class LossMetric:
    margin: float
    distance_threshold: float


@dataclass
class DlibNet:
    """A parsed dlib network: input layer, layers input-to-output, loss."""

    path: pathlib.Path
    input: InputRGB
    layers: list[Layer] = field(default_factory=list)
    loss: LossMetric | None = None


# ----------------------------------------------------------------------------
# The architecture, as dlib's C++ type (examples/dnn_face_recognition_ex.cpp)
# ----------------------------------------------------------------------------
# Each entry is (kind, argument) in input-to-output order. Kinds match the
# layer classes above; the argument is the filter count for "con" and the tag
# number for "tag"/"skip"/"add_prev".


def _block(n: int, stride: int) -> list[tuple[str, int]]:
    """block<N,BN,stride> = BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride>>>>>."""
    return [("con", n), ("affine", 0), ("relu", 0), ("con", n), ("affine", 0)]


def _ares(n: int) -> list[tuple[str, int]]:
    """relu<add_prev1<block<N,affine,1,tag1<SUBNET>>>>."""
    return [("tag", 1), *_block(n, 1), ("add_prev", 1), ("relu", 0)]


def _ares_down(n: int) -> list[tuple[str, int]]:
    """relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<SUBNET>>>>>>>."""
    return [("tag", 1), *_block(n, 2), ("tag", 2), ("skip", 1), ("avg_pool", 0), ("add_prev", 2), ("relu", 0)]


FACE_RESNET_V1: list[tuple[str, int]] = [
    ("con", 32),
    ("affine", 0),
    ("relu", 0),
    ("max_pool", 0),
    *_ares(32),
    *_ares(32),
    *_ares(32),  # alevel4
    *_ares_down(64),
    *_ares(64),
    *_ares(64),
    *_ares(64),  # alevel3
    *_ares_down(128),
    *_ares(128),
    *_ares(128),  # alevel2
    *_ares_down(256),
    *_ares(256),
    *_ares(256),  # alevel1
    *_ares_down(256),  # alevel0
    ("avg_pool", 0),
    ("fc", DESCRIPTOR_SIZE),
]


def _kind(layer: Layer) -> str:
    if isinstance(layer, Pool):
        return f"{layer.kind}_pool"
    return {Conv: "con", Affine: "affine", Relu: "relu", FcNoBias: "fc", AddPrev: "add_prev", TagOrSkip: "tag_or_skip"}[
        type(layer)
    ]


# ----------------------------------------------------------------------------
# Low-level reader for dlib's serialisation primitives
# ----------------------------------------------------------------------------


class _Reader:
    """Reads dlib serialisation primitives from a byte buffer."""

    def __init__(self, data: bytes, path: pathlib.Path) -> None:
        self.data = data
        self.pos = 0
        self.path = path

    def fail(self, reason: str) -> ModelError:
        return ModelError(
            f"{self.path}: not a readable dlib network: {reason} (at byte {self.pos} of {len(self.data)})"
        )

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail(f"file is truncated while reading {what}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def integer(self, what: str = "an integer") -> int:
        control = self.take(1, what)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise self.fail(f"bad integer control byte 0x{control:02x} in {what}")
        value = int.from_bytes(self.take(size, what), "little") if size else 0
        return -value if control & 0x80 else value

    def real(self, what: str = "a float") -> float:
        mantissa = self.integer(what)
        exponent = self.integer(what)
        special = {32000: float("inf"), 32001: float("-inf"), 32002: float("nan")}
        if exponent in special:
            return special[exponent]
        try:
            return math.ldexp(float(mantissa), exponent)
        except OverflowError:
            return math.copysign(math.inf, mantissa)

    def boolean(self, what: str = "a bool") -> bool:
        byte = self.take(1, what)
        if byte not in (b"0", b"1"):
            raise self.fail(f"bad bool byte {byte!r} in {what}")
        return byte == b"1"

    def string(self, what: str = "a string") -> str:
        length = self.integer(what)
        if length < 0 or length > 1 << 20:
            raise self.fail(f"implausible string length {length} in {what}")
        return self.take(length, what).decode("latin-1")

    def peek_name(self) -> str | None:
        """The layer name string that starts here, if one does; doesn't move."""
        start = self.pos
        try:
            name = self.string()
        except ModelError:
            return None
        finally:
            self.pos = start
        return name if name in _DETAIL_READERS or name in _INPUT_NAMES else None

    def tensor(self, what: str) -> np.ndarray:
        """A resizable_tensor, returned with shape (num_samples, k, nr, nc)."""
        version = self.integer(what)
        if version != 2:
            raise self.fail(f"unsupported tensor version {version} in {what}")
        shape = tuple(self.integer(what) for _ in range(4))
        if any(d < 0 for d in shape):
            raise self.fail(f"negative tensor dimension {shape} in {what}")
        count = math.prod(shape)
        raw = self.take(4 * count, what)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias_tensor(self, what: str) -> tuple[int, int, int, int]:
        version = self.integer(what)
        if version != 1:
            raise self.fail(f"unsupported alias_tensor version {version} in {what}")
        n, k, nr, nc = (self.integer(what) for _ in range(4))
        return n, k, nr, nc


# ----------------------------------------------------------------------------
# Layer detail readers, one per dlib layer name
# ----------------------------------------------------------------------------

_INPUT_NAMES = ("input_rgb_image_sized", "input_rgb_image")


def _read_input(r: _Reader, name: str) -> InputRGB:
    avg = (r.real("avg_red"), r.real("avg_green"), r.real("avg_blue"))
    if name == "input_rgb_image_sized":
        nr, nc = r.integer("input NR"), r.integer("input NC")
    else:
        nr = nc = CHIP_SIZE
    return InputRGB(avg_rgb=avg, nr=nr, nc=nc)


def _read_con(r: _Reader) -> Conv:
    params = r.tensor("con params").reshape(-1)
    num_filters, nr, nc = (r.integer("con shape") for _ in range(3))
    stride = (r.integer("con stride_y"), r.integer("con stride_x"))
    padding = (r.integer("con padding_y"), r.integer("con padding_x"))
    _, k, fnr, fnc = r.alias_tensor("con filters")
    r.alias_tensor("con biases")
    for _ in range(4):
        r.real("con multipliers")
    n_weights = num_filters * k * nr * nc
    if (fnr, fnc) != (nr, nc) or params.size != n_weights + num_filters:
        raise r.fail(f"con params size {params.size} does not match {num_filters}x{k}x{nr}x{nc} filters + biases")
    weights = params[:n_weights].reshape(num_filters, k, nr, nc)
    return Conv(weights=weights, bias=params[n_weights:].copy(), stride=stride, padding=padding)


def _read_affine(r: _Reader) -> Affine:
    params = r.tensor("affine params").reshape(-1)
    gamma_shape = r.alias_tensor("affine gamma")
    r.alias_tensor("affine beta")
    mode = r.integer("affine mode")
    if mode != 0 or gamma_shape[2:] != (1, 1):
        raise r.fail("only per-channel (CONV_MODE) affine layers are supported")
    half = params.size // 2
    return Affine(gamma=params[:half].copy(), beta=params[half:].copy())


def _read_pool(kind: str) -> Callable[[_Reader], Pool]:
    def read(r: _Reader) -> Pool:
        window = (r.integer("pool nr"), r.integer("pool nc"))
        stride = (r.integer("pool stride_y"), r.integer("pool stride_x"))
        padding = (r.integer("pool padding_y"), r.integer("pool padding_x"))
        return Pool(kind=kind, window=window, stride=stride, padding=padding)

    return read


def _read_fc(r: _Reader) -> FcNoBias:
    num_outputs, num_inputs = r.integer("fc outputs"), r.integer("fc inputs")
    params = r.tensor("fc params").reshape(-1)
    r.alias_tensor("fc weights")
    r.alias_tensor("fc biases")
    bias_mode = r.integer("fc bias mode")
    for _ in range(4):
        r.real("fc multipliers")
    if bias_mode != 1:
        raise r.fail("only fc_no_bias layers are supported")
    if params.size != num_inputs * num_outputs:
        raise r.fail(f"fc params size {params.size} != {num_inputs}x{num_outputs}")
    return FcNoBias(weights=params.reshape(num_inputs, num_outputs).copy())


_DETAIL_READERS: dict[str, Callable[[_Reader], Layer]] = {
    "con_4": _read_con,
    "affine_": _read_affine,
    "relu_": lambda r: Relu(),
    "add_prev_": lambda r: AddPrev(),
    "max_pool_2": _read_pool("max"),
    "avg_pool_2": _read_pool("avg"),
    "fc_2": _read_fc,
}


def _read_details(r: _Reader) -> Layer:
    name = r.string("a layer name")
    reader = _DETAIL_READERS.get(name)
    if reader is None:
        raise r.fail(f"unsupported layer type {name!r}")
    return reader(r)


def _read_add_layer_state(r: _Reader, first: bool, version: int) -> None:
    """The bookkeeping an add_layer writes after its details (unused here)."""
    for _ in range(3):
        r.boolean("add_layer flags")
    r.tensor("x_grad")
    r.tensor("cached_output")
    r.tensor("grad_final" if first else "params_grad")
    if first and version >= 3:
        r.integer("sample_expansion_factor")


# ----------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------

_ADD_LAYER_VERSION = 2  # add_layer on top of another layer
_FIRST_LAYER_VERSIONS = (2, 3)  # add_layer on top of the input layer
_TAG_OR_SKIP_VERSION = 1


def _read_loss(r: _Reader) -> LossMetric:
    version = r.integer("loss layer version")
    if version != 1:
        raise r.fail(f"unsupported add_loss_layer version {version}")
    name = r.string("loss name")
    if name != "loss_metric_2":
        raise r.fail(f"unsupported loss layer {name!r} (expected loss_metric_2)")
    return LossMetric(margin=r.real("margin"), distance_threshold=r.real("threshold"))


def _read_layers(r: _Reader) -> tuple[InputRGB, list[Layer]]:
    """Reads the nest of layers; returns them input-to-output."""
    versions: list[int] = []  # outermost first
    while r.peek_name() is None:
        versions.append(r.integer("a layer version"))
        if len(versions) > 10_000:
            raise r.fail("no input layer found")
    if not versions or versions[-1] not in _FIRST_LAYER_VERSIONS:
        raise r.fail("the layer above the input is not a computational layer")
    input_name = r.string("input layer name")
    if input_name not in _INPUT_NAMES:
        raise r.fail(f"unsupported input layer {input_name!r}")
    net_input = _read_input(r, input_name)

    layers: list[Layer] = []
    for depth, version in enumerate(reversed(versions)):
        first = depth == 0
        if not first and version == _TAG_OR_SKIP_VERSION:
            layers.append(TagOrSkip())
        elif first or version == _ADD_LAYER_VERSION:
            layers.append(_read_details(r))
            _read_add_layer_state(r, first, version)
        else:
            raise r.fail(f"unsupported layer wrapper version {version}")
    return net_input, layers


def _apply_architecture(r: _Reader, layers: list[Layer]) -> None:
    """Checks the layers against FACE_RESNET_V1 and fills in tags and skips."""
    found = [_kind(layer) for layer in layers]
    expected = [k if k not in ("tag", "skip") else "tag_or_skip" for k, _ in FACE_RESNET_V1]
    if found != expected:
        bad = next((i for i, (a, b) in enumerate(zip(found, expected)) if a != b), min(len(found), len(expected)))
        raise r.fail(
            f"layer {bad} is {found[bad] if bad < len(found) else 'missing'}, "
            f"expected {expected[bad] if bad < len(expected) else 'nothing'}: "
            "not dlib's face recognition ResNet v1"
        )
    for i, (kind, arg) in enumerate(FACE_RESNET_V1):
        layer = layers[i]
        if kind == "tag":
            layers[i] = Tag(arg)
        elif kind == "skip":
            layers[i] = Skip(arg)
        elif kind == "add_prev":
            layer.tag = arg  # type: ignore[union-attr]
        elif kind in ("con", "fc"):
            outputs = layer.num_filters if isinstance(layer, Conv) else layer.weights.shape[1]  # type: ignore[union-attr]  # fc layers are FcNoBias
            if outputs != arg:
                raise r.fail(f"layer {i} ({kind}) has {outputs} outputs, expected {arg}")


def read_dlib_net(path: pathlib.Path) -> DlibNet:
    """Parses a dlib face recognition ResNet ``.dat`` file.

    Raises ModelError naming the file if it is missing, truncated, garbled or
    not the expected network.
    """
    path = pathlib.Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ModelError(f"{path}: cannot read dlib network: {err.strerror}") from err
    r = _Reader(data, path)
    loss = _read_loss(r)
    net_input, layers = _read_layers(r)
    if r.pos != len(data):
        raise r.fail(f"{len(data) - r.pos} unexpected bytes after the network")
    _apply_architecture(r, layers)
    return DlibNet(path=path, input=net_input, layers=layers, loss=loss)


# ----------------------------------------------------------------------------
# OpenVINO graph
# ----------------------------------------------------------------------------


@dataclass
class _Value:
    """A graph value and its static (C, H, W) shape; batch is dynamic."""

    node: ov.Output
    chw: tuple[int, int, int]


def _const(array: np.ndarray | list[float]) -> ov.Node:
    return ops.constant(np.asarray(array, dtype=np.float32))


def _pool_out(n: int, window: int, stride: int, pad: int) -> int:
    return 1 + (n + 2 * pad - window) // stride


def _conv(x: _Value, layer: Conv) -> _Value:
    pad = list(layer.padding)
    node = ops.convolution(x.node, _const(layer.weights), list(layer.stride), pad, pad, [1, 1])
    node = ops.add(node, _const(layer.bias.reshape(1, -1, 1, 1)))
    _, h, w = x.chw
    kh, kw = layer.weights.shape[2:]
    chw = (layer.num_filters, _pool_out(h, kh, layer.stride[0], pad[0]), _pool_out(w, kw, layer.stride[1], pad[1]))
    return _Value(node.output(0), chw)


def _affine(x: _Value, layer: Affine) -> _Value:
    node = ops.multiply(x.node, _const(layer.gamma.reshape(1, -1, 1, 1)))
    node = ops.add(node, _const(layer.beta.reshape(1, -1, 1, 1)))
    return _Value(node.output(0), x.chw)


def _pool(x: _Value, layer: Pool) -> _Value:
    c, h, w = x.chw
    if layer.window == (0, 0):  # pool "everything"
        if layer.kind != "avg":
            raise ModelError("max_pool_everything is not supported")
        node = ops.reduce_mean(x.node, ops.constant(np.array([2, 3], np.int64)), True)
        return _Value(node.output(0), (c, 1, 1))
    kernel, strides, pad = list(layer.window), list(layer.stride), list(layer.padding)
    if layer.kind == "max":
        node = ops.max_pool(x.node, strides, [1, 1], pad, pad, kernel).output(0)
    else:
        node = ops.avg_pool(x.node, strides, pad, pad, kernel, exclude_pad=True).output(0)
    chw = (c, _pool_out(h, kernel[0], strides[0], pad[0]), _pool_out(w, kernel[1], strides[1], pad[1]))
    return _Value(node, chw)


def _pad_to(x: _Value, chw: tuple[int, int, int]) -> ov.Output:
    """Zero-pads x at the end of C, H, W up to chw (dlib's tt::add semantics)."""
    if x.chw == chw:
        return x.node
    ends = np.array([0, *(t - s for t, s in zip(chw, x.chw))], np.int64)
    begins = np.zeros(4, np.int64)
    return ops.pad(x.node, ops.constant(begins), ops.constant(ends), "constant", ops.constant(np.float32(0))).output(0)


def _add_prev(x: _Value, other: _Value) -> _Value:
    chw = tuple(max(a, b) for a, b in zip(x.chw, other.chw))
    node = ops.add(_pad_to(x, chw), _pad_to(other, chw))  # type: ignore[arg-type]
    return _Value(node.output(0), chw)  # type: ignore[arg-type]


def _fc(x: _Value, layer: FcNoBias) -> _Value:
    flat = ops.reshape(x.node, ops.constant(np.array([0, -1], np.int64)), True)
    node = ops.matmul(flat, _const(layer.weights), False, False)
    return _Value(node.output(0), (layer.weights.shape[1], 1, 1))


def _input(net_input: InputRGB) -> tuple[ov.Node, _Value]:
    """NHWC 0..255 RGB -> NCHW (x - avg) / 256, as dlib's to_tensor()."""
    chips = ops.parameter([-1, net_input.nr, net_input.nc, 3], ov.Type.f32, name="chips")
    chips.output(0).get_tensor().set_names({"chips"})
    nchw = ops.transpose(chips, ops.constant(np.array([0, 3, 1, 2], np.int64)))
    centred = ops.subtract(nchw, _const(np.reshape(net_input.avg_rgb, (1, 3, 1, 1))))
    scaled = ops.multiply(centred, _const([1.0 / 256.0]))  # exact: a power of two
    return chips, _Value(scaled.output(0), (3, net_input.nr, net_input.nc))


def build_dlib_resnet(path: pathlib.Path) -> ov.Model:
    """Builds the OpenVINO model for dlib's face descriptor network.

    Input "chips": [-1, 150, 150, 3] f32, RGB values 0..255, NHWC (aligned
    150x150 face chips, as dlib.get_face_chip(img, shape, 150, 0.25) makes).
    Output "descriptor": [-1, 128] f32, dlib's raw (not normalised) descriptor.
    """
    net = read_dlib_net(path)
    chips, x = _input(net.input)
    tags: dict[int, _Value] = {}
    for layer in net.layers:
        if isinstance(layer, Conv):
            x = _conv(x, layer)
        elif isinstance(layer, Affine):
            x = _affine(x, layer)
        elif isinstance(layer, Relu):
            x = _Value(ops.relu(x.node).output(0), x.chw)
        elif isinstance(layer, Pool):
            x = _pool(x, layer)
        elif isinstance(layer, Tag):
            tags[layer.tag] = x
        elif isinstance(layer, Skip):
            x = tags[layer.tag]
        elif isinstance(layer, AddPrev):
            x = _add_prev(x, tags[layer.tag])
        elif isinstance(layer, FcNoBias):
            x = _fc(x, layer)
        else:
            raise ModelError(f"{path}: unhandled layer {layer!r}")
    descriptor = ops.result(x.node)
    x.node.get_tensor().set_names({"descriptor"})
    return ov.Model([descriptor], [chips], "dlib_face_recognition_resnet_model_v1")
