"""MACs and parameter counts: MACs by Distiller's convention, parameters of the deployed model.

One parameter definition is used everywhere (``PruneReport``, ``ModelFacts``, ``result.json``,
run tables): the parameters of the model as it is deployed, with BatchNorm folded into the
convolution before it, which is what the exported ONNX holds. A BatchNorm's scale merges into
that conv's weight and its shift becomes the conv's bias, so a BatchNorm of C channels counts C
after a conv without bias (the CIFAR ResNets, ShuffleNetV2), nothing after a conv with one (MLPerf
Tiny's ResNet-8: the shift merges into that bias), never its 2C PyTorch parameters (nor its
running statistics).
"""

from __future__ import annotations

import torch
from torch import nn

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def deployed_params(model: nn.Module) -> int:
    """Parameters of ``model`` with every BatchNorm folded into the conv before it.

    "Before it" is the previous module with parameters in registration order, which is the
    order of the forward pass in the built-ins. Equals the float initializers of the exported
    ONNX graph (``pipeline.measure.onnx_facts``).
    """
    count = 0
    previous: nn.Module | None = None
    for module in model.modules():
        own = sum(p.numel() for p in module.parameters(recurse=False))
        if isinstance(module, _BATCH_NORMS):
            # Folding gives the conv before it a bias of C, unless it has one already.
            has_bias = isinstance(previous, _CONVS) and previous.bias is not None
            count += 0 if has_bias else module.num_features
        else:
            count += own
        if own:
            previous = module
    return count


def count_macs_params(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> tuple[int, int]:
    """Multiply-accumulates of one forward pass over conv and linear layers, and ``deployed_params``.

    Distiller counts a conv as ``out_h * out_w * out_c * in_c/groups * k_h * k_w`` and ignores
    BatchNorm, ReLU, pooling and the option-A shortcut; so do we, so MACs compare with its tables.
    (Distiller's parameter figures count conv and linear weights only, without biases.)
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
    return macs, deployed_params(model)
