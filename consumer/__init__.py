"""Thin consumer agent: take jobs from the queue, measure them, report back (see ``agent``)."""

from .agent import run_consumer

__all__ = ["run_consumer"]
