"""The command line the benchmark scripts share: each runs from the repository root as ``python -m bench.<name>``."""

from __future__ import annotations

import argparse
import sys


def script_parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of the script ``module`` (``bench.<name>``): its usage line is the command that runs the script,
    its description the script's docstring as written."""
    return argparse.ArgumentParser(
        prog=f"python -m {module}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def command(parser: argparse.ArgumentParser) -> str:
    """This run's command line: the script's ``python -m bench.<name>`` and the arguments given."""
    return " ".join([parser.prog, *sys.argv[1:]])
