"""The job's side of the cache over real loopback HTTP: hits at once, waits on the warm in flight, one download."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from runnerguard.agent.broker import CacheBroker
from runnerguard.agent.cache_server import CacheServer
from runnerguard.errors import InvalidInput
from runnerguard.prewarm.specs import CacheSpec
from runnerguard.prewarm.warm import warm_cache
from tests.test_prewarm_server import LoopbackServer, cache_spec, sha256_file


@pytest.fixture()
def origin() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture()
def model(origin: LoopbackServer, tmp_path: Path) -> CacheSpec:
    blob = tmp_path / "vosk-model.bin"
    blob.write_bytes(os.urandom(640_000))
    return cache_spec(tmp_path / "cache", origin.add(blob), blob, unpack="none", name="vosk-small")


def serve(specs: list[CacheSpec]) -> CacheServer:
    broker = CacheBroker(lambda spec: warm_cache(spec, host="laptop-extra", lock_wait=60))
    return CacheServer("127.0.0.1", 0, broker=broker, caches=lambda: {s.name: s for s in specs}).start()


@pytest.fixture()
def agent(model: CacheSpec) -> Iterator[CacheServer]:
    server = serve([model])
    yield server
    server.stop()


def ask(server: CacheServer, name: str, wait: str | None = "30") -> requests.Response:
    params = {} if wait is None else {"wait": wait}
    return requests.get(f"{server.url}/caches/{name}", params=params, timeout=60)


def test_a_cold_cache_is_warmed_for_the_job_then_answered_at_once(agent: CacheServer, model: CacheSpec,
                                                                  origin: LoopbackServer) -> None:
    first = ask(agent, "vosk-small")
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["name"], body["state"], body["sha256"]) == ("vosk-small", "ready", model.sha256)
    assert body["path"] == str(model.dest) and sha256_file(model.dest / "vosk-model.bin") == model.sha256
    assert body["waited_s"] > 0

    second = ask(agent, "vosk-small")
    assert (second.status_code, second.json()["waited_s"]) == (200, 0.0)
    assert len(origin.gets()) == 1
    assert agent.broker.take_answers() == {"vosk-small": {"hit": 1, "waited": 1}}
    assert agent.broker.take_answers() == {}  # counts since the last report


def test_two_jobs_asking_during_the_queued_prewarm_share_its_one_download(agent: CacheServer, model: CacheSpec,
                                                                          origin: LoopbackServer) -> None:
    origin.throttle = 0.05  # ~0.5 s of download: both jobs arrive mid-way
    prewarm = threading.Thread(target=agent.broker.warm, args=(model,))
    prewarm.start()
    assert origin.body_started.wait(5)
    answers: list[requests.Response] = []
    jobs = [threading.Thread(target=lambda: answers.append(ask(agent, "vosk-small"))) for _ in range(2)]
    for job in jobs:
        job.start()
    for thread in (prewarm, *jobs):
        thread.join(30)

    assert [a.status_code for a in answers] == [200, 200]
    assert len(origin.gets()) == 1
    assert agent.broker.take_answers() == {"vosk-small": {"hit": 0, "waited": 2}}


def test_not_ready_within_wait_is_a_504_with_the_state(agent: CacheServer, origin: LoopbackServer) -> None:
    origin.throttle = 0.05
    late = ask(agent, "vosk-small", wait="0.2")
    assert late.status_code == 504
    assert late.json()["state"] == "warming" and "path" not in late.json()
    assert ask(agent, "vosk-small", wait="30").status_code == 200  # the same warm, still one download
    assert len(origin.gets()) == 1


def test_a_failed_warm_answers_504_failed_with_its_reason(tmp_path: Path, origin: LoopbackServer) -> None:
    blob = tmp_path / "m.bin"
    blob.write_bytes(b"not the pinned bytes")
    bad = cache_spec(tmp_path / "cache", origin.add(blob), blob, unpack="none", name="bad", sha256="0" * 64)
    server = serve([bad])
    try:
        answer = ask(server, "bad")
        assert answer.status_code == 504
        assert answer.json()["state"] == "failed" and "checksum mismatch" in answer.json()["error"]
        assert server.broker.take_answers() == {}
    finally:
        server.stop()


@pytest.mark.parametrize("name", ["not-declared", "..", "a%2Fb", "x" * 65, ""])
def test_a_name_the_policy_does_not_declare_is_404(agent: CacheServer, name: str) -> None:
    answer = ask(agent, name)
    assert answer.status_code == 404 and "path" not in answer.json()


@pytest.mark.parametrize("wait", ["-1", "abc", "3601", "1e3", "", "nan", "10&wait=20"])
def test_bad_wait_values_are_400(agent: CacheServer, wait: str) -> None:
    answer = requests.get(f"{agent.url}/caches/vosk-small?wait={wait}", timeout=5)
    assert answer.status_code == 400, answer.text


def test_only_get_and_only_loopback(agent: CacheServer, model: CacheSpec) -> None:
    assert requests.post(f"{agent.url}/caches/vosk-small", data=b"x" * 100, timeout=5).status_code == 405
    assert requests.get(f"{agent.url}/ping", timeout=5).json() == {"ok": True}
    for host in ("0.0.0.0", "192.0.2.1", "::", "example.org"):  # noqa: S104 - refusing them is the test
        with pytest.raises(InvalidInput):
            CacheServer(host, 0, broker=agent.broker, caches=lambda: {})


def test_a_file_changed_after_a_hit_is_not_answered_ready_at_once(agent: CacheServer, model: CacheSpec,
                                                                   origin: LoopbackServer) -> None:
    assert ask(agent, "vosk-small").status_code == 200
    assert ask(agent, "vosk-small").json()["waited_s"] == 0.0  # a hit: the stamp is now remembered
    with (model.dest / "vosk-model.bin").open("r+b") as fh:  # a job scribbles over the shared artifact
        fh.write(b"corrupt")

    again = ask(agent, "vosk-small")

    assert again.status_code == 200 and again.json()["waited_s"] > 0
    assert sha256_file(model.dest / "vosk-model.bin") == model.sha256
    assert len(origin.gets()) == 2
    assert agent.broker.take_answers() == {"vosk-small": {"hit": 1, "waited": 2}}
