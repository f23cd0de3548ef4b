"""The `labelwise` command: one file per command, each parsing options into one library call.

User mistakes (LabelwiseError) print one red line naming the file/option and exit with code 2.
Nothing heavy (torch, matplotlib, onnx) is imported until a command runs, so --help is instant.
"""
from __future__ import annotations

import sys

import typer
from rich.markup import escape

from labelwise.cli import (
    cache,
    compare,
    ensemble,
    evaluate,
    export,
    inspect,
    lr_find,
    models,
    predict,
    push,
    report,
    review,
    serve,
    suggest,
    train,
)
from labelwise.cli.console import console
from labelwise.cli.extras import missing_extra_message
from labelwise.errors import LabelwiseError
from labelwise.outputs import DISK_ERRNOS
from labelwise.version import __version__

app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
                  help="Train, evaluate and use image classifiers (multi-label first-class).")

# name -> command function; a new command is one module and one line here
COMMANDS = {
    "train": train.train, "evaluate": evaluate.evaluate, "predict": predict.predict, "report": report.report_command,
    "export": export.export_command, "serve": serve.serve_command, "ensemble": ensemble.ensemble,
    "inspect": inspect.inspect, "lr-find": lr_find.lr_find_command, "models": models.models_cmd, "cache": cache.cache,
    "push": push.push_command,
    "review": review.review_command, "suggest": suggest.suggest_command,
    "compare": compare.compare_command,
}
for _name, _fn in COMMANDS.items():
    app.command(_name)(_fn)


def _version(value: bool) -> None:
    if value:
        print(f"labelwise {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Train, evaluate and use image classifiers (multi-label first-class)."""


def main() -> None:
    try:
        app()
    except LabelwiseError as e:
        console.print(f"[bold red]error:[/] {escape(str(e))}")  # messages may hold [brackets]: print them as text
        sys.exit(2)
    except ModuleNotFoundError as e:  # an optional part (serve, export, loggers, hub) is not installed
        advice = missing_extra_message(e)
        if advice is None:
            raise
        console.print(f"[bold red]error:[/] {escape(advice)}")
        sys.exit(2)
    except KeyboardInterrupt as e:
        _interrupted(e)
    except SystemExit as e:  # typer turns Ctrl-C into a silent exit 130: say it in one line
        cause = _chain(e, KeyboardInterrupt)
        if cause is not None:
            _interrupted(cause)
        raise
    except OSError as e:  # a write failed where no command expected it: one line, no traceback
        if e.errno not in DISK_ERRNOS:
            raise
        console.print(f"[bold red]error:[/] cannot write {e.filename or ''}: {e.strerror}; free some space or "
                      "choose a writable place")
        sys.exit(2)


def _chain(error: BaseException, kind: type) -> BaseException | None:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _interrupted(error: BaseException) -> None:
    console.print("[red]interrupted[/]" + (f": {error}" if str(error) else ""))
    sys.exit(130)


if __name__ == "__main__":
    main()
