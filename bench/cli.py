"""The command line the benchmark scripts share: each runs from the repository root as ``python -m bench.<name>``."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def script_parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of the script ``module`` (``bench.<name>``): its usage line is the command that runs the script,
    its description the script's docstring as written."""
    return argparse.ArgumentParser(
        prog=f"python -m {module}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def command(parser: argparse.ArgumentParser) -> str:
    """This run's command line: the script's ``python -m bench.<name>`` and the arguments given."""
    return " ".join([parser.prog, *sys.argv[1:]])


def field_value(text: str, current: Any) -> Any:
    """``text`` of a ``--set FIELD=VALUE`` as the type of the field's ``current`` value: ``true``/``false`` for a
    flag, comma-separated items for a tuple.  Raises ``ValueError`` saying what the field takes."""
    if isinstance(current, bool):
        if text.lower() not in ("true", "false"):
            raise ValueError("takes true or false")
        return text.lower() == "true"
    if isinstance(current, tuple):
        return tuple(type(current[0])(part) for part in text.split(","))
    try:
        return type(current)(text)
    except ValueError:
        raise ValueError(f"takes a {type(current).__name__}, got {text!r}") from None
