"""Thin producer agent: one trial from CLI arguments (or a sweep agent's), through the queue."""

from .agent import run_producer
from .params import parse_extra_args

__all__ = ["parse_extra_args", "run_producer"]
