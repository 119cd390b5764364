"""Policy tables for caches and commands are validated strictly; payload-borne names pass `safe_name` or nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runnerguard.prewarm.specs import CacheSpec, CommandSpec, SpecError, check_unique, safe_name, safe_repo

SHA = "ab" * 32


def cache_table(**overrides: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "name": "vosk-model-small-en-us-0.15",
        "url": "https://alphacephei.com/vosk/models/vosk-model-small-en-us-0.15.zip",
        "sha256": SHA,
        "dest": "/home/runner/_cache/vosk-models/small-en-us-0.15",
        "unpack": "zip",
        "pools": ["laptop"],
    }
    table.update(overrides)
    return {k: v for k, v in table.items() if v is not None}


def command_table(**overrides: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "name": "cargo-fetch",
        "argv": ["cargo", "fetch", "--locked"],
        "cwd": "/srv/mirrors/coldvox",
        "timeout_seconds": 600,
        "env_allow": ["CARGO_HOME", "HOME"],
        "pools": ["laptop"],
    }
    table.update(overrides)
    return {k: v for k, v in table.items() if v is not None}


def test_seed_vosk_table_loads_with_its_defaults() -> None:
    spec = CacheSpec.from_mapping(cache_table(repos=["Coldaine/ColdVox"], size=41_205_931, quota_bytes=5 << 30))
    assert spec.dest == Path("/home/runner/_cache/vosk-models/small-en-us-0.15")
    assert spec.root == Path("/home/runner/_cache/vosk-models")
    assert spec.pools == ("laptop",)
    assert spec.repos == ("Coldaine/ColdVox",)
    assert spec.ttl_seconds == 600
    assert spec.unpack == "zip"


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"name": "../etc"}, "name"),
        ({"name": ".."}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"name": None}, "name"),
        ({"url": "ftp://example.org/model.zip"}, "url"),
        ({"url": "file:///etc/passwd"}, "url"),
        ({"url": "https:///no-host"}, "url"),
        ({"url": "https://example.org/a b.zip"}, "url"),
        ({"sha256": "AB" * 32}, "sha256"),
        ({"sha256": "ab" * 31}, "sha256"),
        ({"dest": "relative/models"}, "dest"),
        ({"dest": "/srv/cache/../../etc"}, "dest"),
        ({"dest": "/models"}, "dest"),
        ({"unpack": "rar"}, "unpack"),
        ({"pools": "laptop"}, "pools"),
        ({"pools": []}, "pools"),
        ({"pools": ["la ptop"]}, "pools"),
        ({"repos": ["not-a-full-name"]}, "repos"),
        ({"repos": ["owner/../x"]}, "repos"),
        ({"size": True}, "size"),
        ({"size": 0}, "size"),
        ({"size": "40MB"}, "size"),
        ({"quota_bytes": -1}, "quota_bytes"),
        ({"size": 100, "quota_bytes": 10}, "quota_bytes"),
        ({"ttl_seconds": -5}, "ttl_seconds"),
        ({"checksum": SHA}, "checksum"),
    ],
)
def test_each_bad_cache_key_is_named_in_the_error(overrides: dict[str, Any], key: str) -> None:
    with pytest.raises(SpecError) as caught:
        CacheSpec.from_mapping(cache_table(**overrides))
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{key}: ")


def test_unknown_key_error_lists_the_allowed_ones() -> None:
    with pytest.raises(SpecError, match=r"strip_components: unknown key in \[\[cache\]\] \(allowed: dest, name"):
        CacheSpec.from_mapping(cache_table(strip_components=1))


def test_command_table_keeps_argv_as_a_tuple() -> None:
    spec = CommandSpec.from_mapping(command_table())
    assert spec.argv == ("cargo", "fetch", "--locked")
    assert spec.timeout_seconds == 600.0
    assert spec.env_allow == ("CARGO_HOME", "HOME")


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"argv": "cargo fetch --locked"}, "argv"),
        ({"argv": []}, "argv"),
        ({"argv": ["", "x"]}, "argv"),
        ({"argv": ["git", "fetch\x00"]}, "argv"),
        ({"argv": ["git", 3]}, "argv"),
        ({"cwd": "mirrors/coldvox"}, "cwd"),
        ({"timeout_seconds": None}, "timeout_seconds"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"timeout_seconds": "10m"}, "timeout_seconds"),
        ({"env_allow": ["HOME", "LD_PRELOAD=x"]}, "env_allow"),
        ({"env_allow": "HOME"}, "env_allow"),
        ({"pools": None}, "pools"),
        ({"shell": True}, "shell"),
    ],
)
def test_each_bad_command_key_is_named_in_the_error(overrides: dict[str, Any], key: str) -> None:
    with pytest.raises(SpecError) as caught:
        CommandSpec.from_mapping(command_table(**overrides))
    assert caught.value.key == key


@pytest.mark.parametrize("value", ["", ".", "..", "...", "a/b", "a b", "naïve", "x\n", "$(id)", "a;b", 7, None])
def test_safe_name_refuses_anything_outside_the_class(value: object) -> None:
    with pytest.raises(SpecError):
        safe_name(value)


@given(st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True).filter(lambda s: set(s) != {"."}))
def test_safe_name_returns_every_allowed_name_unchanged(value: str) -> None:
    assert safe_name(value) == value


@given(st.text(min_size=1, max_size=80))
def test_safe_name_never_lets_a_separator_or_parent_through(value: str) -> None:
    try:
        name = safe_name(value)
    except SpecError:
        return
    assert "/" not in name and "\x00" not in name and name not in (".", "..")


def test_safe_repo_checks_both_halves() -> None:
    assert safe_repo("Coldaine/ColdVox") == "Coldaine/ColdVox"
    for bad in ("Coldaine", "a/b/c", "../x", "a/..", "a/b c"):
        with pytest.raises(SpecError):
            safe_repo(bad)


def test_policy_with_a_duplicate_name_or_overlapping_dests_is_refused() -> None:
    small = CacheSpec.from_mapping(cache_table())
    large = CacheSpec.from_mapping(cache_table(name="vosk-model-en-us-0.22", dest="/home/runner/_cache/vosk-models/en"))
    check_unique([small, large])
    nested = CacheSpec.from_mapping(cache_table(name="inner", dest=f"{small.dest}/inner"))
    with pytest.raises(SpecError, match=r"name: cache 'vosk-model-small-en-us-0\.15' is defined twice"):
        check_unique([small, large, small])
    with pytest.raises(SpecError, match=r"^dest: caches .* overlap"):
        check_unique([small, nested])


def test_spec_serves_its_pools_and_only_its_repositories_when_it_lists_some() -> None:
    anyone = CacheSpec.from_mapping(cache_table())
    coldvox = CacheSpec.from_mapping(cache_table(repos=["Coldaine/ColdVox"]))
    fetch = CommandSpec.from_mapping(command_table(repos=["Coldaine/ColdVox"]))
    assert anyone.serves("laptop") and anyone.serves("laptop", "someone/else")
    assert not anyone.serves("gpu-box")
    assert coldvox.serves("laptop", "coldaine/coldvox")
    assert not coldvox.serves("laptop", "someone/else") and not coldvox.serves("laptop")
    assert fetch.serves("laptop", "Coldaine/ColdVox") and not fetch.serves("laptop", None)
