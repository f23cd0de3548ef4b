"""Where the CLI prints: one console for messages (stderr), one for results (stdout).

In a terminal, rich fits the output to the window. Anywhere else (a pipe, a CI log, nohup, a
notebook) nothing is wrapped or clipped at rich's default 80 columns: tables keep their natural
width and long lines stay whole, so a script can grep them.
"""
from __future__ import annotations

from rich.console import Console

WIDE = 10_000  # columns when not writing to a terminal: "no limit" (tables do not expand to it)


def _console(stderr: bool) -> Console:
    probe = Console(stderr=stderr)
    if probe.is_terminal:
        return Console(stderr=stderr, soft_wrap=False)
    return Console(stderr=stderr, soft_wrap=True, width=WIDE)


console = _console(stderr=True)
out = _console(stderr=False)


def is_scripted() -> bool:
    """stdout is not a terminal (piped, redirected, a CI log)."""
    return not out.is_terminal


def _note(message: str) -> None:
    console.print(f"[dim]{message}[/]")


def _print_warning(line: str) -> None:
    console.print(f"[bold yellow]warning:[/] {line}")


def _print_note(line: str) -> None:
    console.print(f"[cyan]chose:[/] {line}")


def _print_skipped(skipped) -> None:
    if not skipped:
        return
    console.print(f"[yellow]skipped {len(skipped)} unreadable image(s):[/]")
    for path, reason in skipped[:20]:
        console.print(f"  {reason}" if str(path) in reason else f"  {path}: {reason}")
    if len(skipped) > 20:
        console.print(f"  ... and {len(skipped) - 20} more")
