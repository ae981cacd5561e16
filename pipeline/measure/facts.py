"""Model facts read from the files themselves: sizes on disk, parameters and MACs of an ONNX graph."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from ..errors import BenchmarkError
from ..files import file_kind


@dataclass
class OnnxFacts:
    """What the ONNX file says about a model."""

    input_name: str
    #: Input dims; None for a symbolic (dynamic) axis such as the batch.
    input_shape: list[int | None]
    num_outputs: int | None
    onnx_bytes: int
    #: Elements of the float initializers (BatchNorm folded into conv by the exporter).
    params: int
    #: Multiply-accumulates of Conv, Gemm and MatMul for a batch of one (Distiller's convention).
    macs: int
    opset: int


def load_onnx(path: Path) -> onnx.ModelProto:
    """Read and check an ONNX file, or a BenchmarkError naming the path and the fix."""
    path = Path(path)
    kind = file_kind(path)  # a FIFO or a device is named as such, never read (it blocks)
    if kind is not None and kind.startswith("missing"):
        raise BenchmarkError(f"{path}: no such model file: give the path of an existing .onnx file")
    if kind is not None:
        raise BenchmarkError(f"{path} is {kind}, not a model file: give the path of an existing .onnx file")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf DecodeError, ValidationError, ...: all mean "not a usable ONNX"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BenchmarkError(
            f"{path}: not a valid ONNX model ({reason[:120]}): export it again with "
            "pipeline.export.export_onnx or `edgeprune run`"
        ) from None
    if not model.graph.input:
        raise BenchmarkError(f"{path}: the ONNX graph has no input: export a model that takes images")
    return model


def _dims(value_info: onnx.ValueInfoProto) -> list[int | None]:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else None for d in dims]


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    initializers = {init.name for init in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def _infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    # ONNX's own inference loses shapes after the Pad of option-A shortcuts (pads computed in the
    # graph); ONNX Runtime's symbolic inference evaluates them.
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    try:
        return SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception:  # an op it does not know: fall back to ONNX's partial inference
        return shape_inference.infer_shapes(model, data_prop=True)


def _known(dims: list[int | None] | None) -> list[int] | None:
    """``dims`` when there are some and every one is known, else None."""
    if not dims or None in dims:
        return None
    return [d for d in dims if d is not None]


def count_onnx_macs(model: onnx.ModelProto) -> int:
    """MACs of Conv, Gemm and MatMul nodes for a batch of one, from inferred shapes."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for value in _graph_inputs(model):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1  # the batch axis is symbolic; MACs are per image
    inferred = _infer_shapes(model)
    shapes = {v.name: _dims(v) for v in (*inferred.graph.value_info, *inferred.graph.input,
                                          *inferred.graph.output)}
    shapes.update({i.name: list(i.dims) for i in inferred.graph.initializer})
    macs = 0
    for node in inferred.graph.node:
        if node.op_type == "Conv":
            # weight is (C_out, C_in / group, kh, kw): every output element costs C_in/g*kh*kw.
            out, weight = _known(shapes.get(node.output[0])), shapes.get(node.input[1])
            kernel = _known(weight[1:]) if weight else None
            if out and kernel:
                macs += int(np.prod(out)) * int(np.prod(kernel))
        elif node.op_type in ("Gemm", "MatMul"):
            a, out = _known(shapes.get(node.input[0])), _known(shapes.get(node.output[0]))
            if a and out:
                transposed = node.op_type == "Gemm" and any(
                    attr.name == "transA" and attr.i for attr in node.attribute)
                inner = a[-2] if transposed else a[-1]
                macs += int(np.prod(out)) * int(inner)
    return macs


def onnx_facts(path: Path) -> OnnxFacts:
    """Sizes, parameters, MACs and input signature of the ONNX file at ``path``."""
    model = load_onnx(path)
    inputs = _graph_inputs(model)
    if len(inputs) != 1:  # the engines feed one image tensor (set_input_tensor needs one input)
        names = ", ".join(repr(i.name) for i in inputs[:5])
        raise BenchmarkError(f"{path}: the model has {len(inputs)} inputs{' (' + names + ')' if names else ''}: "
                             "edgeprune measures image classifiers with one input tensor: export "
                             "the model with a single image input")
    graph_input = inputs[0]
    params = sum(
        int(np.prod(init.dims)) for init in model.graph.initializer
        if numpy_helper.helper.tensor_dtype_to_np_dtype(init.data_type).kind == "f"
    )
    output_dims = _dims(model.graph.output[0]) if model.graph.output else []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return OnnxFacts(
        input_name=graph_input.name,
        input_shape=_dims(graph_input),
        num_outputs=output_dims[-1] if output_dims else None,
        onnx_bytes=Path(path).stat().st_size,
        params=params,
        macs=count_onnx_macs(model),
        opset=opset,
    )


def ir_bytes(xml_path: Path) -> int:
    """Bytes on disk of an OpenVINO IR: the .xml plus its .bin."""
    xml_path = Path(xml_path)
    return xml_path.stat().st_size + xml_path.with_suffix(".bin").stat().st_size
