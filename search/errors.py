"""How an error reads where a user sees it (a table cell, a one-line message): the line of a traceback that
says what went wrong."""

from __future__ import annotations

import re


def first_error_line(text: str) -> str:
    """The innermost ``SomeError: message`` line of a (possibly chained) traceback, else its first line."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]*(Error|Exception|Interrupt)\b.*:", line)]
    return (errors[-1] if errors else lines[0] if lines else "error")[:300]
