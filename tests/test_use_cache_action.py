"""actions/use-cache: its shell step run for real, with the environment GitHub sets, against a running agent and none."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from runnerguard.agent.broker import CacheBroker
from runnerguard.agent.cache_server import CacheServer
from runnerguard.prewarm.specs import CacheSpec
from runnerguard.prewarm.warm import warm_cache
from tests.test_prewarm_server import LoopbackServer, cache_spec

ACTION = Path(__file__).resolve().parents[1] / "actions" / "use-cache" / "action.yml"
_EXPR = re.compile(r"\$\{\{\s*inputs\.([A-Za-z_-]+)\s*\}\}")


def action() -> dict[str, Any]:
    return yaml.safe_load(ACTION.read_text())


def run_step(tmp_path: Path, inputs: dict[str, str], **env: str) -> tuple[int, str, dict[str, str]]:
    """Run the step as the runner does: inputs (defaults applied) into the step's env, `bash -e -o pipefail`."""
    spec = action()
    values = {k: v.get("default", "") for k, v in spec["inputs"].items()} | inputs
    [step] = spec["runs"]["steps"]
    step_env = {k: _EXPR.sub(lambda m: values[m.group(1)], v) for k, v in step["env"].items()}
    script = tmp_path / "step.sh"
    script.write_text(step["run"])
    out = tmp_path / "github_output"
    out.write_text("")
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=tmp_path,
                          env={"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(out), **step_env, **env},
                          capture_output=True, text=True, timeout=120, check=False)
    outputs = dict(line.split("=", 1) for line in out.read_text().splitlines())
    return done.returncode, done.stdout + done.stderr, outputs


@pytest.fixture()
def model(tmp_path: Path) -> Iterator[tuple[CacheSpec, LoopbackServer]]:
    with LoopbackServer() as origin:
        blob = tmp_path / "model.bin"
        blob.write_bytes(os.urandom(200_000))
        yield cache_spec(tmp_path / "cache", origin.add(blob), blob, unpack="none", name="vosk-small"), origin


@pytest.fixture()
def agent(model: tuple[CacheSpec, LoopbackServer]) -> Iterator[CacheServer]:
    spec, _origin = model
    broker = CacheBroker(lambda s: warm_cache(s, host="laptop-extra", lock_wait=60))
    server = CacheServer("127.0.0.1", 0, broker=broker, caches=lambda: {spec.name: spec}).start()
    yield server
    server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_action_is_composite_with_the_documented_inputs_and_output() -> None:
    spec = action()
    assert spec["runs"]["using"] == "composite"
    assert {k: v.get("default") for k, v in spec["inputs"].items()} == {
        "name": None, "wait": "900", "required": "true", "agent": ""}
    assert spec["outputs"]["path"]["value"] == "${{ steps.ask.outputs.path }}"
    assert "${{" not in spec["runs"]["steps"][0]["run"]  # inputs never pasted into the script


def test_a_running_agent_gives_the_path(tmp_path: Path, agent: CacheServer,
                                        model: tuple[CacheSpec, LoopbackServer]) -> None:
    spec, _origin = model
    code, output, outputs = run_step(tmp_path, {"name": "vosk-small", "wait": "60", "agent": agent.url})
    assert code == 0, output
    assert outputs == {"path": str(spec.dest)} and (spec.dest / "model.bin").exists()
    assert agent.broker.take_answers() == {"vosk-small": {"hit": 0, "waited": 1}}


def test_the_agent_url_can_come_from_the_runners_environment(tmp_path: Path, agent: CacheServer) -> None:
    code, output, outputs = run_step(tmp_path, {"name": "vosk-small"}, RUNNERGUARD_AGENT_URL=agent.url)
    assert code == 0, output
    assert outputs["path"]


def test_no_agent_is_a_clear_error_or_a_warning_with_an_empty_path(tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    code, output, outputs = run_step(tmp_path, {"name": "vosk-small", "agent": nobody})
    assert code == 1 and "::error title=runnerguard use-cache::the runnerguard agent is not reachable" in output
    assert "Traceback" not in output and outputs == {}

    code, output, outputs = run_step(tmp_path, {"name": "vosk-small", "agent": nobody, "required": "false"})
    assert code == 0 and "::warning title=runnerguard use-cache::the runnerguard agent is not reachable" in output
    assert outputs == {"path": ""}


def test_an_undeclared_cache_or_a_timeout_says_which(tmp_path: Path, agent: CacheServer,
                                                     model: tuple[CacheSpec, LoopbackServer]) -> None:
    code, output, _ = run_step(tmp_path, {"name": "nope", "agent": agent.url})
    assert code == 1 and "'nope' is not declared in this runner host's runnerguard policy" in output
    _spec, origin = model
    origin.throttle = 0.05
    code, output, outputs = run_step(tmp_path, {"name": "vosk-small", "wait": "0", "agent": agent.url,
                                                "required": "false"})
    assert code == 0 and "not ready within 0s (state warming)" in output and outputs == {"path": ""}


@pytest.mark.parametrize(("inputs", "says"), [
    ({"name": "$(touch pwned)"}, "input 'name'"),
    ({"name": "../../etc"}, "input 'name'"),
    ({"name": "vosk-small", "wait": "1; touch pwned"}, "input 'wait'"),
    ({"name": "vosk-small", "wait": "7200"}, "input 'wait'"),
    ({"name": "vosk-small", "required": "maybe"}, "input 'required'"),
    ({"name": "vosk-small", "required": "false", "wait": "x"}, "input 'wait'"),  # bad input fails even then
])
def test_bad_inputs_fail_before_anything_is_asked(tmp_path: Path, inputs: dict[str, str], says: str) -> None:
    code, output, outputs = run_step(tmp_path, {"agent": f"http://127.0.0.1:{free_port()}", **inputs})
    assert code == 1 and says in output and outputs == {}
    assert not (tmp_path / "pwned").exists()
