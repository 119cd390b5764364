"""Which links the dashboard renders: GitHub's pages (or the configured GitHub host) only, and where that host is."""

from __future__ import annotations

import pytest

from config import load_settings
from config.errors import ConfigError
from config.settings import web_url_for
from runnerguard.domain.links import safe_link, web_bases

GITHUB = web_bases(None)
GHES = web_bases("https://ghe.example.com")


@pytest.mark.parametrize("url", [
    "https://github.com/octo/app/actions/runs/5/job/11",
    "https://github.com/octo/app/pull/7",
    "https://GitHub.com/octo/app/pull/7",  # hosts compare case-insensitively
])
def test_github_pages_are_linked(url: str) -> None:
    assert safe_link(url, GITHUB) == url


@pytest.mark.parametrize("url", [
    "javascript:alert(1)",
    "JavaScript:alert(document.cookie)//https://github.com/",
    "data:text/html,<script>alert(1)</script>",
    "http://github.com/octo/app/pull/7",  # not the scheme of the base: a downgrade
    "https://github.com.evil.example/octo/app/pull/7",
    "https://evil.example/https://github.com/octo/app",
    "https://github.com@evil.example/octo/app",
    "https://user:pass@github.com/octo/app",
    "https://github.com:8443/octo/app",
    "https://github.com\\@evil.example/",
    "https://github.com/octo/app\" onmouseover=\"alert(1)",
    "https://github.com/octo/app\n/pull/1",
    "//evil.example/octo",
    "/relative/path",
    "https://github.com",  # the bare host is not a page of a repository
    "",
    None,
    42,
    ["https://github.com/octo/app"],
    "https://github.com/" + "a" * 3000,
])
def test_anything_else_is_not_linked(url: object) -> None:
    assert safe_link(url, GITHUB) is None


def test_the_configured_host_is_linked_below_its_path_only() -> None:
    assert safe_link("https://ghe.example.com/octo/app/pull/1", GHES) == "https://ghe.example.com/octo/app/pull/1"
    assert safe_link("https://github.com/octo/app/pull/1", GHES) is not None  # github.com stays allowed
    assert safe_link("https://ghe.example.com.evil.example/octo/app", GHES) is None
    scoped = web_bases("https://ghe.example.com/github")
    assert safe_link("https://ghe.example.com/github/octo/app", scoped) is not None
    assert safe_link("https://ghe.example.com/githubx/octo/app", scoped) is None
    assert safe_link("https://ghe.example.com/other/octo/app", scoped) is None


@pytest.mark.parametrize(("api", "web"), [
    ("https://api.github.com", "https://github.com"),
    ("https://api.github.com/", "https://github.com"),
    ("https://ghe.example.com/api/v3", "https://ghe.example.com"),
    ("http://127.0.0.1:4567", "http://127.0.0.1:4567"),  # the simulator serves its pages beside its API
])
def test_the_web_host_follows_the_api_url(api: str, web: str) -> None:
    assert web_url_for(api) == web


ENV = {"GITHUB_WEBHOOK_SECRET": "s", "REDIS_URL": "redis://127.0.0.1:1/0"}


def test_github_web_url_is_read_and_checked() -> None:
    assert load_settings(ENV).github_web_url == "https://github.com"
    assert load_settings({**ENV, "GITHUB_API_URL": "https://ghe.example.com/api/v3"}).github_web_url == \
        "https://ghe.example.com"
    assert load_settings({**ENV, "GITHUB_WEB_URL": "https://ghe.example.com/"}).github_web_url == \
        "https://ghe.example.com"
    assert load_settings({**ENV, "GITHUB_WEB_URL": "http://127.0.0.1:4567"}).github_web_url == "http://127.0.0.1:4567"
    for bad in ("javascript:alert(1)", "ftp://ghe.example.com", "https://", "https://a@evil.example",
                "https://ghe.example.com/?q=1", "http://ghe.example.com"):
        with pytest.raises(ConfigError) as raised:
            load_settings({**ENV, "GITHUB_WEB_URL": bad})
        assert raised.value.key == "GITHUB_WEB_URL"
