"""GitHub fixtures for the whole suite: an App key, the GitHub simulator over real HTTP, clients on real Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from flask import Flask, Response, request
from werkzeug.serving import make_server

from devtools.github_simulator import SimulatorServer
from runnerguard.github import GitHubApp, InstallationClient, RetryPolicy

APP_ID = 4242
REPO = "octo-org/hello-world"
WORKFLOW = """name: CI
on: [push]
jobs:
  build:
    runs-on: [self-hosted, linux, gpu]
    steps:
      - run: make test
"""
REPO_FILES = {"README.md": "# hello\n", ".github/workflows/ci.yml": WORKFLOW, "src/app.py": "print('hi')\n"}


class FakeClock:
    """Epoch time that moves only when slept on or advanced: waits are recorded, never spent."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += max(seconds, 0.0)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def app_key() -> RSAPrivateKey:
    """The App's RSA key, generated once per session."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def app_key_pem(app_key: RSAPrivateKey) -> bytes:
    return app_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())


@pytest.fixture(scope="session")
def app_public_pem(app_key: RSAPrivateKey) -> bytes:
    return app_key.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture()
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture()
def github_sim(app_public_pem: bytes, fake_clock: FakeClock) -> Iterator[SimulatorServer]:
    """A running GitHub simulator for one test, on the same fake clock as the client."""
    with SimulatorServer(app_id=APP_ID, app_public_key_pem=app_public_pem, clock=fake_clock,
                         timeout_delay=0.6) as server:
        yield server


def make_app(github_sim: SimulatorServer, app_key: RSAPrivateKey, redis_client: redis.Redis, clock: FakeClock,
             **overrides: object) -> GitHubApp:
    options: dict[str, object] = {"timeout": (2.0, 5.0), "retry": RetryPolicy()} | overrides
    return GitHubApp(api_url=github_sim.url, app_id=APP_ID, private_key=app_key, redis=redis_client, clock=clock,
                     sleep=clock.sleep, **options)  # type: ignore[arg-type]


@pytest.fixture()
def github_app(github_sim: SimulatorServer, app_key: RSAPrivateKey, redis_client: redis.Redis,
               fake_clock: FakeClock) -> GitHubApp:
    """The App client wired to the simulator, real Redis and the fake clock/sleeper."""
    return make_app(github_sim, app_key, redis_client, fake_clock)


@pytest.fixture()
def app_factory(github_sim: SimulatorServer, app_key: RSAPrivateKey, redis_client: redis.Redis,
                fake_clock: FakeClock) -> Callable[..., GitHubApp]:
    """More App clients (another worker, other timeouts or retry policy) on the same simulator, Redis and clock."""

    def factory(**overrides: object) -> GitHubApp:
        connection = redis.Redis(connection_pool=redis_client.connection_pool)
        return make_app(github_sim, app_key, connection, fake_clock, **overrides)

    return factory


@pytest.fixture()
def sim_repo(github_sim: SimulatorServer) -> tuple[str, int]:
    """`octo-org/hello-world` with a self-hosted workflow, the App installed on it: (full name, installation id)."""
    github_sim.add_repo(REPO, REPO_FILES)
    return REPO, github_sim.install([REPO])


@pytest.fixture()
def installation_client(github_app: GitHubApp, sim_repo: tuple[str, int]) -> InstallationClient:
    return github_app.installation(sim_repo[1])


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    """A real HTTP endpoint that records what is POSTed to it and answers `status`."""

    status: int = 202
    received: list[Received] = field(default_factory=list)
    url: str = ""

    def wsgi(self) -> Flask:
        app = Flask("webhook_receiver")

        @app.post("/webhook")
        def hook() -> Response:
            self.received.append(Received(dict(request.headers), request.get_data()))
            return Response("{}", status=self.status, mimetype="application/json")

        return app


@pytest.fixture()
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    server = make_server("127.0.0.1", 0, receiver.wsgi(), threaded=True)
    receiver.url = f"http://127.0.0.1:{server.server_port}/webhook"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
