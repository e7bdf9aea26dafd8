"""Soak test, run by hand: the pipeline at real-time speed for an hour, memory sampled each minute.

`python -m benchmarks.soak [seconds]` (default 3600) runs replay server, producer, features, score
and sink on a private stack (ports 29092-29105), samples each process's resident memory every
minute, and writes the "soak" section of RESULTS.md: memory after warm-up and at the end, and the
slope of a least-squares line through the samples (MB per hour).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import table, write_section
from tickwatch.drill_stack import PrivateStack, Services, ensure_champion, private_settings
from tickwatch.kafka import ensure_topics
from tickwatch.settings import Settings

SERVICES = ("replay-server", "produce", "features", "score", "sink")
WARMUP_S = 300
SAMPLE_S = 60


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
    rows = []
    for name in SERVICES:
        steady = [p for p in samples[name] if p[0] >= WARMUP_S] or samples[name]
        if not steady:
            continue
        rows.append(
            (
                name,
                round(steady[0][1], 1),
                round(steady[-1][1], 1),
                round(slope_per_hour(steady), 1),
            )
        )
    body = (
        f"The pipeline at real-time replay speed for {duration_s / 60:.0f} minutes on a private "
        f"stack; resident memory sampled every minute, the first {WARMUP_S // 60} minutes "
        f"(warm-up) left out of the slope. Restarts: {', '.join(restarts) or 'none'}.\n\n"
        + table(["service", "MB after warm-up", "MB at end", "slope MB/hour"], rows)
    )
    write_section("soak", "Soak: one hour at real-time speed", body)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 3600.0)
