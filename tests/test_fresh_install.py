"""What a fresh install exposes: GitHub over plain http, pre-warm fetches and redirects, archive member counts, and
name patterns that took a trailing newline."""

from __future__ import annotations

import http.server
import io
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask.testing import FlaskClient

from config import ConfigError, load_settings
from config.policy import parse_policy
from runnerguard.domain import names
from runnerguard.domain.url_policy import transport_ok
from runnerguard.github import client as github_client
from runnerguard.prewarm.download import DownloadError, check_url, download
from runnerguard.prewarm.specs import CacheSpec, SpecError
from runnerguard.prewarm.unpack import UnsafeArchive, unpack
from runnerguard.services import app_setup as app_manifest
from tests.helpers import SECRET, admin_headers, dumps, signed_headers

SHA = "0" * 64


@pytest.mark.parametrize("url", ["http://api.github.com", "http://github.example.com/api/v3",
                                 "http://127.0.0.1.evil.example", "http://evil.example#@127.0.0.1",
                                 "http://10.0.0.1:8080"])
def test_github_api_url_over_plain_http_to_another_host_stops_start_up(url: str) -> None:
    with pytest.raises(ConfigError, match=r"GITHUB_API_URL.*https"):
        load_settings({"GITHUB_WEBHOOK_SECRET": SECRET, "REDIS_URL": "redis://127.0.0.1:9/0", "GITHUB_API_URL": url})


@pytest.mark.parametrize("url", ["https://api.github.com", "https://ghe.example/api/v3", "http://127.0.0.1:8123",
                                 "http://localhost:9000/api/v3", "http://[::1]:9000"])
def test_github_api_url_https_or_loopback_http_is_accepted(url: str) -> None:
    assert load_settings({"GITHUB_WEBHOOK_SECRET": SECRET, "REDIS_URL": "redis://127.0.0.1:9/0", "GITHUB_API_URL": url}).github_api_url == url


def test_cache_urls_are_https_or_loopback_http() -> None:
    table = {"name": "m", "sha256": SHA, "dest": "/srv/cache/m", "pools": ["linux"]}
    with pytest.raises(SpecError, match="https"):
        CacheSpec.from_mapping({**table, "url": "http://mirror.example/m.bin"})
    assert CacheSpec.from_mapping({**table, "url": "https://mirror.example/m.bin"}).url.startswith("https")
    assert CacheSpec.from_mapping({**table, "url": "http://127.0.0.1:8080/m.bin"}).url.startswith("http:")


