"""The value grammar of a space's ``params``: one tuned value written as a YAML string, parsed into a ``Param``.

The grammar is close to Hydra's Optuna sweeper::

    lr_nonlocal: tag(log, interval(1e-5, 1e-3))   # float, log-uniform
    tau: interval(0.05, 0.2)                       # float, uniform
    steps: int(interval(20, 80))                   # integer, uniform
    eval_every: range(5, 25, step=5)               # 5, 10, 15, 20 (the stop is excluded, as in Python)
    trainable_block: choice(block3, block4)        # categorical

Parsing knows nothing of the field a value tunes; ``search.space_checker`` checks the values against it.
"""

from __future__ import annotations

import ast
import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import optuna

#: The value grammar of ``params``, as error messages list it.
GRAMMAR = (
    "choice(a, b, ...)",
    "interval(lo, hi)",
    "int(interval(lo, hi))",
    "tag(log, interval(lo, hi))",
    "range(start, stop, step=s)",
)


class ExpressionError(ValueError):
    """A search expression outside the grammar.  ``problem``: what is wrong; ``allowed``: the forms that would do,
    where listing them helps."""

    def __init__(self, problem: str, allowed: Iterable[Any] | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.allowed = None if allowed is None else tuple(allowed)


@dataclass(frozen=True)
class Param:
    """One tuned value: a categorical ``choices`` list or a numeric interval (``high`` included), optionally
    on a grid of ``step``."""

    name: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    step: float | None = None

    def middle(self) -> Any:
        """A value in the middle of the range (geometric for log intervals, on the grid when there is one; the
        first choice of a categorical): where a warm-up trial puts this knob."""
        if self.choices is not None:
            return self.choices[0]
        value = math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2
        if self.step is not None:
            value = self.low + round((value - self.low) / self.step) * self.step
        return int(round(value)) if self.integer else float(value)

    def describe(self) -> str:
        """The distribution in words, as ``--dry-run`` lists it: its kind, then its options or its range."""
        if self.choices is not None:
            return f"choice of {', '.join(map(str, self.choices))}"
        kind = "int" if self.integer else "float"
        scale = "log-uniform" if self.log else "uniform"
        grid = "" if self.step is None else f", step {_number(self.step)}"
        return f"{kind}, {scale} on [{_number(self.low)}, {_number(self.high)}]{grid}"

    def distribution(self) -> optuna.distributions.BaseDistribution:
        if self.choices is not None:
            return optuna.distributions.CategoricalDistribution(list(self.choices))
        if self.integer:
            step = 1 if self.step is None else int(self.step)
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.log, step=step)
        return optuna.distributions.FloatDistribution(float(self.low), float(self.high), log=self.log, step=self.step)


def _number(value: float) -> str:
    """A bound as a person writes it: ``20`` rather than ``20.0``, ``3e-05`` rather than ``0.00003``."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def parse_expression(name: str, text: Any) -> Param:
    """The tuned value ``name: text``; raises ``ExpressionError`` for text outside the grammar or an empty range."""
    if not isinstance(text, str):
        raise ExpressionError(f"must be a search expression string, got {text!r}", GRAMMAR)
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise ExpressionError(f"cannot parse {text!r}", GRAMMAR) from None
    param = _param(name, node)
    if param.choices is None:
        if not (math.isfinite(param.low) and math.isfinite(param.high)) or param.low > param.high:
            raise ExpressionError(f"interval must have low < high, got ({param.low}, {param.high})")
        if param.low == param.high and param.step is None:
            raise ExpressionError(f"interval must have low < high, got ({param.low}, {param.high})")
        if param.log and param.low <= 0:
            raise ExpressionError(f"a log interval needs low > 0, got {param.low}")
    return param


def _param(name: str, node: ast.AST) -> Param:
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ExpressionError(f"unsupported expression {ast.unparse(node)!r}", GRAMMAR)
    func, args = node.func.id, node.args
    if func == "range":
        return _range(name, node)
    if node.keywords:
        raise ExpressionError(f"unsupported expression {ast.unparse(node)!r}", GRAMMAR)
    if func == "choice":
        if not args:
            raise ExpressionError("choice(...) needs at least one value")
        return Param(name, choices=tuple(_constant(arg) for arg in args))
    if func == "interval" and len(args) == 2:
        low, high = (_constant(arg) for arg in args)
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (low, high)):
            raise ExpressionError(f"interval bounds must be numbers, got ({low!r}, {high!r})")
        return Param(name, low=float(low), high=float(high))
    if func == "int" and len(args) == 1:
        inner = _param(name, args[0])
        if inner.choices is not None:
            raise ExpressionError("int(...) wraps an interval", GRAMMAR)
        if inner.low != int(inner.low) or inner.high != int(inner.high):
            raise ExpressionError(f"int(interval(...)) needs integer bounds, got ({inner.low}, {inner.high})")
        return dataclasses.replace(inner, integer=True)
    if func == "tag" and len(args) == 2 and isinstance(args[0], ast.Name) and args[0].id == "log":
        inner = _param(name, args[1])
        if inner.choices is not None or inner.step is not None:
            raise ExpressionError("tag(log, ...) wraps an interval", GRAMMAR)
        return dataclasses.replace(inner, log=True)
    raise ExpressionError(f"unsupported expression {ast.unparse(node)!r}", GRAMMAR)


def _range(name: str, node: ast.Call) -> Param:
    """``range(start, stop[, step])`` or ``range(start, stop, step=s)``: the grid ``start, start+s, ...`` below
    ``stop``, integer when all three are integers."""
    keywords = {kw.arg: kw.value for kw in node.keywords}
    if set(keywords) - {"step"} or not 2 <= len(node.args) + len(keywords) <= 3 or len(node.args) < 2:
        raise ExpressionError(f"write range(start, stop, step=s), got {ast.unparse(node)!r}", GRAMMAR)
    values = [_constant(arg) for arg in [*node.args, *keywords.values()]]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ExpressionError(f"range bounds and step must be numbers, got {ast.unparse(node)!r}")
    start, stop, step = (*values, 1)[:3]
    if step <= 0 or not start < stop:
        raise ExpressionError(f"range needs start < stop and step > 0, got start={start}, stop={stop}, step={step}")
    count = math.ceil((stop - start) / step - 1e-9)
    last = start + (count - 1) * step
    integer = all(isinstance(v, int) for v in (start, stop, step))
    return Param(name, low=start, high=last if integer else round(last, 12), integer=integer, step=step)


def _constant(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        return -node.operand.value
    if isinstance(node, ast.Name):  # bare words are strings, as in Hydra: choice(block3, block4)
        return node.id
    raise ExpressionError(f"expected a number or a word, got {ast.unparse(node)!r}")
