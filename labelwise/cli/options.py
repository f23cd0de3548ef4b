"""CLI options generated from the config schema (labelwise/config.py): one declaration per option.

``schema_command(fn, extra)`` gives ``fn`` a typer signature with one ``--flag`` per config field (grouped in
help panels, choices listed from the registries) plus the command's own ``extra`` parameters. Schema options
default to None here, so a command can tell what the user typed from what a ``--config`` file or the schema
supplies; their help shows the schema's default.
"""
from __future__ import annotations

import inspect
import typing
from dataclasses import MISSING
from typing import Any, Callable, Iterable, Optional

import typer

from labelwise.config import SECTIONS, flag_of, option_fields, parse_duration
from labelwise.training.options import registry_of


def _cli_type(tp: Any, parse: str | None) -> Any:
    if parse:
        return Optional[str]
    args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    base = args[0] if len(args) == 1 else str  # int | str (devices) is read as text
    return Optional[base]


def _help(f: Any) -> tuple[str, str | None]:
    help_text, metavar = f.metadata["help"], f.metadata.get("metavar")
    choices = f.metadata.get("choices")
    if isinstance(choices, str):
        reg = registry_of(choices)
        names = reg.names()
        help_text = f"{help_text} {reg.help_text()}."
        metavar = "[" + "|".join((("auto",) if f.default == "auto" and "auto" not in names else ()) + names) + "]"
    elif isinstance(choices, tuple):
        metavar = "[" + "|".join(choices) + "]"
    return help_text, metavar


def schema_parameters(include: Iterable[str] | None = None, exclude: Iterable[str] = ()) -> list[inspect.Parameter]:
    wanted = set(include) if include is not None else None
    params = []
    hints_of = {section: typing.get_type_hints(cls) for section, cls in SECTIONS.items()}
    for section, f in option_fields():
        if f.name in exclude or f.name == "data" or (wanted is not None and f.name not in wanted):
            continue
        hints = hints_of[section]
        help_text, metavar = _help(f)
        flag = flag_of(f)
        decls = [f"{flag}/--no-{flag[2:]}"] if hints[f.name] in (bool, Optional[bool]) else [flag]
        default = None if f.default is MISSING else f.default
        if default is not None and not isinstance(default, bool):
            help_text = f"{help_text} (default: {default})"
        option = typer.Option(None, *decls, help=help_text, metavar=metavar, rich_help_panel=f.metadata["panel"],
                              show_default=False)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=_cli_type(hints[f.name], f.metadata.get("parse"))))
    return params


def schema_values(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The schema options the user gave (not None), parsed (durations, device counts)."""
    parsers = {f.name: f.metadata.get("parse") for _, f in option_fields()}
    flags = {f.name: flag_of(f) for _, f in option_fields()}
    given = {}
    for name, value in kwargs.items():
        if name not in parsers or value is None:
            continue
        if parsers[name] == "duration":
            value = parse_duration(value, flags[name])
        elif parsers[name] == "devices":
            value = int(value) if str(value).isdigit() else value
        given[name] = value
    return given


def schema_command(fn: Callable[..., Any], extra: list[inspect.Parameter], **select: Any) -> Callable[..., Any]:
    """``fn(**kwargs)`` with the signature ``extra`` (positional arguments first) + the schema's options."""
    arguments = [p for p in extra if isinstance(p.default, typer.models.ArgumentInfo)]
    options = [p for p in extra if p not in arguments]
    params = [p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD)
              for p in arguments + schema_parameters(**select) + options]

    def command(**kwargs: Any) -> Any:  # typer passes every parameter by name
        return fn(**kwargs)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = fn.__doc__
    command.__name__ = fn.__name__
    return command
