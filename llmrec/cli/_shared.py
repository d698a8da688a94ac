"""What several commands share: argparse helpers (``--set``, deprecated aliases, enum choices),
comma-separated names and printing results. Imported while the parser is built: nothing heavy
at module level."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmrec.evaluation import EvalResult


def add_set_option(parser: argparse.ArgumentParser, what: str, example: str) -> None:
    """``--set KEY=VALUE`` (repeatable): a dotted path into the command's typed config,
    parsed by :mod:`llmrec.overrides`."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"set a value of {what}: KEY is a dotted path into it, VALUE is YAML, e.g. "
        f"--set {example} (repeatable; an unknown KEY lists the valid ones)",
    )


class DeprecatedAlias(argparse.Action):
    """A hidden old spelling of an option: it still works, stores into the new option's ``dest``
    and says on stderr which spelling to use."""

    def __init__(self, option_strings: list[str], dest: str, new: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)
        self.new = new

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(f"note: {option_string} is deprecated here; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


class EnumChoices:
    """argparse ``choices`` read from a str-Enum on first use, so that building the parser does
    not import the (heavy) module the enum lives in. Give the argument a ``metavar``: without
    one argparse lists the choices while the parser is built."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def _values(self) -> list[str]:
        enum = getattr(importlib.import_module(self.module), self.name)
        return [member.value for member in enum]

    def __contains__(self, value: object) -> bool:
        return value in self._values()

    def __iter__(self) -> Iterator[str]:
        return iter(self._values())


def split_names(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [v.strip() for v in text.split(",") if v.strip()]


def print_result(result: EvalResult) -> None:
    from llmrec.evaluation import format_table

    print(format_table([result]))
    for note in result.notes:
        print(f"note: {note}")
