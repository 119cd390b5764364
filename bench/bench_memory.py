"""Redis bytes per recorded job, this format against the format before issue #18, in the same run.

Run: make bench  (or .venv/bin/python bench/bench_memory.py [--jobs 10000 100000] [--full-wait])

Each run is a fresh redis-server and a driver process (bench/memory_driver.py) of one source tree: this checkout,
and commit BASELINE_SHORT (the last before the compressed format, extracted with `git archive`). A job is three
deliveries (queued, in_progress, completed) of a generated ~8 KB workflow_job payload (devtools/payloads.py: one
organisation, 20 repositories, 3 pools) through the real intake, then its tasks (timings, rollback check) through
the worker's own runner. Memory is `used_memory` after `MEMORY PURGE`, minus the empty server's.
`--full-wait` adds, at the first size, the issue's own measure: RQ's worker runs the tasks and the figure is taken
75 s after the last delivery (RQ keeps results 60 s), after the registry clean-up the worker does every 20 s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import ROOT, print_table

BASELINE_SHORT = "752ba8f"  # "store/watchdog: keyword-only time and reason", main before issue #18
DRIVER = ROOT / "bench/memory_driver.py"
PAYLOADS = ROOT / "devtools/payloads.py"
JOB_FAMILIES = ("job records", "pool indexes", "repo indexes", "job index", "cause records")  # ~31 d TTLs
JOB_RETENTION_DAYS, DELIVERY_RETENTION_DAYS = 30, 14  # config/settings.py defaults


def baseline_tree(into: Path) -> Path | None:
    """Commit BASELINE_SHORT's files, or None when this checkout does not have that commit (a shallow clone)."""
    archive = into / "baseline.tar"
    done = subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), BASELINE_SHORT],
                          check=False, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"(no baseline: git archive {BASELINE_SHORT} failed: {done.stderr.strip()[:200]})")
        return None
    tree = into / "baseline"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    # The baseline's own imports of ../shared (fixtures) resolve as from this checkout.
    return tree


def drive(tree: Path, jobs: int, wait: float, mode: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, str(DRIVER), str(tree), str(PAYLOADS), str(jobs), str(wait), mode],
                         check=False, capture_output=True, text=True, cwd=tree, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"driver failed in {tree}: {out.stderr[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def split(result: dict[str, object]) -> tuple[float, float]:
    """(bytes per job kept for the job retention, bytes per job kept for the delivery retention): the driver's
    per-family MEMORY USAGE shares, applied to the measured total (which also holds the allocator's and the
    key space's own overhead)."""
    families: dict[str, float] = result["families"]  # type: ignore[assignment]
    total = float(result["per_job"])  # type: ignore[arg-type]
    counted = sum(families.values()) or 1.0
    job_part = total * sum(v for k, v in families.items() if k in JOB_FAMILIES) / counted
    return job_part, total - job_part


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--full-wait", action="store_true", help="also the RQ worker run, measured after 75 s")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="runnerguard-bench-memory-") as tmp:
        old_tree = baseline_tree(Path(tmp))
        trees = {"today (752ba8f)": old_tree, "this format": ROOT}
        rows: list[tuple[str, ...]] = []
        results: dict[tuple[str, int, str], dict[str, object]] = {}
        runs = [(name, n, "direct", 0.0) for n in args.jobs for name in trees if trees[name] is not None]
        if args.full_wait:
            runs += [(name, args.jobs[0], "rq", 75.0) for name in trees if trees[name] is not None]
        # The two formats run side by side (each its own redis-server): the 75 s waits overlap.
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = {(name, n, mode): pool.submit(drive, trees[name], n, wait, mode)  # type: ignore[arg-type]
                       for name, n, mode, wait in runs}
            for key, future in futures.items():
                results[key] = future.result()
        for (name, n, mode), result in results.items():
            how = "worker's runner, no wait" if mode == "direct" else "RQ worker, 75 s after the last delivery"
            tables = float(result.get("key_space", 0)) / n  # type: ignore[arg-type]
            rows.append((f"{n:,}", name, how, f"{float(result['per_job']):,.0f}",  # type: ignore[arg-type]
                         f"{tables:,.0f}", f"{int(result.get('keys', 0)):,}"))  # type: ignore[call-overload]
        print_table("Redis bytes per recorded job (3 deliveries of ~8 KB each; used_memory after MEMORY PURGE)",
                    rows, ("jobs", "format", "tasks run by", "bytes/job", "of which key-space tables", "keys"))
        first = args.jobs[0]
        new = results[("this format", first, "direct")]
        old = results.get(("today (752ba8f)", first, "direct"))
        if old is not None:
            print(f"\nratio at {first:,} jobs: {float(old['per_job']) / float(new['per_job']):.1f}x less")  # type: ignore[arg-type]
        families = sorted(set(new["families"]) | set(old["families"] if old else {}))  # type: ignore[arg-type]
        print_table(f"where the bytes are at {first:,} jobs (MEMORY USAGE per key family, per job)",
                    [(f, f"{old['families'].get(f, 0):,.0f}" if old else "-",  # type: ignore[union-attr]
                      f"{new['families'].get(f, 0):,.0f}") for f in families],  # type: ignore[union-attr]
                    ("family", "today", "this format"))
        table = []
        for per_day in (1_000, 10_000, 100_000):
            cells = []
            for result in (old, new):
                if result is None:
                    cells.append("-")
                    continue
                job_part, delivery_part = split(result)
                total = per_day * (job_part * JOB_RETENTION_DAYS + delivery_part * DELIVERY_RETENTION_DAYS)
                cells.append(f"{total / 2**30:,.2f} GiB")
            table.append((f"{per_day:,}", *cells))
        print_table(f"Redis at the default retention (jobs {JOB_RETENTION_DAYS} d, deliveries "
                    f"{DELIVERY_RETENTION_DAYS} d), from the {first:,}-job run", table,
                    ("jobs a day", "today", "this format"))
        print(json.dumps({f"{name}@{n}/{mode}": round(float(r["per_job"]), 1)  # type: ignore[arg-type]
                          for (name, n, mode), r in results.items()}))


if __name__ == "__main__":
    main()
