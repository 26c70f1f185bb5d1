"""The command line the benchmark scripts share: each runs from the repository root as ``python -m bench.<name>``."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
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


def run_header(parser: argparse.ArgumentParser) -> str:
    """When, on what and by which command a result was measured: the line a result file starts with."""
    return (
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}; {os.cpu_count()} CPU cores, Python {platform.python_version()}; "
        f"`{command(parser)}`"
    )


def write_result(out: Path, stem: str, record: dict[str, Any], text: str) -> None:
    """``<stem>.json`` (``record``) and ``<stem>.md`` (``text``) in ``out``; the text is printed too."""
    (out / f"{stem}.json").write_text(json.dumps(record, indent=1))
    (out / f"{stem}.md").write_text(text)
    print(text)


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
