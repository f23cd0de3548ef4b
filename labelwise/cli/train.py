"""labelwise train: options generated from the config schema; --config FILE in, --print-config out."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Optional

import typer

from labelwise.cli.console import _print_note, _print_skipped, _print_warning, console, out
from labelwise.cli.help import DATA_HELP
from labelwise.cli.options import schema_command, schema_values
from labelwise.cli.scores import print_scores
from labelwise.config import RunConfig, make_config
from labelwise.errors import ConfigError
from labelwise.training.options import check_options

_P = inspect.Parameter
RUN_PANEL = "Run"


def resolve_cli_config(data: Optional[Path], out_dir: Optional[Path], config: Optional[Path],
                       kwargs: dict[str, Any]) -> RunConfig:
    """Schema defaults < --config FILE < flags typed on the command line; checked before any work starts."""
    base = RunConfig.load(config) if config else RunConfig()
    cfg = make_config(data, out_dir, base=base, **schema_values(kwargs))
    if not cfg.data.data:
        raise ConfigError("no data: give DATA on the command line or data.data in --config")
    return check_options(cfg)


def _train(data: Optional[Path] = None, out_dir: Optional[Path] = None, config: Optional[Path] = None,
           print_config: bool = False, resume: bool = False, report: bool = True, quiet: bool = False,
           **options: Any) -> None:
    """Train a classifier on DATA and write a run directory (bundle, metrics, history, predictions)."""
    cfg = resolve_cli_config(data, out_dir, config, options)
    if print_config:
        print("# every option, resolved from the defaults, --config and the flags; `auto` values are decided at\n"
              "# train time and written out in full to RUN/config.yaml\n" + cfg.to_yaml(), end="")
        return
    from labelwise.training.run import train as run_train

    result = run_train(cfg, resume=resume, progress=not quiet, on_skipped=_print_skipped, on_warning=_print_warning,
                       on_note=_print_note)
    if result is None:  # a non-zero rank of a distributed run: rank 0 reports
        return
    m = result.metrics
    if m["run"].get("strategy") == "linear-probe":
        console.print(f"[bold]trained[/] a linear probe on {m['run']['backbone']} features in "
                      f"{m['run']['wall_time_s']:.1f} s (embedding included) on {m['run']['train_images']} images; "
                      f"validated on {m['run']['val_images']}")
    else:
        console.print(f"[bold]trained[/] {result.epochs_run} epochs, {result.epoch_time_s:.1f} s/epoch "
                      f"(validation included) on {m['run']['train_images']} images; validated on "
                      f"{m['run']['val_images']}")
    print_scores(m)
    if m["run"].get("interrupted"):  # Ctrl-C / SIGTERM: the bundle holds the best checkpoint so far
        console.print(f"[bold yellow]interrupted:[/] the bundle in {result.run_dir} holds the best checkpoint so far "
                      f"(epoch {m['run'].get('best_checkpoint_epoch')}); continue with "
                      f"`labelwise train --config {result.run_dir / 'config.yaml'} --resume` (or the same command with --resume)")
        raise typer.Exit(130)
    if report:
        from labelwise.report import build_report

        out.print(f"report: [bold]{build_report(result.run_dir)}[/]")
    out.print(f"run directory: [bold]{result.run_dir}[/]")


def _param(name: str, default: Any, annotation: Any) -> _P:
    return _P(name, _P.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation)


TRAIN_PARAMS = [
    _param("data", typer.Argument(None, help=DATA_HELP, show_default=False), Optional[Path]),
    _param("out_dir", typer.Option(None, "--out", help="Run directory to write (the model bundle). [default: runs/run]",
                                   rich_help_panel=RUN_PANEL), Optional[Path]),
    _param("config", typer.Option(None, "--config", help="YAML options in the shape of a run's config.yaml; flags "
                                  "given here override it.", rich_help_panel=RUN_PANEL), Optional[Path]),
    _param("print_config", typer.Option(False, "--print-config", help="Print the resolved configuration and exit.",
                                        rich_help_panel=RUN_PANEL), bool),
    _param("resume", typer.Option(False, "--resume", help="Continue from RUN/checkpoints/last.ckpt.",
                                  rich_help_panel=RUN_PANEL), bool),
    _param("report", typer.Option(True, "--report/--no-report", help="Write RUN/report.html after training.",
                                  rich_help_panel=RUN_PANEL), bool),
    _param("quiet", typer.Option(False, "--quiet", help="No progress output.", rich_help_panel=RUN_PANEL), bool),
]
train = schema_command(_train, TRAIN_PARAMS)
