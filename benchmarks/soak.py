"""Soak test, run by hand: the pipeline at real-time speed for an hour, memory sampled each minute.

`python -m benchmarks.soak [seconds]` (default 3600) runs replay server, producer, features, score
and sink on a private stack (ports 29092-29105), samples each process's resident memory every
minute, and writes the "soak" section of RESULTS.md: memory after warm-up and at the end, the
slope of a least-squares line through the samples (MB per hour), the same over the last half of
the run, and the verdict: no restart and no service growing over that last half.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from ops.drill_stack import PrivateStack, Services, ensure_champion, private_settings
from ops.results import Verdict, met, table, write_section
from tickwatch.kafka import ensure_topics
from tickwatch.settings import Settings

SERVICES = ("replay-server", "produce", "features", "score", "sink")
WARMUP_S = 300
SAMPLE_S = 60
FLAT_MB_PER_HOUR = 5.0  # over the last half of the run: past caches filling up, nothing grows


def rss_mb(pid: int | None) -> float:
    """Resident set size of a process in MB (0 if gone)."""
    if pid is None:
        return 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) points, in MB per hour."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    var = sum((p[0] - mx) ** 2 for p in points)
    cov = sum((p[0] - mx) * (p[1] - my) for p in points)
    return cov / var * 3600 if var else 0.0


def main(duration_s: float = 3600.0) -> None:
    work = Path(tempfile.mkdtemp(prefix="tickwatch-soak-"))
    models = Path(".run/drill-models").resolve()
    settings = private_settings(
        Settings(_env_file=None), work / "run", models, speed=1.0, port_base=29_090
    )
    settings = settings.model_copy(update={"topic_prefix": "soak-"})
    stack = PrivateStack(settings)
    services = Services(settings)
    samples: dict[str, list[tuple[float, float]]] = {s: [] for s in SERVICES}
    restarts: list[str] = []
    try:
        stack.start()
        ensure_champion(settings, models)
        ensure_topics(settings)
        for name in SERVICES:
            services.start(name)
        t0 = time.monotonic()
        while time.monotonic() - t0 < duration_s:
            time.sleep(SAMPLE_S)
            restarts += services.restart_dead()
            t = time.monotonic() - t0
            for name in SERVICES:
                samples[name].append((t, rss_mb(services.procs[name].pid())))
            print(
                f"{t:6.0f}s " + " ".join(f"{n}={samples[n][-1][1]:.0f}MB" for n in SERVICES),
                flush=True,
            )
    finally:
        services.stop()
        stack.stop()
    rows, late_slopes = [], {}
    for name in SERVICES:
        steady = [p for p in samples[name] if p[0] >= WARMUP_S] or samples[name]
        if not steady:
            continue
        late_slopes[name] = slope_per_hour(steady[len(steady) // 2 :])
        rows.append(
            (
                name,
                round(steady[0][1], 1),
                round(steady[-1][1], 1),
                round(slope_per_hour(steady), 1),
                round(late_slopes[name], 1),
            )
        )
    growing = [n for n, s in late_slopes.items() if s > FLAT_MB_PER_HOUR]
    unsampled = [n for n in SERVICES if n not in late_slopes]
    verdict = met(not growing and not unsampled and not restarts)
    goal = (
        f"no restart; every service's memory over the last half of the run grows at most "
        f"{FLAT_MB_PER_HOUR:g} MB/hour"
    )
    minutes = f"{duration_s / 60:.0f} minutes"
    body = (
        f"The pipeline at real-time replay speed for {minutes} on a private "
        f"stack; resident memory sampled every minute, the first {WARMUP_S // 60} minutes "
        f"(warm-up) left out of the slopes. Restarts: {', '.join(restarts) or 'none'}.\n\n"
        + table(
            [
                "service",
                "MB after warm-up",
                "MB at end",
                "slope MB/hour",
                "slope MB/hour, last half",
            ],
            rows,
        )
        + f"\n\nGoal: {goal}. Growing: {', '.join(growing) or 'none'}"
        + (f"; not sampled: {', '.join(unsampled)}" if unsampled else "")
        + f". Verdict: {verdict}."
    )
    summary = Verdict(
        f"soak: the pipeline at real-time speed for {minutes}",
        f"restarts: {len(restarts)}; largest slope over the last half "
        + (f"{max(late_slopes.values()):.1f} MB/hour" if late_slopes else "-"),
        "each service against itself after warm-up",
        goal,
        verdict,
    )
    write_section(
        "soak",
        f"Soak: {minutes} at real-time speed",
        body,
        [summary],
        command="python -m benchmarks.soak",
    )


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 3600.0)
