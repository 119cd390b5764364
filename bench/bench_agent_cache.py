"""Agent cache benchmark: a job's answer on a hit vs a bare GET of the same loopback server; one download for three."""

from __future__ import annotations

import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from runnerguard.agent.broker import CacheBroker  # noqa: E402
from runnerguard.agent.cache_server import CacheServer  # noqa: E402
from runnerguard.prewarm.specs import CacheSpec  # noqa: E402
from runnerguard.prewarm.warm import warm_cache  # noqa: E402
from tests.test_prewarm_server import LoopbackServer, cache_spec  # noqa: E402 - the origin the tests use

ROUNDS = 3000
WARMUP = 200
P99_TARGET_MS = 20.0
MODEL_FILES = 200  # an unpacked model's worth of files: the hit check stats each of them


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _server(specs: list[CacheSpec]) -> CacheServer:
    broker = CacheBroker(lambda spec: warm_cache(spec, host="bench", lock_wait=600))
    return CacheServer("127.0.0.1", 0, broker=broker, caches=lambda: {s.name: s for s in specs}).start()


def _times(port: int, path: str, rounds: int) -> list[float]:
    """Milliseconds per GET over one keep-alive connection, as a job's client would ask."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out: list[float] = []
    for n in range(rounds + WARMUP):
        started = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        elapsed = (time.perf_counter() - started) * 1000
        if resp.status != 200:
            raise SystemExit(f"{path} answered {resp.status}: {body[:200]!r}")
        if n >= WARMUP:
            out.append(elapsed)
    conn.close()
    return out


def _zip_model(work: Path) -> Path:
    import zipfile  # noqa: PLC0415 - only this benchmark's set-up needs it

    archive = work / "model.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for n in range(MODEL_FILES):
            zf.writestr(f"vosk-model/part-{n:03d}.bin", os.urandom(4096))
    return archive


def bench_hit(work: Path, origin: LoopbackServer) -> tuple[list[tuple[str, str]], bool]:
    archive = _zip_model(work)
    spec = cache_spec(work / "cache", origin.add(archive), archive, unpack="zip", name="vosk-small")
    server = _server([spec])
    try:
        first = json.loads(http_get(server.port, "/caches/vosk-small?wait=60"))
        assert first["state"] == "ready", first
        hits = _times(server.port, "/caches/vosk-small", ROUNDS)
        bare = _times(server.port, "/ping", ROUNDS)
        answers = server.broker.take_answers()
    finally:
        server.stop()
    assert answers == {"vosk-small": {"hit": ROUNDS + WARMUP, "waited": 1}}, answers
    p99_hit, p99_bare = _percentile(hits, 0.99), _percentile(bare, 0.99)
    rows = [
        (f"hit: GET /caches/NAME ({MODEL_FILES} files stat-checked)",
         f"p50 {statistics.median(hits):.2f} ms, p99 {p99_hit:.2f} ms"),
        ("baseline: GET /ping, same server", f"p50 {statistics.median(bare):.2f} ms, p99 {p99_bare:.2f} ms"),
        ("hit p99 - baseline p99", f"{p99_hit - p99_bare:+.2f} ms"),
        ("target: hit p99", f"< {P99_TARGET_MS:.0f} ms: {'met' if p99_hit < P99_TARGET_MS else 'MISSED'}"),
    ]
    return rows, p99_hit < P99_TARGET_MS


def http_get(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("GET", path)
    body = conn.getresponse().read()
    conn.close()
    return body


def bench_one_download(work: Path, origin: LoopbackServer) -> tuple[list[tuple[str, str]], bool]:
    blob = work / "model-big.bin"
    blob.write_bytes(os.urandom(8 << 20))
    spec = cache_spec(work / "cache2", origin.add(blob), blob, unpack="none", name="vosk-big")
    server = _server([spec])
    origin.throttle = 0.002  # 128 chunks of 64 KiB: ~0.3 s of download, both jobs arrive while it runs
    try:
        started = time.perf_counter()
        prewarm = threading.Thread(target=server.broker.warm, args=(spec,))  # the queued pre-warm work item
        prewarm.start()
        if not origin.body_started.wait(10):
            raise SystemExit("the pre-warm never started downloading")
        answers: list[dict[str, object]] = []
        jobs = [threading.Thread(target=lambda: answers.append(json.loads(http_get(server.port,
                                                                                   "/caches/vosk-big?wait=120"))))
                for _ in range(2)]
        for job in jobs:
            job.start()
        for thread in (prewarm, *jobs):
            thread.join(120)
        seconds = time.perf_counter() - started
    finally:
        origin.throttle = 0.0
        server.stop()
    downloads = len(origin.gets("/model-big.bin"))
    ok = downloads == 1 and [a.get("state") for a in answers] == ["ready", "ready"]
    rows = [
        ("two jobs during the queued pre-warm", f"answers {[a.get('state') for a in answers]}, "
                                                f"waited {[a.get('waited_s') for a in answers]} s"),
        ("downloads counted at the origin", f"{downloads} (target 1: {'met' if downloads == 1 else 'MISSED'}), "
                                            f"{seconds:.2f} s in all"),
    ]
    return rows, ok


def main() -> int:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rg-bench-agent-") as tmp, LoopbackServer() as origin:
        hit_rows, hit_ok = bench_hit(Path(tmp), origin)
        dl_rows, dl_ok = bench_one_download(Path(tmp), origin)
    rows = hit_rows + dl_rows
    width = max(len(r[0]) for r in rows)
    print(f"agent cache server on loopback, {ROUNDS} requests per series over one keep-alive connection")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    print(f"wall time {time.perf_counter() - started:.1f} s")
    return 0 if hit_ok and dl_ok else 1


if __name__ == "__main__":
    sys.exit(main())
