"""Fill a job's config dataclass from the command line.

Each field becomes a ``--flag`` with the field's default and its ``help`` metadata, so
``--help`` always lists every setting the job has, and tests can build configs directly.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from alexnet.errors import UserError

T = TypeVar("T")


def _flag_kwargs(tp: Any) -> dict[str, Any]:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin is typing.Literal:
        return {"type": type(args[0]), "choices": list(args)}
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        inner = [a for a in args if a is not type(None)][0]
        return _flag_kwargs(inner)
    if origin in (tuple, list):
        return {"type": lambda s: tuple(args[0](v) for v in s.split(",") if v.strip())}
    return {"type": tp}


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The job's docstring as written (each example on its own line), and each flag's
    default as the flag takes it: a list comma-separated, and no "(default: ...)" where
    the help already names the default or there is none (empty, or no preset)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text, default = action.help or "", action.default
        empty = default is None or default is argparse.SUPPRESS or (
            isinstance(default, (str, tuple, list)) and len(default) == 0)
        if "%(default)" in text or "(default:" in text or empty or not action.option_strings:
            return text
        if isinstance(default, (tuple, list)):
            return f"{text} (default: {','.join(str(v) for v in default).replace('%', '%%')})"
        return text + " (default: %(default)s)"


def build_parser(cls: type, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=description.strip(), formatter_class=HelpFormatter,
        allow_abbrev=False,  # --workers must never quietly mean --workers-per-trial
    )
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        parser.add_argument(
            "--" + f.name.replace("_", "-"), dest=f.name, default=default,
            help=f.metadata.get("help", ""), **_flag_kwargs(hints[f.name]),
        )
    return parser


def parse(cls: type[T], description: str, argv: list[str] | None = None,
          presets: dict[str, dict[str, Any]] | None = None, config_file: bool = False,
          by_value: dict[str, dict[str, dict[str, Any]]] | None = None) -> T:
    """Parse argv into `cls`. ``--preset NAME`` (when presets exist) and ``--config
    FILE.yaml`` (when `config_file`) set new defaults, in that order; explicit flags
    override both. `by_value` maps a setting to defaults per value of it (``{"arch":
    {"resnet50": {"lr": 0.1, ...}}}``: a network's recipe): whichever value the setting
    ends up with brings its defaults, under the preset's, the file's and the flags'.
    Invalid values exit 2 with a one-line message."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(cls, description)
    if presets:
        parser.add_argument("--preset", choices=sorted(presets), default=None,
                            help="a named set of defaults; explicit flags override it")
    if config_file:
        parser.add_argument("--config", default=None, metavar="FILE.yaml",
                            help="defaults from a YAML mapping of flag names to values; flags override it")
    known, _ = parser.parse_known_args(argv)
    layers = []
    if getattr(known, "preset", None):
        layers.append(presets[known.preset])  # type: ignore[index]
    if getattr(known, "config", None):
        layers.append(_yaml_defaults(parser, known.config))
    for layer in layers:
        parser.set_defaults(**layer)
    if by_value:
        known, _ = parser.parse_known_args(argv)  # the settings' values after presets, file and flags
        for setting, defaults in by_value.items():
            parser.set_defaults(**defaults.get(getattr(known, setting), {}))
        for layer in layers:  # a preset or a file still wins over the value's defaults
            parser.set_defaults(**layer)
    ns = vars(parser.parse_args(argv))
    ns.pop("preset", None)
    ns.pop("config", None)
    try:
        return cls(**ns)
    except UserError as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")


def _yaml_defaults(parser: argparse.ArgumentParser, path: str) -> dict[str, Any]:
    """Values from a YAML file, converted by each flag's own type (so "1e-3" and
    [0.01, 0.02] work), with unknown keys refused by name."""
    import yaml

    try:
        values = yaml.safe_load(open(path)) or {}
    except (OSError, yaml.YAMLError) as e:
        parser.exit(2, f"{parser.prog}: error: --config {path}: cannot read it ({e})\n")
    if not isinstance(values, dict):
        parser.exit(2, f"{parser.prog}: error: --config {path}: expected a mapping of flag names to values\n")
    actions = {a.dest: a for a in parser._actions}
    out = {}
    for key, value in values.items():
        dest = str(key).lstrip("-").replace("-", "_")
        action = actions.get(dest)
        if action is None or dest in ("help", "config"):
            parser.exit(2, f"{parser.prog}: error: --config {path}: unknown setting '{key}'; "
                        f"see --help for the flags\n")
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        out[dest] = action.type(str(value)) if action.type and not isinstance(value, bool) else value
    return out


def describe(config: Any) -> str:
    """The resolved config as printed at the start of every job."""
    return json.dumps(dataclasses.asdict(config), indent=2, default=str)


def run(main: Callable[[], int]) -> None:
    """A job's entry point: its exit code, and a UserError as one line on stderr."""
    try:
        sys.exit(main())
    except UserError as e:
        sys.exit(f"error: {e}")
