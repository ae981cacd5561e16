"""The layers a latency model prices: one ``LayerShape`` per convolution and fully connected layer.

Two extractors give the same list for the same network: ``shapes_of_module`` runs one forward
pass with hooks (a rapid trial that never exports), ``shapes_of_onnx`` reads an exported file
(BatchNorm is folded into the convolutions there, and a removed residual block is simply absent
in both). Only Conv and Linear/Gemm are listed: the elementwise work around them (ReLU, the
residual Add, BatchNorm before folding) scales with the convolutions' outputs, which the features
(features.py) already see.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import BenchmarkError


@dataclass(frozen=True)
class LayerShape:
    """One layer's geometry: what its cost depends on (kernel and stride are square: ``kh``)."""

    kind: str  # conv | linear
    in_ch: int
    out_ch: int
    kernel: int
    stride: int
    in_h: int
    in_w: int
    out_h: int
    out_w: int
    groups: int = 1

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one inference of this layer."""
        return (self.out_ch * (self.in_ch // self.groups) * self.kernel * self.kernel
                * self.out_h * self.out_w)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _first(value: Any) -> int:
    return int(value[0] if isinstance(value, (tuple, list)) else value)


def shapes_of_module(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> list[LayerShape]:
    """The Conv2d and Linear layers of ``model`` in execution order, from one forward pass."""
    shapes: list[LayerShape] = []

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        x = inputs[0]
        if isinstance(module, nn.Conv2d):
            shapes.append(LayerShape("conv", int(x.shape[1]), int(output.shape[1]),
                                     _first(module.kernel_size), _first(module.stride),
                                     int(x.shape[2]), int(x.shape[3]), int(output.shape[2]),
                                     int(output.shape[3]), int(module.groups)))
        else:
            shapes.append(LayerShape("linear", int(x.shape[-1]), int(output.shape[-1]), 1, 1,
                                     1, 1, 1, 1))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(input_shape, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return shapes


def _static_dims(type_proto: Any) -> list[int] | None:
    tensor = type_proto.tensor_type
    if not tensor.HasField("shape"):
        return None
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in tensor.shape.dim]
    return dims


def _attribute(node: Any, name: str, default: Any) -> Any:
    import onnx

    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def shapes_of_onnx(path: Path | str) -> list[LayerShape]:
    """The Conv and Gemm/MatMul nodes of an ONNX file in graph order, shapes by ONNX shape inference.

    A dynamic batch axis is fine (the batch is not part of a layer's shape); a dynamic image axis
    is a BenchmarkError.
    """
    import onnx

    path = Path(path)
    try:
        model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    except FileNotFoundError:
        raise BenchmarkError(f"{path}: no such file: pass the path of an exported .onnx model") from None
    except Exception as exc:  # onnx raises DecodeError, ValidationError... for a corrupt file
        raise BenchmarkError(f"{path}: not a readable ONNX model ({type(exc).__name__}): pass a "
                             "file written by `edgeprune run` or torch.onnx.export") from None
    graph = model.graph
    dims: dict[str, list[int]] = {i.name: list(i.dims) for i in graph.initializer}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        found = _static_dims(info.type)
        if found is not None:
            dims.setdefault(info.name, found)
    shapes: list[LayerShape] = []
    for node in graph.node:
        if node.op_type == "Conv":
            x, w, y = dims.get(node.input[0]), dims.get(node.input[1]), dims.get(node.output[0])
            if not (x and w and y) or 0 in x[1:] or 0 in y[1:]:
                raise BenchmarkError(f"{path}: Conv node {node.name!r} has no static shape: export "
                                     "the model with a fixed image size")
            groups = int(_attribute(node, "group", 1))
            strides = _attribute(node, "strides", [1, 1])
            shapes.append(LayerShape("conv", x[1], w[0], int(w[2]), int(strides[0]), x[2], x[3],
                                     y[2], y[3], groups))
        elif node.op_type in ("Gemm", "MatMul"):
            w = dims.get(node.input[1])
            if not w or len(w) != 2:
                continue
            transposed = node.op_type == "Gemm" and int(_attribute(node, "transB", 0))
            in_features, out_features = (w[1], w[0]) if transposed else (w[0], w[1])
            shapes.append(LayerShape("linear", int(in_features), int(out_features), 1, 1, 1, 1, 1, 1))
    return shapes
