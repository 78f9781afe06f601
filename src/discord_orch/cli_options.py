"""click options made from declarations: a setting's flag (settings_spec.SETTINGS) and a command's own
options (settings_spec.CommandOption, `init`'s). cli.py decorates its commands with these; a bad value
is click's usage error (exit 2), never a traceback."""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import click

from .settings_spec import SETTING, CommandOption, Number

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


class _FiniteRange(click.FloatRange):
    """click's FloatRange lets nan through: it compares False with every bound."""

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


def _flag_type(parse: Any) -> click.ParamType:
    """click's check for a flag (a bad flag is a usage error, exit 2): a number's bounds as a range."""
    if isinstance(parse, Number):
        kind = click.IntRange if parse.integer else _FiniteRange
        return kind(min=parse.minimum, max=parse.maximum)
    # Passed through as text, a bad value would be reported as bad configuration (exit 3) instead.
    raise TypeError(f"no click type for {parse!r}: say here how click checks it")


def setting_options(*keys: str) -> Decorator:
    """The declared flags of these settings, each passed to the command as KEY=value (None when not given)."""
    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for key in reversed(keys):  # click lists options in the order their decorators are written
            setting = SETTING[key]
            default = f", default {setting.default}" if setting.default else ""
            command = click.option(setting.flag, key, type=_flag_type(setting.parse),
                                   help=f"{setting.flag_help} ({key}{default}).")(command)
        return command
    return decorate


def command_options(options: Sequence[CommandOption]) -> Decorator:
    """A command's own declared options, in their order; an on/off pair is None when neither is given."""
    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for o in reversed(options):
            if o.metavar:
                option = click.option(o.flag, o.dest, metavar=o.metavar, multiple=o.multiple, help=o.help)
            else:
                option = click.option(o.flag, o.dest, is_flag=True, default=None if "/" in o.flag else False,
                                      help=o.help)
            command = option(command)
        return command
    return decorate
