"""Random pruned architectures of a ResNet-CIFAR: the sample a latency model is fitted and judged on.

Each is a one-shot schedule (``ResidualBlockPruner`` with a seeded random order for depth, one
``L1RankedStructureParameterPruner`` per stage on the remaining blocks' ``conv1`` filters for
width), so ``prune_one_shot`` makes exactly the architectures the pruner makes in a search.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from torch import nn

    from ..schedule import Schedule

#: Kept-channel multiples an architecture may be drawn with (``round_to``; 1: no rounding).
ROUND_CHOICES = (1, 4, 8, 16)
#: BatchNorm scale of each residual branch's last layer in ``build_architecture``'s random models.
RESIDUAL_SCALE = 0.2


def random_schedule(rng: np.random.Generator, blocks: Sequence[str], max_removed: int | None = None,
                    max_sparsity: float = 0.6,
                    round_choices: Sequence[int] = ()) -> tuple[str, dict[str, Any]]:
    """A schedule of one random depth-and-width architecture, and what it asks for.

    ``blocks``: the model's identity blocks (``pipeline.pruning.blocks.identity_blocks``); 0 to
    ``max_removed`` of them are removed (default: half, rounded down), then each stage's remaining
    ``conv1`` filters are pruned by a sparsity drawn in [0, ``max_sparsity``) (below 5%: none).
    With ``round_choices`` the schedule's ``round_to`` is drawn from them, after the other draws
    (so a caller without it sees the same architectures as before it existed).
    """
    limit = len(blocks) // 2 if max_removed is None else max_removed
    removed = int(rng.integers(0, limit + 1))
    sparsities = [round(float(s), 2) for s in rng.uniform(0.0, max_sparsity, size=3)]
    seed = int(rng.integers(0, 1_000_000))
    round_to = int(rng.choice(list(round_choices))) if round_choices else None
    text = "version: 1\n" + (f"round_to: {round_to}\n" if round_to else "")
    text += ("pruners:\n  blocks:\n    class: ResidualBlockPruner\n    criterion: random\n"
             f"    seed: {seed}\n    desired_sparsity: {removed / max(len(blocks), 1) + 1e-6:.6f}\n"
             f"    blocks: [{', '.join(blocks)}]\n")
    policies = "policies:\n  - pruner: {instance_name: blocks}\n    epochs: [0]\n"
    for stage, sparsity in zip((1, 2, 3), sparsities):
        if sparsity < 0.05:
            continue
        convs = [f"{b}.conv1.weight" for b in blocks if b.startswith(f"layer{stage}.")]
        if not convs:
            continue
        text += (f"  filters{stage}:\n    class: L1RankedStructureParameterPruner\n    group_type: Filters\n"
                 f"    desired_sparsity: {sparsity}\n    weights: [{', '.join(convs)}]\n")
        policies += f"  - pruner: {{instance_name: filters{stage}}}\n    epochs: [0]\n"
    spec = {"blocks_removed": removed, "stage_sparsity": sparsities, "seed": seed, "round_to": round_to or 1}
    return text + policies, spec


def random_schedules(model_name: str, count: int, seed: int = 0,
                     round_choices: Sequence[int] = ROUND_CHOICES) -> list[tuple[str, dict[str, Any]]]:
    """``count`` random architectures of ``model_name`` (see ``random_schedule``), seeded."""
    from ..models import create_model
    from ..pruning.blocks import identity_blocks

    blocks = identity_blocks(create_model(model_name))
    rng = np.random.default_rng(seed)
    return [random_schedule(rng, blocks, round_choices=round_choices) for _ in range(count)]


def build_architecture(model_name: str, schedule: "Schedule | str | None" = None) -> "nn.Module":
    """A freshly initialised ``model_name`` pruned one shot by ``schedule`` (a Schedule or YAML
    text; None: unpruned), in eval mode.

    The weights are random: latency depends on the architecture only, and the pruner's choice of
    which filters go does not change the shapes. Each block's last BatchNorm scale is shrunk
    (``RESIDUAL_SCALE``) so that 27 untrained blocks do not blow the logits up beyond what the
    export check (``export_onnx``'s tolerance) accepts.
    """
    import torch

    from ..models import create_model
    from ..models.resnet_cifar import BasicBlock
    from ..pruning import prune_one_shot
    from ..schedule import load_schedule

    torch.manual_seed(0)
    model = create_model(model_name)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, BasicBlock):
                module.bn2.weight.fill_(RESIDUAL_SCALE)
    if isinstance(schedule, str):
        schedule = load_schedule(schedule)
    if schedule is not None:
        prune_one_shot(model, schedule, torch.zeros(1, 3, 32, 32))
    return model.eval()
