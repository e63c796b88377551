"""Turn each source model file into an OpenVINO model with its pre- and post-processing inside.

Every detector takes BGR uint8 NHWC frames at its input size; every embedder
takes RGB uint8 NHWC aligned chips (any batch) and returns L2-normalised
float32 vectors. Callers never normalise pixels or vectors themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops
from openvino.frontend import ConversionExtension, NodeContext
from openvino.preprocess import ColorFormat, PrePostProcessor

from lookout.errors import ModelError
from lookout.model_store.catalog import ModelSpec
from lookout.models.dlib_resnet import build_dlib_resnet


def blazeface(src: Path, spec: ModelSpec) -> ov.Model:
    """TFLite BlazeFace, fed BGR uint8; colour conversion and scaling to [-1, 1] in-model."""
    model = ov.Core().read_model(str(src))
    ppp = PrePostProcessor(model)
    inp = ppp.input()
    inp.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(ColorFormat.BGR)
    inp.model().set_layout(ov.Layout("NHWC"))
    inp.preprocess().convert_element_type(ov.Type.f32).convert_color(ColorFormat.RGB).mean(127.5).scale(127.5)
    model = ppp.build()
    regressors, scores = _blazeface_outputs(model)
    regressors.get_tensor().set_names({"regressors"})
    scores.get_tensor().set_names({"scores"})
    return model


def _blazeface_outputs(model: ov.Model) -> tuple[ov.Output, ov.Output]:
    """Return (regressors [1,N,16], scores [1,N,1]) whatever the TFLite tensor names are."""
    by_width = {o.get_partial_shape()[2].get_length(): o for o in model.outputs}
    return by_width[16], by_width[1]


def facenet(src: Path, spec: ModelSpec) -> ov.Model:
    """FaceNet frozen graph with per-image prewhitening in front and L2 normalisation behind."""
    inner = ov.convert_model(str(src), input=[-1, spec.input_size[1], spec.input_size[0], 3])
    _free_batch_dimension(inner)
    chips = ops.parameter(ov.PartialShape([-1, spec.input_size[1], spec.input_size[0], 3]), ov.Type.u8, name="chips")
    x = ops.convert(chips, ov.Type.f32)
    axes = ops.constant(np.array([1, 2, 3], dtype=np.int64))
    mean = ops.reduce_mean(x, axes, keep_dims=True)
    centred = ops.subtract(x, mean)
    std = ops.sqrt(ops.reduce_mean(ops.multiply(centred, centred), axes, keep_dims=True))
    floor = float(1.0 / np.sqrt(spec.input_size[0] * spec.input_size[1] * 3))
    whitened = ops.divide(centred, ops.maximum(std, ops.constant(np.float32(floor))))
    embedding = _inline(inner, whitened)
    return _with_l2_output(chips, embedding)


def _free_batch_dimension(model: ov.Model) -> None:
    """The frozen graph reshapes to a literal [1, 512] after its batch norm; make that [-1, 512].

    Without this the model only runs at batch 1. A reshape pattern that is a
    constant starting with 1 and holding no -1 gets its leading 1 made -1.
    """
    for node in model.get_ordered_ops():
        if node.get_type_name() != "Reshape":
            continue
        pattern = node.input_value(1).get_node()
        if pattern.get_type_name() != "Constant":
            continue
        values = pattern.get_vector()
        if len(values) > 1 and values[0] == 1 and -1 not in values:
            free = ops.constant(np.array([-1, *values[1:]], dtype=values.dtype))
            node.input(1).replace_source_output(free.output(0))
    model.validate_nodes_and_infer_types()


def dlib_resnet(src: Path, spec: ModelSpec) -> ov.Model:
    """dlib's ResNet read from its .dat file; input normalisation is inside the built network."""

    inner = build_dlib_resnet(src)
    chips = ops.parameter(ov.PartialShape([-1, spec.input_size[1], spec.input_size[0], 3]), ov.Type.u8, name="chips")
    descriptor = _inline(inner, ops.convert(chips, ov.Type.f32))
    return _with_l2_output(chips, descriptor)


def omz_reid(src: Path, spec: ModelSpec) -> ov.Model:
    """Intel's face-reidentification IR (input ``0``: 1x3x128x128 BGR float 0..255, output 1x256x1x1)
    behind our contract: RGB uint8 NHWC chips of any batch in, unit vectors out.

    The channel flip, the float conversion and the NHWC->NCHW transpose are graph
    ops in front of Intel's network; its 256x1x1 output is flattened and L2-normalised.
    """
    inner = ov.Core().read_model(str(src))
    width, height = spec.input_size
    inner.reshape({inner.inputs[0]: ov.PartialShape([-1, 3, height, width])})
    chips = ops.parameter(ov.PartialShape([-1, height, width, 3]), ov.Type.u8, name="chips")
    bgr = ops.gather(chips, ops.constant(np.array([2, 1, 0], np.int64)), ops.constant(np.int64(3)))
    nchw = ops.transpose(ops.convert(bgr, ov.Type.f32), ops.constant(np.array([0, 3, 1, 2], np.int64)))
    descriptor = _inline(inner, nchw)
    flat = ops.reshape(descriptor, ops.constant(np.array([-1, spec.output_dim], np.int64)), special_zero=False)
    return _with_l2_output(chips, flat.output(0))


