"""Root of the ``edgeprune`` command: each sub-command lives in its own module under ``commands/``.

Sub-commands are imported only when used, so ``edgeprune --help`` and ``edgeprune queue status``
do not pay for importing torch and OpenVINO.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from pipeline.errors import UserError, os_error_message

#: name -> (module under edgeprune.commands, attribute, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("run", "run", "Prune, retrain, export and benchmark one model."),
    "bench": ("bench", "bench", "Benchmark an ONNX model on OpenVINO or ONNX Runtime."),
    "schedule": ("schedule", "schedule", "Check or show a Distiller compression schedule."),
    "sensitivity": ("sensitivity", "sensitivity", "Per-layer pruning sensitivity analysis."),
    "producer": ("producer", "producer", "Producer agent: prune/retrain/export, enqueue, wait."),
    "consumer": ("consumer", "consumer", "Consumer agent: take jobs, benchmark, report back."),
    "queue": ("queue", "queue", "Inspect the Redis job queue."),
    "sweep": ("sweep", "sweep", "Run a sweep YAML locally on Optuna."),
    "report": ("report", "report", "HTML report of a sweep: Pareto front, importance, plots."),
    "baseline": ("baseline", "baseline", "Measure the baseline table (unpruned vs hand-picked)."),
    "latency": ("latency", "latency", "Profile a target's latency model once; predict architectures."),
}


class LazyGroup(click.Group):
    """A group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(f"edgeprune.commands.{module}"), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.version_option(package_name="edgeprune")
def cli(verbose: int) -> None:
    """edgeprune: find the pruned CNN that runs fastest on your edge engine at the accuracy you need.

    The default data set is the lossless CIFAR-10 binary version in ../shared; every accuracy
    says which split and how many images it was measured on.
    """
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 2.

    Under ``standalone_mode=False`` click returns the code of ``ctx.exit(code)`` instead of
    exiting with it (commands return None), so it is passed on here: scripts and ``wandb agent``
    see the producer's 1 and 3.
    """
    try:
        code = cli.main(standalone_mode=False)
    except UserError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        message = os_error_message(exc)
        if message is None:
            raise
        click.echo(f"Error: {UserError(message)}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    if isinstance(code, int) and not isinstance(code, bool) and code:
        sys.exit(code)
