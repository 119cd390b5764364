"""More than one machine (issue #18 §3): Redis Sentinel, rediss://, replicas per write, all on real redis-servers."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from app import create_app
from config import ConfigError, Settings, load_settings
from devtools.redis_sentinel import MASTER, SentinelSet, start_sentinel_set
from devtools.redis_server import RedisServer, free_port, start_redis
from runnerguard.store import connection, deliveries
from runnerguard.web import agent
from tests.helpers import ADMIN, SECRET, dumps, signed_headers
from tests.test_timeline import job_payload

PASSWORD = "data-password-0123456789"
SENTINEL_PASSWORD = "sentinel-password-0123456789"
BASE = {"GITHUB_WEBHOOK_SECRET": SECRET, "ADMIN_TOKEN": ADMIN, "RUNNERGUARD_HOST": "test-host",
        "RUNNERGUARD_MAX_DELIVERY_AGE_HOURS": "0"}


def _sentinel_env(group: SentinelSet, **extra: str) -> dict[str, str]:
    return {**BASE, "REDIS_SENTINELS": group.sentinel_list, "REDIS_SENTINEL_MASTER": MASTER,
            "REDIS_PASSWORD": PASSWORD, "REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD, **extra}


def _post(client, guid: str, job_id: int = 7):  # type: ignore[no-untyped-def]
    body = dumps(job_payload("queued", id=job_id, run_id=job_id * 10))
    return client.post("/webhooks/github", data=body, headers=signed_headers(body, "workflow_job", guid=guid))


@pytest.fixture(scope="module")
def sentinels() -> Iterator[SentinelSet]:
    """A primary, two replicas and three Sentinels on loopback, for the tests that do not kill anything."""
    with start_sentinel_set(password=PASSWORD, sentinel_password=SENTINEL_PASSWORD) as group:
        yield group


# --- settings: every key, wrong ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("env", "key"), [
    ({"REDIS_SENTINELS": "10.0.0.1:26379"}, "REDIS_SENTINEL_MASTER"),
    ({"REDIS_SENTINEL_MASTER": "rg"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "10.0.0.1", "REDIS_SENTINEL_MASTER": "rg"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "10.0.0.1:0", "REDIS_SENTINEL_MASTER": "rg"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "10.0.0.1:65536", "REDIS_SENTINEL_MASTER": "rg"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "a b:26379", "REDIS_SENTINEL_MASTER": "rg"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "x/../y:26379", "REDIS_SENTINEL_MASTER": "rg"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": " , ", "REDIS_SENTINEL_MASTER": "rg"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "h:1", "REDIS_SENTINEL_MASTER": "rg\nSHUTDOWN"}, "REDIS_SENTINEL_MASTER"),
    ({"REDIS_SENTINELS": "h:1", "REDIS_SENTINEL_MASTER": "rg", "REDIS_URL": "redis://other:6379/0"}, "REDIS_URL"),
    ({"REDIS_SENTINELS": "h:1", "REDIS_SENTINEL_MASTER": "rg", "REDIS_URL": "unix:///tmp/r.sock"}, "REDIS_URL"),
    ({"REDIS_URL": "redis://h/0", "RUNNERGUARD_REDIS_MIN_REPLICAS": "-1"}, "RUNNERGUARD_REDIS_MIN_REPLICAS"),
    ({"REDIS_URL": "redis://h/0", "RUNNERGUARD_REDIS_MIN_REPLICAS": "one"}, "RUNNERGUARD_REDIS_MIN_REPLICAS"),
    ({"REDIS_URL": "redis://h/0", "RUNNERGUARD_REDIS_WAIT_MS": "0"}, "RUNNERGUARD_REDIS_WAIT_MS"),
    ({"REDIS_URL": "redis://h/0", "RUNNERGUARD_REDIS_WAIT_MS": "9000"}, "RUNNERGUARD_REDIS_WAIT_MS"),
    ({"REDIS_URL": "redis://h/0", "RUNNERGUARD_PERIODIC_EVERY_SECONDS": "x"}, "RUNNERGUARD_PERIODIC_EVERY_SECONDS"),
    ({}, "REDIS_URL"),
])
def test_a_wrong_redis_setting_is_refused_naming_its_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({**BASE, **env})
    assert raised.value.key == key, raised.value


def test_sentinel_settings_are_read_and_their_passwords_stay_out_of_repr() -> None:
    settings = load_settings({**BASE, "REDIS_SENTINELS": "10.0.0.1:26379, [fd00::2]:26380,s3.internal:26381",
                              "REDIS_SENTINEL_MASTER": "rg-main", "REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
                              "REDIS_PASSWORD": PASSWORD, "RUNNERGUARD_REDIS_MIN_REPLICAS": "1"})
    assert settings.redis_sentinels == (("10.0.0.1", 26379), ("fd00::2", 26380), ("s3.internal", 26381))
    assert settings.redis_sentinel_master == "rg-main"
    assert settings.redis_min_replicas == 1 and settings.redis_wait_ms == 1000
    assert SENTINEL_PASSWORD not in repr(settings) and PASSWORD not in repr(settings)


# --- the connection factory ----------------------------------------------------------------------------------------

def test_redis_password_is_used_when_the_url_has_none_and_a_wrong_one_is_refused() -> None:
    with start_redis(password=PASSWORD) as server:
        url = f"redis://127.0.0.1:{server.port}/0"
        assert connection.connect(load_settings({**BASE, "REDIS_URL": url, "REDIS_PASSWORD": PASSWORD})).ping()
        wrong = connection.connect(load_settings({**BASE, "REDIS_URL": url, "REDIS_PASSWORD": "wrong-password-x"}))
        with pytest.raises(redis.AuthenticationError):
            wrong.ping()


def test_the_sentinels_name_the_primary_and_every_write_goes_there(sentinels: SentinelSet) -> None:
    client = connection.connect(load_settings(_sentinel_env(sentinels)))
    client.set("rg:test:where", "primary")
    assert client.info("replication")["role"] == "master"
    assert sentinels.client(sentinels.data[0]).get("rg:test:where") == b"primary"


def test_a_wrong_sentinel_password_finds_no_primary_and_the_intake_answers_503(sentinels: SentinelSet) -> None:
    app = create_app(load_settings(_sentinel_env(sentinels, REDIS_SENTINEL_PASSWORD="not-the-password-xx")))
    response = _post(app.test_client(), "wrong-sentinel-pw")
    assert response.status_code == 503, response.get_json()
    assert not sentinels.client(sentinels.data[0]).exists("rg:delivery:wrong-sentinel-pw")


def test_a_wrong_data_password_behind_the_sentinels_answers_503(sentinels: SentinelSet) -> None:
    app = create_app(load_settings(_sentinel_env(sentinels, REDIS_PASSWORD="not-the-password-xx")))
    assert _post(app.test_client(), "wrong-data-pw").status_code == 503


def test_an_unknown_master_name_answers_503(sentinels: SentinelSet) -> None:
    app = create_app(load_settings(_sentinel_env(sentinels, REDIS_SENTINEL_MASTER="nobody")))
    assert _post(app.test_client(), "unknown-master").status_code == 503


# --- RUNNERGUARD_REDIS_MIN_REPLICAS --------------------------------------------------------------------------------

def test_with_one_replica_required_an_acknowledged_delivery_is_already_on_a_replica(sentinels: SentinelSet) -> None:
    app = create_app(load_settings(_sentinel_env(sentinels, RUNNERGUARD_REDIS_MIN_REPLICAS="2")))
    response = _post(app.test_client(), "replicated-1", job_id=8)
    assert response.status_code == 202, response.get_json()
    # WAIT answered for both replicas before the 202: each holds the delivery now, no polling.
    for replica in sentinels.data[1:]:
        stored = deliveries.load(sentinels.client(replica), "replicated-1")
        assert stored is not None and stored.event == "workflow_job"


def test_more_replicas_required_than_exist_answer_503_and_the_redelivery_too(sentinels: SentinelSet) -> None:
    app = create_app(load_settings(_sentinel_env(sentinels, RUNNERGUARD_REDIS_MIN_REPLICAS="3",
                                                 RUNNERGUARD_REDIS_WAIT_MS="100")))
    client = app.test_client()
    started = time.monotonic()
    assert _post(client, "short-1", job_id=9).status_code == 503
    assert time.monotonic() - started < 2  # bounded by RUNNERGUARD_REDIS_WAIT_MS, not by GitHub's 10 s
    # GitHub redelivers: still not enough replicas, so still no acknowledgement (a duplicate is not a free pass).
    assert _post(client, "short-1", job_id=9).status_code == 503


def test_a_lone_primary_with_a_replica_required_never_acknowledges(settings: Settings,
                                                                    redis_client: redis.Redis) -> None:
    app = create_app(settings.with_overrides(redis_min_replicas=1, redis_wait_ms=50))
    assert _post(app.test_client(), "lone-1").status_code == 503
    # Without the requirement the same Redis acknowledges at once: the 503 above came from the replica count.
    assert _post(create_app(settings).test_client(), "lone-2", job_id=12).status_code == 202


def test_the_replica_wait_survives_a_flushed_script_cache(sentinels: SentinelSet) -> None:
    app = create_app(load_settings(_sentinel_env(sentinels, RUNNERGUARD_REDIS_MIN_REPLICAS="1")))
    client = app.test_client()
    assert _post(client, "script-1", job_id=13).status_code == 202
    sentinels.client(sentinels.data[0]).script_flush()  # as a new primary after a failover would be
    assert _post(client, "script-2", job_id=14).status_code == 202


def test_the_replica_wait_survives_lost_job_templates(sentinels: SentinelSet) -> None:
    """A primary that lost the RQ job templates (an old copy promoted, a flush): the delivery still gets whole jobs."""
    app = create_app(load_settings(_sentinel_env(sentinels, RUNNERGUARD_REDIS_MIN_REPLICAS="1")))
    client = app.test_client()
    assert _post(client, "tpl-1", job_id=15).status_code == 202
    primary = sentinels.client(sentinels.data[0])
    primary.delete(*primary.keys("rg:rqtpl:*"))
    assert _post(client, "tpl-2", job_id=16).status_code == 202
    assert primary.hget("rq:job:tpl-2_timings", "status") == b"queued"
    assert primary.hkeys("rq:job:tpl-2_timings") and \
        set(primary.hkeys("rq:job:tpl-2_timings")) == set(primary.hkeys("rq:job:tpl-1_timings"))


# --- a failover under load (SIGKILL of the primary) -----------------------------------------------------------------

def test_a_killed_primary_fails_over_and_no_acknowledged_delivery_is_lost() -> None:
    with start_sentinel_set(password=PASSWORD, sentinel_password=SENTINEL_PASSWORD) as group:
        app = create_app(load_settings(_sentinel_env(group, RUNNERGUARD_REDIS_MIN_REPLICAS="1",
                                                     RUNNERGUARD_REDIS_WAIT_MS="500")))
        client = app.test_client()
        answers: dict[str, int] = {}
        stop = threading.Event()
        killed_at: list[float] = []

        def load() -> None:
            n = 0
            while not stop.is_set() and n < 20000:  # ~100 s at the pace below: the stop comes first
                n += 1
                guid = f"fo-{n}"
                answers[guid] = _post(client, guid, job_id=1000 + n).status_code
                # Paced, as deliveries arrive: while the primary is away most 503s are answered at once (the
                # intake's gate), and an unpaced loop would spend its budget before the new primary is up.
                time.sleep(0.005)

        thread = threading.Thread(target=load)
        thread.start()
        time.sleep(1.0)
        old = group.primary_address()
        group.data[0].kill()
        killed_at.append(time.monotonic())
        deadline = time.monotonic() + 30
        while group.primary_address() == old and time.monotonic() < deadline:
            time.sleep(0.1)
        new = group.primary_address()
        time.sleep(2.0)  # load goes on against the new primary
        stop.set()
        thread.join(timeout=30)
        assert new != old, "no failover within 30 s"
        assert set(answers.values()) <= {202, 503}, sorted(set(answers.values()))
        acked = [g for g, status in answers.items() if status == 202]
        assert sum(1 for s in answers.values() if s == 503) > 0  # the primary was really away for a while
        assert answers[max(answers, key=lambda g: int(g.split("-")[1]))] == 202  # and the intake came back
        primary = group.client(group.node_at(new))  # type: ignore[arg-type]
        missing = [g for g in acked if not primary.exists(f"rg:delivery:{g}")]
        assert missing == [], f"{len(missing)} of {len(acked)} acknowledged deliveries lost"


# --- rediss:// -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, Path]]:
    certs = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(certs / "key.pem"),
                    "-out", str(certs / "cert.pem")], check=True, capture_output=True, timeout=60)
    port = free_port()
    plain = free_port()
    server = start_redis(port=plain, password=PASSWORD, extra_args=[
        "--tls-port", str(port), "--tls-cert-file", str(certs / "cert.pem"), "--tls-key-file",
        str(certs / "key.pem"), "--tls-ca-cert-file", str(certs / "cert.pem"), "--tls-auth-clients", "no"])
    server.port = port  # what the tests use: the TLS port
    yield server, certs / "cert.pem"
    server.stop()


def test_rediss_talks_tls_to_a_managed_redis_and_checks_its_certificate(tls_redis: tuple[RedisServer, Path]) -> None:
    server, ca = tls_redis
    url = f"rediss://:{PASSWORD}@127.0.0.1:{server.port}/0"
    client = connection.connect(load_settings({**BASE, "REDIS_URL": f"{url}?ssl_ca_certs={ca}"}))
    assert client.ping()
    app = create_app(load_settings({**BASE, "REDIS_URL": f"{url}?ssl_ca_certs={ca}"}))
    assert _post(app.test_client(), "tls-1").status_code == 202
    # A certificate nobody vouches for (the system's CAs only) is refused: no silent downgrade to "trust anyone".
    with pytest.raises(redis.ConnectionError):
        connection.connect(load_settings({**BASE, "REDIS_URL": url})).ping()
    # Plain redis:// to the TLS port is no answer either.
    with pytest.raises(redis.RedisError):
        connection.connect(load_settings({**BASE, "REDIS_URL": f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"}),
                           socket_timeout=1).ping()


def test_the_web_waits_for_redis_briefly_but_never_shorter_than_its_replica_wait() -> None:
    plain = load_settings({**BASE, "REDIS_URL": "redis://h/0"})
    waiting = load_settings({**BASE, "REDIS_URL": "redis://h/0", "RUNNERGUARD_REDIS_MIN_REPLICAS": "1",
                             "RUNNERGUARD_REDIS_WAIT_MS": "5000"})
    assert connection.web_socket_timeout(plain) == connection.WEB_SOCKET_TIMEOUT
    assert connection.web_socket_timeout(waiting) == 6.0  # WAIT's answer comes after up to 5 s: no timeout before


def test_the_agents_long_polls_reach_the_primary_through_the_sentinels_too(sentinels: SentinelSet) -> None:
    app = create_app(load_settings(_sentinel_env(sentinels)))
    blocking = app.extensions[agent.EXTENSION].blocking
    blocking.set("rg:test:polls", "1")  # a write: only the primary takes it
    assert sentinels.client(sentinels.data[0]).get("rg:test:polls") == b"1"


@pytest.fixture()
def silent_sentinel() -> Iterator[str]:
    """host:port of a Sentinel whose host was cut off: connections to it neither succeed nor fail, they time out
    (a listener whose accept queue is full drops further SYNs)."""
    import socket  # noqa: PLC0415 - only this fixture needs it

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(4):  # fill the accept queue (never accepted)
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(listener.getsockname())
        fillers.append(filler)
    time.sleep(0.1)
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    for filler in fillers:
        filler.close()
    listener.close()


def test_a_silent_sentinel_first_in_the_list_costs_a_lookup_about_its_timeout(sentinels: SentinelSet,
                                                                              silent_sentinel: str) -> None:
    env = _sentinel_env(sentinels)
    settings = load_settings({**env, "REDIS_SENTINELS": f"{silent_sentinel},{env['REDIS_SENTINELS']}"})
    client = connection.connect(settings)
    began = time.monotonic()
    assert client.ping()
    took = time.monotonic() - began
    # one attempt at the silent one (connection.SENTINEL_TIMEOUT), then the next answers; redis-py's default
    # retries made this ~14 s
    assert took < connection.SENTINEL_TIMEOUT * 2 + 1, f"the lookup took {took:.1f} s"
