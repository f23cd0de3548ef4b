"""Where the CLI prints: one console for messages (stderr), one for results (stdout)."""
from __future__ import annotations

from rich.console import Console

console = Console(stderr=True, soft_wrap=False)


out = Console()


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


