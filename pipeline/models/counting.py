"""MACs and parameter counts, by Distiller's convention (conv and linear layers only)."""

from __future__ import annotations

import torch
from torch import nn


def count_macs_params(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> tuple[int, int]:
    """Multiply-accumulates of one forward pass over conv and linear layers, and the parameter count.

    Distiller counts a conv as ``out_h * out_w * out_c * in_c/groups * k_h * k_w`` and ignores
    BatchNorm, ReLU, pooling and the option-A shortcut; so do we, so figures compare with its tables.
    """
    macs = 0

    def conv_hook(module: nn.Conv2d, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs
        kh, kw = module.kernel_size
        macs += output.numel() // output.shape[0] * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Linear, _inputs: tuple, _output: torch.Tensor) -> None:
        nonlocal macs
        macs += module.in_features * module.out_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(input_shape, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return macs, params
