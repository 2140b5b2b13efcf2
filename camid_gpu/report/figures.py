"""Matplotlib for the report: imported on demand (an error naming the ``report`` extra), one style, and
figures rendered to embedded PNGs without software/date metadata, so the same run gives the same bytes.
"""
from __future__ import annotations

import base64
import io
from typing import Any

from camid_gpu.errors import MissingExtraError
from camid_gpu.report.html import esc

#: symlog linear range of the PCE axis: |PCE| below this is noise and is drawn linearly
PCE_LINTHRESH = 10.0

#: matplotlib settings of every figure (mathtext off: no text from a file is parsed as TeX)
RC = {"text.parse_math": False, "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8,
      "legend.fontsize": 7, "xtick.labelsize": 7, "ytick.labelsize": 7, "svg.hashsalt": "camid-report",
      "figure.dpi": 100, "savefig.dpi": 100, "axes.grid": False}

_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf"]


def load_matplotlib():
    try:
        import matplotlib
        from matplotlib.figure import Figure  # noqa: F401  (fails here, not half-way through)
    except ImportError:
        raise MissingExtraError("matplotlib", "report", "camid report") from None
    return matplotlib


def figure(width: float, height: float, layout: str | None = "constrained"):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout=layout)


def symlog(axis) -> None:
    """A symlog axis with plain-number labels and no minor ticks.

    Mathtext is off (``text.parse_math``: no text from a file is ever parsed as TeX), so the default
    ``10^{k}`` labels would show their source; minor ticks are dropped because measuring them
    dominates the rendering time.
    """
    from matplotlib.ticker import FuncFormatter, NullLocator

    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(_tick_label))


def _tick_label(value: float, _pos: Any = None) -> str:
    if value == 0:
        return "0"
    if abs(value) < 1e5:
        return f"{value:g}"
    return f"{value:.0e}".replace("e+0", "e").replace("e+", "e")


def png(fig, alt: str) -> str:
    """Render a figure to an embedded PNG <img> (no software/date metadata) and release it."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", metadata={"Software": None})
    finally:
        fig.clear()
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">'


def legend(ax, **kwargs: Any) -> None:
    """A legend only when something is labelled (an empty one warns)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def camera_color(index: int) -> str:
    return _PALETTE[index % len(_PALETTE)]
