"""The agent's settings and the [[host]] policy table: what a runner host needs, and what it must never need."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from config import ConfigError, load_agent_settings, parse_policy
from runnerguard.agent import hostconfig
from runnerguard.prewarm.specs import HostSpec, SpecError

BASE = {"RUNNERGUARD_URL": "https://runnerguard.example.org/", "RUNNERGUARD_HOST": "laptop-extra",
        "RUNNERGUARD_HOST_TOKEN": "t0k"}


def test_three_settings_are_enough_and_redis_or_the_webhook_secret_are_never_needed() -> None:
    settings = load_agent_settings(BASE)
    assert (settings.url, settings.host, settings.token) == ("https://runnerguard.example.org", "laptop-extra", "t0k")
    assert (settings.listen_host, settings.listen_port, settings.policy_path) == ("127.0.0.1", 8377, None)
    assert "t0k" not in repr(settings)


def test_a_missing_token_is_not_a_configuration_error() -> None:
    # the agent says so and retries instead of exiting: systemd would otherwise restart it in a loop
    assert load_agent_settings({**BASE, "RUNNERGUARD_HOST_TOKEN": ""}).token == ""


@pytest.mark.parametrize(("url", "ok"), [
    ("https://runnerguard.example.org", True),
    ("http://127.0.0.1:8000", True),
    ("http://[::1]:8000", True),
    ("http://localhost:8000", True),
    ("http://runnerguard.example.org", False),  # the token would cross the network in clear
    ("http://10.0.0.5:8000", False),
    ("ftp://runnerguard.example.org", False),
    ("https://user:pw@runnerguard.example.org", False),
    ("https://runnerguard.example.org/?x=1", False),
    ("runnerguard.example.org", False),
    ("", False),
])
def test_the_web_tier_url_must_be_https_unless_loopback(url: str, ok: bool) -> None:
    env = {**BASE, "RUNNERGUARD_URL": url}
    if ok:
        assert load_agent_settings(env).url == url.rstrip("/")
    else:
        with pytest.raises(ConfigError) as err:
            load_agent_settings(env)
        assert err.value.key == "RUNNERGUARD_URL"


@pytest.mark.parametrize(("listen", "expected"), [
    ("127.0.0.1:8377", ("127.0.0.1", 8377)), ("[::1]:9000", ("::1", 9000)), ("localhost:0", ("127.0.0.1", 0)),
    ("127.0.0.2:1", ("127.0.0.2", 1)),
])
def test_the_cache_listener_takes_loopback_addresses(listen: str, expected: tuple[str, int]) -> None:
    settings = load_agent_settings({**BASE, "RUNNERGUARD_AGENT_LISTEN": listen})
    assert (settings.listen_host, settings.listen_port) == expected


@pytest.mark.parametrize("listen", ["0.0.0.0:8377", "[::]:8377", "192.168.1.5:8377", "example.org:80", "127.0.0.1",
                                    "127.0.0.1:99999", "127.0.0.1:x"])
def test_a_non_loopback_or_malformed_listen_address_is_refused_at_start(listen: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_agent_settings({**BASE, "RUNNERGUARD_AGENT_LISTEN": listen})
    assert err.value.key == "RUNNERGUARD_AGENT_LISTEN"


def test_the_host_name_defaults_to_the_machines() -> None:
    assert load_agent_settings({**BASE, "RUNNERGUARD_HOST": ""}).host == socket.gethostname().split(".")[0]


@pytest.mark.parametrize("host", ["..", "a/b", "x" * 65, "laptop extra"])
def test_the_host_name_is_validated(host: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_agent_settings({**BASE, "RUNNERGUARD_HOST": host})
    assert err.value.key == "RUNNERGUARD_HOST"


def test_host_table_defaults_and_its_paths() -> None:
    spec = HostSpec.from_mapping({"name": "laptop-extra", "runner_dir": "/home/c/actions-runner"})
    assert (spec.cleanup_at, spec.keep_days, spec.dry_run, spec.service) == (0.80, 7, False, None)
    assert (spec.work_dir, spec.diag_dir) == (Path("/home/c/actions-runner/_work"), Path("/home/c/actions-runner/_diag"))


@pytest.mark.parametrize(("table", "key"), [
    ({"runner_dir": "/r"}, "name"),
    ({"name": "h", "runner_dir": "relative"}, "runner_dir"),
    ({"name": "h", "runner_dir": "/r/../etc"}, "runner_dir"),
    ({"name": "h", "runner_dir": "/"}, "runner_dir"),
    ({"name": "h", "runner_dir": "/r", "service": "x.service; rm -rf /"}, "service"),
    ({"name": "h", "runner_dir": "/r", "service": "--now.service"}, "service"),
    ({"name": "h", "runner_dir": "/r", "service": "sshd"}, "service"),
    ({"name": "h", "runner_dir": "/r", "cleanup_at": 1.5}, "cleanup_at"),
    ({"name": "h", "runner_dir": "/r", "cleanup_at": True}, "cleanup_at"),
    ({"name": "h", "runner_dir": "/r", "keep_days": -1}, "keep_days"),
    ({"name": "h", "runner_dir": "/r", "dry_run": "yes"}, "dry_run"),
    ({"name": "h", "runner_dir": "/r", "rm": "-rf"}, "rm"),
])
def test_a_bad_host_table_names_its_key(table: dict[str, object], key: str) -> None:
    with pytest.raises(SpecError) as err:
        HostSpec.from_mapping(table)
    assert err.value.key == key


def test_the_policy_declares_hosts() -> None:
    policy = parse_policy({"host": [{"name": "laptop-extra", "runner_dir": "/home/c/actions-runner",
                                     "service": "actions.runner.Coldaine-ColdVox.laptop-extra.service"}]})
    host = policy.host("laptop-extra")
    assert host is not None and host.service == "actions.runner.Coldaine-ColdVox.laptop-extra.service"
    assert policy.host("other") is None
    with pytest.raises(ConfigError) as err:
        parse_policy({"host": [{"name": "a", "runner_dir": "/r", "cleanup_at": 2}]})
    assert err.value.key.startswith("host") and err.value.key.endswith("cleanup_at")


def test_a_local_policys_host_table_becomes_the_agents(tmp_path: Path) -> None:
    policy = parse_policy({
        "pool": [{"name": "laptop", "labels": ["self-hosted"], "hosts": ["laptop-extra"]}],
        "host": [{"name": "laptop-extra", "runner_dir": "/home/c/actions-runner", "keep_days": 3, "dry_run": True}],
    })
    local = hostconfig.from_local(policy, "laptop-extra")
    assert local.host == HostSpec(name="laptop-extra", runner_dir=Path("/home/c/actions-runner"), keep_days=3,
                                  dry_run=True)
    assert hostconfig.from_local(policy, "other").host is None
