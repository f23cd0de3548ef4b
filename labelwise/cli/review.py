"""labelwise review"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from labelwise.cli.console import console


def review_command(
    run: Path = typer.Argument(..., help="Run directory written by `labelwise train`."),
    data: Optional[Path] = typer.Option(None, "--data", help="The training dataset, if it moved since training "
                                        "(default: the path in RUN/config.yaml)."),
    export: Optional[Path] = typer.Option(None, "--export", help="Write the corrected labels to this CSV (and a "
                                          "FILE.summary.json) and exit, without starting a server."),
    to_label: Optional[Path] = typer.Option(None, "--to-label", help="The to-label list from `labelwise suggest` "
                                            "(default: RUN/review/to_label.csv when it exists)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; anything but loopback lets "
                             "other machines reach the page (the token still guards it)."),
    port: int = typer.Option(8765, "--port"),
    who: Optional[str] = typer.Option(None, "--who", help="Name recorded with each decision (default: your user name)."),
    duplicates: bool = typer.Option(True, "--duplicates/--no-duplicates",
                                    help="Look for near-duplicates across the split at start-up."),
) -> None:
    """Review suspected label errors, near-duplicates, hard images and the to-label list in the browser.

    Decisions go to RUN/review/decisions.jsonl (append-only; reopening continues where you stopped).
    The original data files are never modified: --export (or the page's button) writes a new CSV.
    """
    from labelwise.errors import ConfigError, DataError
    from labelwise.serve.review.export import export_labels, summary_path
    from labelwise.serve.review.session import ReviewSession

    if data is not None and not data.exists():
        raise DataError(f"--data {data}: no such file or folder; pass the dataset the run was trained on")
    if to_label is not None and not to_label.is_file():
        raise DataError(f"--to-label {to_label}: no such file; run `labelwise suggest RUN POOL` first")
    if not 0 < port < 65536:
        raise ConfigError(f"--port {port}: give a port between 1 and 65535")
    console.print("[dim]reading the run and its data…[/]")
    session = ReviewSession(run, data=data, to_label=to_label, who=who,
                            find_duplicates=duplicates and export is None)
    if export is not None:
        summary = export_labels(session, export)
        for line in summary["text"]:
            console.print(line)
        console.print(f"summary: {summary_path(export)}")
        return
    import uvicorn

    from labelwise.serve.app import _is_loopback
    from labelwise.serve.review.app import create_review_app, new_token

    token = new_token()
    app = create_review_app(session, token)
    sizes = ", ".join(f"{len(v)} {k}" for k, v in session.queues.items())
    console.print(f"[bold]review[/] {run}: {sizes}; {len(session.log.latest)} decisions so far")
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    print(f"open http://{shown}:{port}/?token={token}", flush=True)
    if not _is_loopback(host):
        console.print(f"[bold yellow]warning:[/] listening on {host}: other machines can reach the review "
                      "(the token in the URL still guards it); use the default --host 127.0.0.1 to keep it local")
    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)
