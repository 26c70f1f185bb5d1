"""The benchmarks' figures, drawn with matplotlib's non-interactive backend, imported on first use."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def axes(path: Path, figsize: tuple[float, float]) -> Iterator[Axes]:
    """One set of axes to draw on; on leaving, a legend is added and the figure laid out, saved to ``path`` at
    120 dpi and closed."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=figsize, dpi=120)
    try:
        yield ax
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