class Redirector:
    """A loopback HTTP server answering every GET with a redirect to `location`, or a body at /file."""

    def __init__(self) -> None:
        self.location = ""
        self.gets: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.gets.append(self.path)
                if self.path == "/file":
                    self.send_response(200)
                    self.send_header("Content-Length", "5")
                    self.end_headers()
                    self.wfile.write(b"hello")
                    return
                self.send_response(302)
                self.send_header("Location", outer.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"


@pytest.fixture()
def redirector() -> Iterator[Redirector]:
    server = Redirector()
    yield server
    server.server.shutdown()


def test_download_refuses_plain_http_to_another_host_before_connecting(tmp_path: Path) -> None:
    with requests.Session() as session, pytest.raises(DownloadError, match="https only") as caught:
        download("http://example.invalid/m.bin", tmp_path / "m.part", expected_sha256=SHA, session=session)
    assert caught.value.retryable is False


@pytest.mark.parametrize("target", ["http://example.invalid/m.bin", "ftp://example.invalid/m.bin",
                                    "file:///etc/passwd", "gopher://127.0.0.1:6379/_FLUSHALL"])
def test_download_refuses_redirects_off_https(redirector: Redirector, tmp_path: Path, target: str) -> None:
    redirector.location = target
    with requests.Session() as session, pytest.raises(DownloadError, match="redirect") as caught:
        download(f"{redirector.base}/m.bin", tmp_path / "m.part", expected_sha256=SHA, session=session)
    assert caught.value.retryable is False and not (tmp_path / "m.part").exists()


def test_download_follows_a_loopback_redirect_and_stops_a_loop(redirector: Redirector, tmp_path: Path) -> None:
    redirector.location = "/file"
    with requests.Session() as session:
        got = download(f"{redirector.base}/m.bin", tmp_path / "m.part", expected_sha256=SHA, session=session)
        assert got.size == 5 and (tmp_path / "m.part").read_bytes() == b"hello"
        redirector.location = "/again"
        with pytest.raises(DownloadError, match="redirects"):
            download(f"{redirector.base}/loop", tmp_path / "n.part", expected_sha256=SHA, session=session)


def test_a_remote_server_cannot_redirect_into_loopback() -> None:
    for target in ("http://127.0.0.1:6379/", "https://127.0.0.1/x", "https://localhost/x", "http://cdn.example/x"):
        with pytest.raises(DownloadError):
            check_url(target, origin="https://cdn.example/m.bin")
    check_url("https://objects.example/m.bin?sig=1", origin="https://cdn.example/m.bin")
    assert not transport_ok("https:///nohost") and not transport_ok("http://[::1")


def _tar_of_empty_files(count: int) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tf:
        for n in range(count):
            tf.addfile(tarfile.TarInfo(f"f{n}"), io.BytesIO(b""))
    return raw.getvalue()


def test_thousands_of_empty_members_do_not_fit_a_tiny_budget(tmp_path: Path) -> None:
    archive = tmp_path / "many.tar.gz"
    archive.write_bytes(_tar_of_empty_files(20_000))
    into = tmp_path / "out"
    into.mkdir()
    with pytest.raises(UnsafeArchive, match="more than 1 bytes"):
        unpack(archive, "tar.gz", into, archive_sha256=SHA, file_name="x", max_bytes=1)
    assert len(list(into.iterdir())) == 0
    zipped = tmp_path / "many.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        for n in range(2_000):
            zf.writestr(f"f{n}", b"")
    with pytest.raises(UnsafeArchive, match="declares"):
        unpack(zipped, "zip", tmp_path / "z", archive_sha256=SHA, file_name="x", max_bytes=100_000)


def test_archive_member_count_is_capped(tmp_path: Path) -> None:
    archive = tmp_path / "many.tar.gz"
    archive.write_bytes(_tar_of_empty_files(101))
    for n, kind in enumerate(("tar.gz", "zip")):
        into = tmp_path / f"out{n}"
        into.mkdir()
        if kind == "zip":
            archive = tmp_path / "many.zip"
            with zipfile.ZipFile(archive, "w") as zf:
                for m in range(101):
                    zf.writestr(f"f{m}", b"")
        with pytest.raises(UnsafeArchive, match="more than 100"):
            unpack(archive, kind, into, archive_sha256=SHA, file_name="x", max_members=100)  # type: ignore[arg-type]
    ok = tmp_path / "ok"
    ok.mkdir()
    assert len(unpack(tmp_path / "many.tar.gz", "tar.gz", ok, archive_sha256=SHA, file_name="x",
                      max_members=101)) == 101


def test_header_patterns_refuse_a_trailing_newline(client: FlaskClient) -> None:
    # HTTP clients refuse to send a newline in a header; a server behind another front end may still pass one on.
    intake = client.application.extensions["runnerguard"].intake
    body = dumps({"action": "queued"})
    for event, guid in (("workflow_job\n", "d-nl-1"), ("workflow_job", "d-nl-2\n")):
        headers = {**signed_headers(body, "workflow_job"), "X-GitHub-Event": event, "X-GitHub-Delivery": guid}
        assert intake.accept(headers, body).status == 400, (event, guid)


def test_name_patterns_refuse_a_trailing_newline(client: FlaskClient) -> None:
    assert names.is_repo("octo/app") and not names.is_repo("octo/app\n")
    response = client.post("/api/rollbacks", json={"pool": "linux", "repo": "octo/app\n"}, headers=admin_headers())
    assert response.status_code == 400
    with pytest.raises(ValueError):
        github_client._repo("octo/app\n")
    with pytest.raises(ConfigError):
        parse_policy({"pools": [{"name": "linux\n", "labels": ["self-hosted"]}]})
    with pytest.raises(ConfigError):
        parse_policy({"pools": [{"name": "linux", "labels": ["self-hosted\n"]}]})
    for owner in ("octo\n",):
        with pytest.raises(app_manifest.SetupError):
            app_manifest.new_app_url("https://api.github.com", owner)
    with pytest.raises(app_manifest.SetupError):
        app_manifest.convert("http://127.0.0.1:9", "code\n")
    with pytest.raises(app_manifest.SetupError):
        app_manifest.build_manifest("https://x.example", name="runnerguard\n")
