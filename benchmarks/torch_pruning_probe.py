"""What torch-pruning's DependencyGraph makes of each built-in, and which modules are removable blocks.

Usage: python benchmarks/torch_pruning_probe.py [--model NAME ...]
For each network: whether ``tp.DependencyGraph().build_dependency`` traces it; for each convolution,
the layers coupled with its output channels and whether removing one of them (on a copy) leaves a
network that runs. For ShuffleNetV2 the same again with the channel shuffle taken out, to show what
fails beyond it. Then the removable blocks: modules whose output is their input plus a branch of
the same shape (an add one of whose operands is the module's input, found from autograd's graph,
not from names), optionally followed by a ReLU. Findings: docs/results.md, "the built-ins beyond the CIFAR ResNets".
"""

from __future__ import annotations

import argparse
import copy
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pipeline.models.shufflenetv2_cifar as shufflenet  # noqa: E402
from pipeline.models import BUILTIN_NAMES, create_model, model_spec  # noqa: E402

_PASS_THROUGH = {"ReluBackward0", "ReluBackward1"}


def _example(name: str) -> torch.Tensor:
    return model_spec(name).input.example()


def probe_dependencies(name: str) -> None:
    """Print, per conv, its coupled layers and whether pruning one output channel works."""
    import torch_pruning as tp

    model = create_model(name).eval()
    try:
        tp.DependencyGraph().build_dependency(model, example_inputs=_example(name))
    except Exception as exc:  # report whatever the tracer raises
        print(f"  build_dependency fails: {type(exc).__name__}: {exc}")
        return
    convs = [layer for layer, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    working = 0
    for layer in convs:
        result = _prune_one_channel(model, name, layer)
        working += result.startswith("ok")
        print(f"  {layer}: {result}")
    print(f"  {working} of {len(convs)} convs prune one output channel and still run")


def _prune_one_channel(model: nn.Module, name: str, layer: str) -> str:
    import torch_pruning as tp

    copied = copy.deepcopy(model)
    graph = tp.DependencyGraph().build_dependency(copied, example_inputs=_example(name))
    names = {module: path for path, module in copied.named_modules()}
    try:
        group = graph.get_pruning_group(dict(copied.named_modules())[layer], tp.prune_conv_out_channels, idxs=[0])
        coupled = sorted({names[dep.target.module] for dep, _ in group if dep.target.module in names})
        group.prune()
        copied(_example(name))
    except Exception as exc:  # report whatever torch-pruning raises
        return f"fails ({type(exc).__name__}: {str(exc)[:80]})"
    return f"ok, coupled with {', '.join(c for c in coupled if c != layer) or 'nothing'}"


def removable_blocks(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Modules whose output is [ReLU of] their input plus a branch of the same shape."""
    found: list[str] = []

    def record(path: str):
        def hook(_module: nn.Module, args: tuple, output: object) -> None:
            if args and isinstance(args[0], torch.Tensor) and isinstance(output, torch.Tensor) \
                    and _adds_its_input(args[0], output):
                found.append(path)
        return hook

    handles = [module.register_forward_hook(record(path)) for path, module in model.named_modules() if path]
    try:
        model.eval()(example.clone().requires_grad_(True) * 1.0)  # a non-leaf input has a grad_fn
    finally:
        for handle in handles:
            handle.remove()
    return found


def _adds_its_input(inputs: torch.Tensor, output: torch.Tensor) -> bool:
    if inputs.shape != output.shape:
        return False
    node = output.grad_fn
    while node is not None and type(node).__name__ in _PASS_THROUGH:
        node = node.next_functions[0][0]
    return (node is not None and type(node).__name__ == "AddBackward0"
            and any(operand is inputs.grad_fn for operand, _ in node.next_functions))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", choices=BUILTIN_NAMES,
                        help="network to probe (repeatable; default resnet8_tiny, shufflenetv2_x0_5_cifar)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    for name in args.model or ["resnet8_tiny", "shufflenetv2_x0_5_cifar"]:
        print(f"== {name}")
        probe_dependencies(name)
        if name == "shufflenetv2_x0_5_cifar":
            print("  -- without the channel shuffle (not the network; what fails beyond the shuffle):")
            shuffle = shufflenet.channel_shuffle
            shufflenet.channel_shuffle = lambda x, groups: x
            try:
                probe_dependencies(name)
            finally:
                shufflenet.channel_shuffle = shuffle
        print(f"  removable blocks: {removable_blocks(create_model(name), _example(name)) or 'none'}")


if __name__ == "__main__":
    main()
