"""Where `deliveries send-test` posts: RUNNERGUARD_URL, else HOST and PORT; anything odd is refused by name."""

from __future__ import annotations

import pytest

from config import ConfigError
from config.service_url import service_url


@pytest.mark.parametrize("env, url", [
    ({}, "http://127.0.0.1:8000"),
    ({"PORT": "8123"}, "http://127.0.0.1:8123"),
    ({"HOST": "0.0.0.0", "PORT": "9000"}, "http://127.0.0.1:9000"),  # noqa: S104 - bound to all, reached on loopback
    ({"HOST": "::1"}, "http://[::1]:8000"),
    ({"HOST": "runnerguard.lan"}, "http://runnerguard.lan:8000"),
    ({"RUNNERGUARD_URL": "https://rg.example.com/prefix/", "PORT": "1"}, "https://rg.example.com/prefix"),
])
def test_the_service_url(env: dict[str, str], url: str) -> None:
    assert service_url(env) == url


@pytest.mark.parametrize("env, key", [
    ({"RUNNERGUARD_URL": "ftp://rg.example.com"}, "RUNNERGUARD_URL"),
    ({"RUNNERGUARD_URL": "http://user:pw@rg.example.com"}, "RUNNERGUARD_URL"),
    ({"RUNNERGUARD_URL": "http://127.0.0.1:8000@evil.example"}, "RUNNERGUARD_URL"),
    ({"RUNNERGUARD_URL": "http://rg.example.com/?next=http://evil.example"}, "RUNNERGUARD_URL"),
    ({"RUNNERGUARD_URL": "http://rg.example.com:99999"}, "RUNNERGUARD_URL"),
    ({"RUNNERGUARD_URL": "http://rg.example.com/a b"}, "RUNNERGUARD_URL"),
    ({"HOST": "127.0.0.1/evil?"}, "HOST"),
    ({"HOST": "evil.example#"}, "HOST"),
    ({"HOST": "a\nb"}, "HOST"),
    ({"PORT": "0"}, "PORT"),
    ({"PORT": "8000/x"}, "PORT"),
    ({"PORT": "65536"}, "PORT"),
])
def test_odd_values_are_refused_by_name(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=f"^{key}: "):
        service_url(env)
