"""Prewarm benchmark: stamp hit check of a 1 GiB artifact vs re-hashing it; cold download vs curl on loopback."""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from runnerguard.prewarm import stamp  # noqa: E402
from runnerguard.prewarm.specs import CacheSpec  # noqa: E402
from runnerguard.prewarm.warm import warm_cache  # noqa: E402
from tests.test_prewarm_server import LoopbackServer  # noqa: E402 - the same fake server the tests use

SPARSE_BYTES = 1 << 30
SAMPLE_BYTES = 64 << 20
DOWNLOAD_BYTES = 200 << 20
ROUNDS = 5
HIT_TARGET_MS = 50.0
THROUGHPUT_TARGET = 0.80
MIB = 1 << 20


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _sha256_prefix(path: Path, length: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while length > 0 and (block := fh.read(min(4 * MIB, length))):
            digest.update(block)
            length -= len(block)
    return digest.hexdigest()


def bench_hit(work: Path) -> list[tuple[str, str, str]]:
    """A 1 GiB sparse artifact, stamped as installed: the hit check must not read it."""
    root = work / "hit-cache"
    dest = root / "vosk-model-en-us-0.22"
    dest.mkdir(parents=True)
    big = dest / "model.bin"
    with big.open("wb") as fh:
        fh.truncate(SPARSE_BYTES)  # sparse: no disk blocks, but every byte must still be hashed by a re-check

    sample_s = _timed(lambda: _sha256_prefix(big, SAMPLE_BYTES))
    extrapolated_ms = sample_s * SPARSE_BYTES / SAMPLE_BYTES * 1000
    sha = ""

    def full() -> None:
        nonlocal sha
        sha = stamp.file_sha256(big)

    full_ms = _timed(full) * 1000
    spec = CacheSpec.from_mapping({
        "name": "vosk-model-en-us-0.22", "url": "http://127.0.0.1:9/model.bin", "sha256": sha, "dest": str(dest),
        "unpack": "none", "pools": ["bench"], "ttl_seconds": 0,
    })
    stamp.write_stamp(dest, stamp.build_stamp(spec, dest, {"model.bin": sha}, now=time.time()))

    checks = []
    for _ in range(200):
        started = time.perf_counter()
        verdict, _found = stamp.check(spec)
        checks.append((time.perf_counter() - started) * 1000)
        assert verdict == "hit", verdict
    warms = []
    for _ in range(100):
        result = warm_cache(spec, host="bench")
        assert result.result == "hit", result
        warms.append(result.seconds * 1000)

    def row(label: str, samples: list[float]) -> tuple[str, str, str]:
        p99 = sorted(samples)[int(len(samples) * 0.99) - 1]
        ok = "yes" if p99 < HIT_TARGET_MS else "NO"
        return label, f"median {statistics.median(samples):.3f} ms, p99 {p99:.3f} ms", f"< {HIT_TARGET_MS:.0f} ms: {ok}"

    return [
        row("hit: stamp check only (stat), 1 GiB sparse", checks),
        row("hit: warm_cache incl. the host flock", warms),
        ("full sha256 of the same 1 GiB, measured", f"{full_ms:.0f} ms", "what a hit avoids"),
        (f"full sha256, extrapolated from {SAMPLE_BYTES // MIB} MiB", f"{extrapolated_ms:.0f} ms", "(sample x 16)"),
    ]


def bench_download(work: Path) -> list[tuple[str, str, str]]:
    """The same 200 MiB file from the same loopback server, alternating clients each round."""
    payload = work / "payload.bin"
    block = os.urandom(MIB)
    with payload.open("wb") as fh:
        for i in range(DOWNLOAD_BYTES // MIB):
            fh.write(block[i:] + block[:i])  # distinct blocks, cheap to make
    sha = stamp.file_sha256(payload)
    curl = shutil.which("curl")
    with LoopbackServer() as server:
        url = server.add(payload)
        spec = CacheSpec.from_mapping({
            "name": "payload", "url": url, "sha256": sha, "dest": str(work / "dl-cache" / "payload"),
            "unpack": "none", "pools": ["bench"], "ttl_seconds": 0,
        })
        session = requests.Session()

        def warm() -> None:
            shutil.rmtree(spec.dest, ignore_errors=True)
            started = time.perf_counter()
            result = warm_cache(spec, host="bench", session=session)
            timings["warm_cache"].append(time.perf_counter() - started)
            assert result.result == "miss", result

        def with_curl() -> None:
            assert curl is not None
            out = work / "curl.out"
            started = time.perf_counter()
            subprocess.run([curl, "-s", "-o", str(out), url], check=True)
            timings["curl"].append(time.perf_counter() - started)
            out.unlink()

        def plain_requests() -> None:
            out = work / "requests.out"
            started = time.perf_counter()
            with session.get(url, stream=True, timeout=30) as resp, out.open("wb") as fh:
                for chunk in resp.iter_content(MIB):
                    fh.write(chunk)
            timings["requests (no hash)"].append(time.perf_counter() - started)
            out.unlink()

        timings: dict[str, list[float]] = {"warm_cache": [], "requests (no hash)": []}
        runners = [warm, plain_requests]
        if curl:
            timings["curl"] = []
            runners.insert(0, with_curl)
        for _ in range(ROUNDS):
            for runner in runners:
                runner()
        session.close()

    # best of N is the figure compared: on a shared host the slower rounds measure the neighbours, not the client
    mbps = {name: DOWNLOAD_BYTES / MIB / min(samples) for name, samples in timings.items()}
    median = {name: DOWNLOAD_BYTES / MIB / statistics.median(samples) for name, samples in timings.items()}
    baseline = "curl" if curl else "requests (no hash)"
    rows = [(f"cold download {DOWNLOAD_BYTES // MIB} MiB: {name}",
             f"best {rate:.0f} MiB/s, median {median[name]:.0f} MiB/s ({ROUNDS} rounds)", "")
            for name, rate in mbps.items()]
    ratio = mbps["warm_cache"] / mbps[baseline]
    median_ratio = median["warm_cache"] / median[baseline]
    verdict = "yes" if ratio >= THROUGHPUT_TARGET else "NO"
    note = "" if curl else " (curl not installed: plain requests streaming is the baseline)"
    rows.append((f"warm_cache / {baseline}{note}", f"{ratio:.0%} best vs best, {median_ratio:.0%} median vs median",
                 f">= {THROUGHPUT_TARGET:.0%} (best): {verdict}"))
    return rows


def main() -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rg-bench-") as tmp:
        rows = bench_hit(Path(tmp)) + bench_download(Path(tmp))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    line = "  ".join("-" * w for w in widths)
    print(f"{'measurement':<{widths[0]}}  {'result':<{widths[1]}}  target")
    print(line)
    for label, value, target in rows:
        print(f"{label:<{widths[0]}}  {value:<{widths[1]}}  {target}")
    print(line)
    print("the hash rows read a sparse file (no disk blocks: kernel copy + SHA-256 only; a real model on disk adds")
    print("its read time); the extrapolated row hashes the first 64 MiB and scales by 16; download rows alternate")
    print(f"clients against one loopback server (sendfile). wall time {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
