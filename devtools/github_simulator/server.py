"""Run the simulator on a free loopback port in a background thread (tests, demos, benchmarks)."""

from __future__ import annotations

import threading
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from werkzeug.exceptions import NotFound
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import make_server

from devtools.github_simulator import events
from devtools.github_simulator.app import create_simulator
from devtools.github_simulator.state import Simulator
from devtools.github_simulator.webhooks import SimDelivery

_not_found = NotFound()


class SimulatorServer:
    """`SimulatorServer(app_id=..., app_public_key_pem=...)`: serving at `.url` until `.stop()`.

    `own_web_url=True`: the `html_url`s it hands out (pull requests, jobs) are its own pages, not github.com's.

    Control methods of `Simulator` (add_repo, install, fail_next, ...) are reachable on the server itself.
    """

    def __init__(self, *, app_id: int, app_public_key_pem: bytes | RSAPublicKey, host: str = "127.0.0.1",
                 port: int = 0, prefix: str = "", own_web_url: bool = False, **options: Any) -> None:
        self.app = create_simulator(app_id=app_id, app_public_key_pem=app_public_key_pem, **options)
        self.sim: Simulator = self.app.extensions["github_simulator"]
        self.prefix = prefix.rstrip("/")
        # A prefix such as "/api/v3" serves the API the way GitHub Enterprise Server does.
        wsgi: Any = DispatcherMiddleware(_not_found, {self.prefix: self.app}) if self.prefix else self.app
        self._server = make_server(host, port, wsgi, threaded=True)
        self.host, self.port = host, self._server.server_port
        if own_web_url:
            # html_urls point at the simulator's own pages (web_pages.py) instead of github.com.
            self.sim.web_url = self.url
        # A short poll interval keeps stop() (and so every test's teardown) fast.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="github-simulator", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.prefix}"

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the server lacks: the control API lives on the Simulator.
        return getattr(self.__dict__["sim"], name)

    def __repr__(self) -> str:
        return f"SimulatorServer(url={self.url!r})"

    def configure_webhook(self, url: str, secret: str) -> None:
        """The App's webhook URL and secret, used by `deliver`, `emit_workflow_job` and redeliveries."""
        self.sim.deliveries.configure(url, secret)

    def send_webhook(self, url: str, event: str, payload: dict[str, Any], secret: str) -> SimDelivery:
        """POST a signed webhook to `url` and record it in the App's delivery log."""
        return self.sim.deliveries.send(url, event, payload, secret)

    def deliver(self, event: str, payload: dict[str, Any]) -> SimDelivery:
        deliveries = self.sim.deliveries
        if not deliveries.url or not deliveries.secret:
            raise RuntimeError("configure_webhook(url, secret) first")
        return deliveries.send(deliveries.url, event, payload, deliveries.secret)

    def workflow_job_payload(self, full_name: str, job_id: int, action: str) -> dict[str, Any]:
        return events.workflow_job(self.sim, self.url, full_name, self.sim.repo(full_name).jobs[job_id], action)

    def emit_workflow_job(self, full_name: str, job_id: int, action: str) -> SimDelivery:
        """Move the job to `action`'s status and send the `workflow_job` webhook to the configured URL."""
        job = self.sim.repo(full_name).jobs[job_id]
        now = self.sim.clock()
        job.status = action
        if action == "in_progress":
            job.started_at, job.runner_name = now, job.runner_name or "runner-1"
        if action == "completed":
            job.completed_at, job.conclusion = now, job.conclusion or "success"
        return self.deliver("workflow_job", self.workflow_job_payload(full_name, job_id, action))

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SimulatorServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
