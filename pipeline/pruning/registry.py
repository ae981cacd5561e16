"""The registries of the classes a compression schedule may name, filled by decorators.

A class's arguments are spelled once, beside the class (``@register_pruner(ArgSpec(...), ...)``).
Three registries exist: ``PRUNERS``, ``LR_SCHEDULERS`` and ``EXTENSIONS``; ``POLICY_ARGS`` lists
what a policy's ``args:`` may hold. ``CATALOG`` bundles them for the schedule reader
(``pipeline.schedule``), whose types (``ArgSpec``, ``ComponentSpec``, ``Registry``) these are.

This module imports nothing from the pruners, so any of them may import it.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from ..schedule.args import DISTILLER_PRUNERS, ArgSpec, Catalog, ComponentSpec, Registry

__all__ = ["CATALOG", "DISTILLER_PRUNERS", "EXTENSIONS", "LR_SCHEDULERS", "POLICY_ARGS", "PRUNERS", "ArgSpec",
           "ComponentSpec", "Registry", "register_extension", "register_lr_scheduler", "register_pruner"]

T = TypeVar("T", bound=Callable[..., object])  # a class or a function: both have __name__

PRUNERS = Registry("pruner")
LR_SCHEDULERS = Registry("lr_scheduler")
EXTENSIONS = Registry("extension")

#: What a policy's ``args:`` may hold (Distiller's PruningPolicy options); plug-ins may add keys.
POLICY_ARGS: dict[str, ArgSpec] = {
    "keep_mask": ArgSpec("keep_mask", "bool", help="keep the mask applied after the policy ends"),
    "mini_batch_pruning_frequency": ArgSpec("mini_batch_pruning_frequency", "int", low=0,
                                            help="re-prune every N mini-batches", example=100),
    "mask_on_forward_only": ArgSpec("mask_on_forward_only", "bool", help="mask only on forward"),
    "mask_gradients": ArgSpec("mask_gradients", "bool", help="mask gradients too"),
    # Distiller ranks on BN-folded weights with it; here ranking reads the conv weights, and
    # BatchNorm is folded into the convs at export and evaluation anyway.
    "fold_batchnorm": ArgSpec("fold_batchnorm", "bool", help="accepted; ranking is unchanged"),
}


#: Everything a schedule is checked against (``pipeline.schedule.reader``).
CATALOG = Catalog(PRUNERS, LR_SCHEDULERS, EXTENSIONS, POLICY_ARGS)


def _registering(registry: Registry, class_name: str | None, args: tuple[ArgSpec, ...],
                 summary: str) -> Callable[[T], T]:
    def decorate(factory: T) -> T:
        name = class_name or factory.__name__
        registry.register(ComponentSpec(name, registry.kind, tuple(args), factory, summary))
        return factory

    return decorate


def register_pruner(*args: ArgSpec, name: str | None = None, summary: str = "") -> Callable[[T], T]:
    """Class decorator: make a ``Pruner`` subclass nameable in schedules (name defaults to the class's)."""
    return _registering(PRUNERS, name, args, summary)


def register_lr_scheduler(*args: ArgSpec, name: str | None = None, summary: str = "") -> Callable[[T], T]:
    """Class decorator for an ``EpochLRScheduler`` subclass."""
    return _registering(LR_SCHEDULERS, name, args, summary)


def register_extension(*args: ArgSpec, name: str | None = None, summary: str = "") -> Callable[[T], T]:
    """Class decorator for an extension class."""
    return _registering(EXTENSIONS, name, args, summary)
