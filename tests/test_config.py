"""Settings from the environment and the fleet policy: good values load, bad ones name the key and why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from config import ConfigError, load_policy, load_settings, parse_policy

BASE = {"GITHUB_WEBHOOK_SECRET": "s3cret", "REDIS_URL": "redis://127.0.0.1:6390/0"}
CACHE = {"name": "c", "url": "https://example.org/m.zip", "sha256": "a" * 64, "unpack": "zip",
         "dest": "/var/cache/runnerguard/models/m", "pools": ["a"]}


def test_defaults() -> None:
    settings = load_settings(BASE)
    assert settings.redis_url == "redis://127.0.0.1:6390/0"
    assert settings.github_api_url == "https://api.github.com"
    assert settings.max_body_bytes == 1024 * 1024 and settings.job_retention_days == 30
    assert settings.queues == ("events", "github")
    assert "s3cret" not in repr(settings)


def test_the_service_refuses_to_start_without_a_webhook_secret() -> None:
    for env in ({}, {"GITHUB_WEBHOOK_SECRET": "  "}):
        with pytest.raises(ConfigError, match="GITHUB_WEBHOOK_SECRET: is required"):
            load_settings(env)


def test_there_is_no_default_redis_url() -> None:
    # A guessed redis://127.0.0.1:6379/0 could be somebody else's Redis: without REDIS_URL nothing starts.
    for value in (None, "", "  "):
        env = {"GITHUB_WEBHOOK_SECRET": "s3cret"} if value is None else {**BASE, "REDIS_URL": value}
        with pytest.raises(ConfigError, match="REDIS_URL: is required"):
            load_settings(env)


@pytest.mark.parametrize("key, value, message", [
    ("RUNNERGUARD_MAX_BODY_BYTES", "lots", "whole number"),
    ("RUNNERGUARD_MAX_BODY_BYTES", "0", "at least 1"),
    ("GITHUB_API_URL", "ftp://x", "http"),
    ("REDIS_URL", "localhost:6379", "redis://"),
    ("GITHUB_APP_ID", "my-app", "numeric"),
    ("GITHUB_APP_ID", "12", "GITHUB_PRIVATE_KEY_PATH: is required"),
    ("GITHUB_PRIVATE_KEY", "-----BEGIN", "GITHUB_APP_ID: is required"),
])
def test_bad_settings_name_the_key(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({**BASE, key: value})


def test_an_unreadable_or_non_rsa_key_stops_start_up_without_showing_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings({**BASE, "GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY_PATH": str(tmp_path / "missing.pem")})
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "ec.pem").write_bytes(ec_pem)
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, "GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY_PATH": str(tmp_path / "ec.pem")})
    assert "RSA" in str(caught.value) and "PRIVATE KEY" not in str(caught.value)


def test_a_good_key_loads(tmp_path: Path, app_key_pem: bytes) -> None:
    (tmp_path / "app.pem").write_bytes(app_key_pem)
    settings = load_settings({**BASE, "GITHUB_APP_ID": "42", "GITHUB_PRIVATE_KEY_PATH": str(tmp_path / "app.pem")})
    assert settings.github_app_id == "42"


def test_the_example_policy_is_valid() -> None:
    policy = load_policy(Path(__file__).resolve().parents[1] / "config/policy.example.toml")
    assert policy.pools[0].name == "laptop"
    assert policy.failure_rate_for("laptop").threshold == 0.6
    assert policy.failure_rate_for("laptop").window_seconds == 86400
    assert policy.rollback.failure_rate.threshold == 0.5


def test_no_policy_is_the_seeds_rule() -> None:
    policy = load_policy(None)
    rule = policy.rollback.failure_rate
    assert (rule.window_seconds, rule.threshold, rule.min_jobs) == (86400, 0.5, 6)
    assert policy.pools == ()


@pytest.mark.parametrize("data, key", [
    ({"pool": [{"labels": ["self-hosted"]}]}, "pool[0].name"),
    ({"pool": [{"name": "a b", "labels": ["x"]}]}, "pool[0].name"),
    ({"pool": [{"name": "a"}]}, "pool.a.labels"),
    ({"pool": [{"name": "a", "labels": []}]}, "pool.a.labels"),
    ({"pool": [{"name": "a", "labels": ["x y"]}]}, "pool.a.labels"),
    ({"pool": [{"name": "a", "labels": ["x"], "colour": "red"}]}, "pool[0].colour"),
    ({"pool": [{"name": "a", "labels": ["x"], "rollback": {"threshold": 2}}]}, "pool.a.rollback.threshold"),
    ({"pool": [{"name": "a", "labels": ["x"]}, {"name": "a", "labels": ["y"]}]}, "pool.a"),
    ({"pool": [{"name": "a", "labels": ["x"], "fallback": ["ubuntu-latest"]}]}, "pool.a.fallback"),
    ({"rollback": {"dry_run": "yes"}}, "rollback.dry_run"),
    ({"rollback": {"failure_rate": {"window": "a day"}}}, "rollback.failure_rate.window"),
    ({"rollback": {"failure_rate": {"min_jobs": 0}}}, "rollback.failure_rate.min_jobs"),
    ({"rollback": {"stuck_queue": {"after": "-2h"}}}, "rollback.stuck_queue.after"),
    ({"cache": [{**CACHE, "pools": ["ghost"]}], "pool": [{"name": "a", "labels": ["x"]}]}, "cache.c.pools"),
    ({"cache": [{**CACHE, "sha256": "abc"}], "pool": [{"name": "a", "labels": ["x"]}]}, "cache[0].sha256"),
    ({"cache": [{**CACHE, "dest": "relative/dir"}], "pool": [{"name": "a", "labels": ["x"]}]}, "cache[0].dest"),
    ({"cache": [CACHE, {**CACHE, "name": "d"}], "pool": [{"name": "a", "labels": ["x"]}]}, "cache.dest"),
    ({"command": [{"name": "f", "argv": "cargo fetch", "cwd": "/srv", "pools": ["a"]}],
      "pool": [{"name": "a", "labels": ["x"]}]}, "command[0].argv"),
    ({"pools": []}, "policy.pools"),
])
def test_bad_policies_name_the_key_and_why(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_policy(data)
    assert caught.value.key == key, str(caught.value)
    assert caught.value.why


def test_policy_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_policy(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[[pool]\nname =")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_policy(tmp_path / "bad.toml")


def test_web_and_worker_refuse_to_start_without_the_secret() -> None:

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNERGUARD_"))}
    web = subprocess.run([sys.executable, "-c", "import app; app.create_app()"], cwd=root, env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert web.returncode != 0 and "GITHUB_WEBHOOK_SECRET: is required" in web.stderr
    worker = subprocess.run([sys.executable, "worker.py", "--burst"], cwd=root, env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert worker.returncode == 2 and "GITHUB_WEBHOOK_SECRET: is required" in worker.stderr
