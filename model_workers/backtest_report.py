"""The backtest's Markdown report: metrics tables and PNG plots (price with flags, score)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from model_workers.evaluation import EventMetrics

MAX_PLOTTED_SYMBOLS = 12


def metrics_table(metrics: dict[str, EventMetrics]) -> pd.DataFrame:
    """One row per detector: precision, recall, F1, false alarms, delay, per-type recall."""
    return pd.DataFrame([m.row(name) for name, m in metrics.items()])


def markdown_table(df: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table (floats to 3 decimals)."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append(
            "| " + " | ".join(f"{x:.3f}" if isinstance(x, float) else str(x) for x in row) + " |"
        )
    return "\n".join(lines)


def plot_symbol(
    scored: pd.DataFrame, symbol: str, labels: pd.DataFrame | None, out_dir: Path
) -> str:
    """Price with flagged bars (labelled spans shaded) over the score; returns the file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = scored[scored["symbol"] == symbol]
    t = pd.to_datetime(df["timestamp"], unit="ms", utc=True)
    x = np.arange(len(df))  # bar index: no overnight gaps in the plot
    fig, (ax1, ax2) = plt.subplots(
        2, 1, figsize=(12, 5.5), sharex=True, gridspec_kw={"height_ratios": [2, 1]}
    )
    ax1.plot(x, df["close"], lw=0.7, color="#333")
    flagged = df["is_anomaly"].to_numpy(bool)
    ax1.scatter(
        x[flagged],
        df["close"].to_numpy()[flagged],
        color="#d62728",
        s=14,
        zorder=3,
        label="flagged",
    )
    if labels is not None and len(labels):
        ts = df["timestamp"].to_numpy()
        for lab in labels[labels["symbol"] == symbol].itertuples(index=False):
            inside = np.flatnonzero((ts >= lab.start) & (ts <= lab.end))
            if len(inside):
                ax1.axvspan(inside[0] - 0.5, inside[-1] + 0.5, color="#ff7f0e", alpha=0.25)
    ax1.set_title(f"{symbol}: close with flagged bars (shaded: labelled anomalies)")
    ax1.legend(loc="upper left")
    ax2.plot(x, df["score"], lw=0.6, color="#1f77b4")
    ax2.axhline(1.0, color="#d62728", lw=0.8, ls="--")
    ax2.set_ylabel("score (1 = threshold)")
    ticks: np.ndarray | list[int] = np.linspace(0, len(df) - 1, 6).astype(int) if len(df) else []
    ax2.set_xticks(ticks, [t.iloc[i].strftime("%m-%d %H:%M") for i in ticks])
    fig.tight_layout()
    name = f"{symbol}.png"
    fig.savefig(out_dir / name, dpi=90)
    plt.close(fig)
    return name


def write_report(
    out_dir: Path,
    scored: pd.DataFrame,
    metrics: dict[str, EventMetrics] | None,
    labels: pd.DataFrame | None,
    model: str,
    refused: int,
) -> Path:
    """Write report.md (and the PNGs) into `out_dir`; returns the report path."""
    lines = [
        "# tickwatch backtest",
        "",
        f"- models: `{model}`",
        f"- bars scored: {len(scored):,} ({scored['symbol'].nunique()} symbols); "
        f"refused rows: {refused}",
        f"- flagged bars: {int(scored['is_anomaly'].sum()):,}",
        "",
    ]
    if metrics:
        table = metrics_table(metrics)
        main = [
            "detector",
            "precision",
            "recall",
            "f1",
            "false_alarms_per_symbol_day",
            "mean_delay_min",
            "alerts",
            "events",
        ]
        lines += [
            "## Event-level metrics",
            "",
            "An alert is a flagged bar with no flagged bar of its symbol in the previous "
            "cooldown; it detects a labelled event if it falls between the event's start "
            "and 5 minutes after its end.",
            "",
            markdown_table(table[main]),
            "",
            "## Recall by anomaly type",
            "",
            markdown_table(
                table[["detector", *[c for c in table.columns if c.startswith("recall_")]]]
            ),
            "",
        ]
    lines += ["## Plots", ""]
    for symbol in sorted(scored["symbol"].unique())[:MAX_PLOTTED_SYMBOLS]:
        lines.append(f"![{symbol}]({plot_symbol(scored, symbol, labels, out_dir)})")
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
