"""The PNG of a load run: latency percentiles against offered rate, product and relay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after the backend is chosen

from .steps import P99_GOAL_MS  # noqa: E402

STYLE = {"p50": ":", "p90": "--", "p99": "-"}


def latency_plot(runs: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """``runs``: label -> steps. Log scale: the relay's and the product's differ tenfold."""
    figure, axes = plt.subplots(figsize=(8, 5), dpi=100)
    for (label, steps), colour in zip(runs.items(), ("tab:blue", "tab:orange", "tab:green"),
                                      strict=False):
        rates = [s["offered"] for s in steps]
        for key, style in STYLE.items():
            axes.plot(rates, [max(s[key], 0.01) for s in steps], style, color=colour, marker="o",
                      markersize=3, label=f"{label} {key}")
    axes.axhline(P99_GOAL_MS, color="grey", linewidth=0.8, label=f"p99 goal {P99_GOAL_MS:.0f} ms")
    axes.set(xscale="log", yscale="log", xlabel="offered rate (msg/s)",
             ylabel="send → first arrival (ms)",
             title="Durable 1:1 latency against offered rate (same clients, same machine)")
    offered = sorted({s["offered"] for steps in runs.values() for s in steps})
    axes.set_xticks(offered, [f"{r:,.0f}" for r in offered])
    axes.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    axes.legend(fontsize=7, ncol=len(runs), loc="lower right")
    axes.grid(True, which="both", linewidth=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
