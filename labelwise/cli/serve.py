"""labelwise serve"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from labelwise.cli.help import TTA_HELP, TTA_VIEWS_HELP, tta_option
from labelwise.errors import ConfigError
from labelwise.outputs import check_port
from labelwise.serve.limits import TOKEN_ENV, ServeLimits


def serve_command(
    run: Path = typer.Argument(..., help="Run directory written by `labelwise train` (model.safetensors + model.json)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; 0.0.0.0 exposes it to the network."),
    port: int = typer.Option(8000, "--port"),
    token: Optional[str] = typer.Option(None, "--token", envvar=TOKEN_ENV, show_default=False,
                                        help=f"Require 'Authorization: Bearer TOKEN'. Prefer the {TOKEN_ENV} "
                                             "environment variable: a --token shows in `ps`."),
    engine: str = typer.Option("torch", "--engine", help="Inference engine: torch or onnx."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="One global cut-off instead of the tuned ones."),
    tta: bool = typer.Option(False, "--tta", help=TTA_HELP + " On every endpoint; costs a forward pass per view."),
    tta_views: Optional[int] = typer.Option(None, "--tta-views", metavar="N", help=TTA_VIEWS_HELP),
    max_body_mb: float = typer.Option(ServeLimits.max_body_bytes / 2**20, "--max-body-mb",
                                      help="Largest request body, MiB."),
    max_files: int = typer.Option(ServeLimits.max_files, "--max-files", help="Most images per request."),
    max_pixels: int = typer.Option(ServeLimits.max_pixels, "--max-pixels",
                                   help="Largest image, in pixels, read from its header before decoding."),
    queue_size: int = typer.Option(ServeLimits.queue_size, "--queue-size",
                                   help="Requests in progress at once; more get 503 + Retry-After."),
    max_batch: int = typer.Option(ServeLimits.max_batch, "--max-batch",
                                  help="Most images in one forward pass (requests waiting together share it)."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level: debug, info, warning, error."),
    model_name: Optional[str] = typer.Option(None, "--model-name",
                                             help="Name under /v2/models/ (Open Inference Protocol); default: RUN's "
                                                  "folder name."),
) -> None:
    """Serve a trained model over HTTP: POST /predict, GET /model, GET /health, an upload page at /, and the Open
    Inference Protocol (KServe / Triton V2) under /v2."""
    import uvicorn
    from rich.console import Console

    from labelwise.serve.app import _is_loopback, create_app

    console = Console(stderr=True)
    check_port(host, port)  # before the model loads: a bad or busy port is said at once
    if max_body_mb <= 0:
        raise ConfigError(f"--max-body-mb must be positive, got {max_body_mb}")
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise ConfigError(f"--threshold must be between 0 and 1, got {threshold}")
    app = create_app(run, token=token or None, engine=engine, threshold=threshold,
                     notify=lambda line: console.print(f"[dim]{line}[/]"),
                     max_body_bytes=int(max_body_mb * 2**20), max_files=max_files, max_pixels=max_pixels,
                     queue_size=queue_size, max_batch=max_batch, model_name=model_name,
                     tta=tta_option(tta, tta_views))
    info = app.state.service.model_info()
    console.print(f"[bold]serving[/] {run} ({info['task']}, {len(info['labels'])} labels, {info['backbone']}, "
                  f"engine {engine}" + (f", TTA over {info['tta']['views']} views" if info["tta"] else "")
                  + f") at [bold]http://{host}:{port}/[/]"
                  + (" — token required" if token else ""))
    console.print(f"  Open Inference Protocol: http://{host}:{port}/v2/models/{app.state.model_name}/infer")
    if not token and not _is_loopback(host):
        console.print(f"[bold yellow]warning:[/] listening on {host} without a token: anyone who can reach "
                      f"this machine can use the model. Set {TOKEN_ENV} or --token.")
    # uvicorn's own cap on open connections and requests (503 beyond it): idle or slow connections
    # cannot pile up without bound in front of the queue.
    uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False,
                limit_concurrency=max(64, 4 * queue_size))


