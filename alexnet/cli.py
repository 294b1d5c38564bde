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
        return {"type": lambda s: tuple(type(args[0])(v) for v in s.split(",") if v)}
    return {"type": tp}


def build_parser(cls: type, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
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
          presets: dict[str, dict[str, Any]] | None = None) -> T:
    """Parse argv into `cls`. ``--preset NAME`` (when presets exist) sets new defaults
    that explicit flags still override. Invalid values exit 2 with a one-line message."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(cls, description)
    if presets:
        parser.add_argument("--preset", choices=sorted(presets), default=None,
                            help="a named set of defaults; explicit flags override it")
        known, _ = parser.parse_known_args(argv)
        if known.preset:
            parser.set_defaults(**presets[known.preset])
    ns = vars(parser.parse_args(argv))
    ns.pop("preset", None)
    try:
        return cls(**ns)
    except UserError as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")


def describe(config: Any) -> str:
    """The resolved config as printed at the start of every job."""
    return json.dumps(dataclasses.asdict(config), indent=2, default=str)