def sface(src: Path, spec: ModelSpec) -> ov.Model:
    """OpenCV Zoo's SFace ONNX (input ``data``: 1x3x112x112 RGB float 0..255, its own ``(x - 127.5) / 128``
    inside; output ``fc1``: 1x128) behind our contract: RGB uint8 NHWC chips of any batch in, unit vectors out.

    Its weights are stored as INT8 in blocks (ONNX ``DequantizeLinear`` with ``block_size``), which
    OpenVINO's ONNX reader refuses. Every such node dequantises a constant, so the reader is handed one that
    folds it to float32 in numpy: the network then computes exactly what OpenCV's own runtime computes from
    the file. The export also lists every weight as a graph input; only ``data`` feeds anything.
    """
    core = ov.Core()
    core.add_extension(ConversionExtension("DequantizeLinear", _dequantize_constant))
    read = core.read_model(str(src))
    data = next((p for p in read.get_parameters() if "data" in p.output(0).get_names()), None)
    if data is None:
        raise ModelError(f"{src}: no input named 'data' (not OpenCV Zoo's SFace export)")
    width, height = spec.input_size
    inner = ov.Model(read.outputs, [data], "sface")
    inner.reshape({inner.inputs[0]: ov.PartialShape([-1, 3, height, width])})
    chips = ops.parameter(ov.PartialShape([-1, height, width, 3]), ov.Type.u8, name="chips")
    nchw = ops.transpose(ops.convert(chips, ov.Type.f32), ops.constant(np.array([0, 3, 1, 2], np.int64)))
    return _with_l2_output(chips, _inline(inner, nchw))


def _dequantize_constant(node: NodeContext) -> list[ov.Output]:
    """ONNX DequantizeLinear (per tensor, per axis or in blocks along ``axis``) of constant inputs, as one
    float32 constant: ``(x - zero_point) * scale``, each scale repeated over its block."""
    inputs = [node.get_input(i).get_node() for i in range(node.get_input_size())]
    if any(n.get_type_name() != "Constant" for n in inputs):
        raise ModelError("DequantizeLinear of a computed tensor: only quantised weights are supported")
    x = inputs[0].get_data().astype(np.float32)
    scale = inputs[1].get_data().astype(np.float32)
    zero = inputs[2].get_data().astype(np.float32) if len(inputs) > 2 else np.zeros_like(scale)
    if scale.ndim == 0:
        return [ops.constant(((x - zero) * scale).astype(np.float32)).output(0)]
    axis = int(node.get_attribute("axis", 1)) % x.ndim
    block = int(node.get_attribute("block_size", 0)) or 1
    if scale.ndim == 1 and x.ndim > 1:  # per axis: one scale per slice along ``axis``
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    else:  # in blocks: scale has ceil(n / block) entries along ``axis``
        keep = tuple(slice(0, n) for n in x.shape)
        scale = np.repeat(scale, block, axis=axis)[keep]
        zero = np.repeat(zero, block, axis=axis)[keep]
    return [ops.constant(((x - zero) * scale).astype(np.float32)).output(0)]


def _inline(inner: ov.Model, value: ov.Output) -> ov.Output:
    """Feed ``value`` into ``inner``'s only input and return its only output (graphs are spliced)."""
    param = inner.get_parameters()[0]
    for target in list(param.output(0).get_target_inputs()):
        target.replace_source_output(value.output(0) if hasattr(value, "output") else value)
    return inner.outputs[0].get_node().input_value(0)


def _with_l2_output(chips: ov.Node, vectors: ov.Output) -> ov.Model:
    normalised = ops.normalize_l2(vectors, ops.constant(np.array([1], dtype=np.int64)), eps=1e-10, eps_mode="max")
    result = ops.result(normalised)
    result.output(0).get_tensor().set_names({"embedding"})
    return ov.Model([result], [chips], "embedder")


CONVERTERS: dict[str, Callable[[Path, ModelSpec], ov.Model]] = {
    "blazeface": blazeface,
    "facenet": facenet,
    "dlib_resnet": dlib_resnet,
    "omz_reid": omz_reid,
    "sface": sface,
}
