"""deploy/nginx.conf.example: `nginx -t` accepts it with a generated self-signed certificate, and run on loopback
it speaks only TLS 1.2/1.3, sends HSTS and answers 429 past the /login and /api/ bursts."""

from __future__ import annotations

import http.client
import re
import shutil
import ssl
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.local_tools import find_tool
from devtools.redis_server import free_port

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "deploy" / "nginx.conf.example"
HSTS_RE = re.compile(r'add_header Strict-Transport-Security "max-age=(\d+); includeSubDomains" always;')


@dataclass
class Site:
    https_port: int
    http_port: int
    main_conf: Path


@pytest.fixture(scope="module")
def nginx() -> str:
    path = find_tool("nginx")
    if path is None:
        pytest.skip("nginx not found: `sh devtools/install_nginx.sh` unpacks Debian's nginx package (needs apt-get "
                    "and the Debian archive), as `make test` does")
    return path


def rewritten(text: str, *, cert: Path, key: Path, https_port: int, http_port: int) -> str:
    """The example with its certificate and ports pointed at the test's; any other path fails the test."""
    text = re.sub(r"^(\s*ssl_certificate)\s+\S+;", rf"\1 {cert};", text, flags=re.MULTILINE)
    text = re.sub(r"^(\s*ssl_certificate_key)\s+\S+;", rf"\1 {key};", text, flags=re.MULTILINE)
    text = text.replace("listen 443 ssl", f"listen 127.0.0.1:{https_port} ssl").replace(
        "listen 80;", f"listen 127.0.0.1:{http_port};")
    assert "listen 443" not in text and "listen 80" not in text
    for line in text.splitlines():
        code = line.split("#")[0]
        assert "/etc/" not in code and "/var/" not in code, f"a path to rewrite: {line!r}"
    return text


def write_site(tmp_path: Path, example_text: str) -> Site:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not found: cannot make the test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=runnerguard.example.org"],
                   check=True, capture_output=True, timeout=60)
    site = Site(free_port(), free_port(), tmp_path / "nginx.conf")
    (tmp_path / "runnerguard.conf").write_text(rewritten(example_text, cert=cert, key=key,
                                                         https_port=site.https_port, http_port=site.http_port))
    temp_paths = "\n".join(f"    {kind}_temp_path {tmp_path / kind};"
                           for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    # One process in the foreground, as the test's user: no worker switching to `nobody`, nothing left behind.
    site.main_conf.write_text(f"""daemon off;
master_process off;
pid {tmp_path / 'nginx.pid'};
error_log {tmp_path / 'error.log'} info;
events {{}}
http {{
    access_log off;
{temp_paths}
    include {tmp_path / 'runnerguard.conf'};
}}
""")
    return site


def nginx_test(nginx: str, site: Site) -> subprocess.CompletedProcess[str]:
    prefix = site.main_conf.parent
    return subprocess.run([nginx, "-t", "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(site.main_conf)],
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_example_has_tls_hsts_and_rate_limits() -> None:
    text = EXAMPLE.read_text()
    assert re.search(r"^\s*ssl_protocols TLSv1\.2 TLSv1\.3;$", text, re.MULTILINE)
    hsts = HSTS_RE.search(text)
    assert hsts and int(hsts.group(1)) >= 31536000
    zones = set(re.findall(r"^limit_req_zone \$binary_remote_addr zone=(\w+):", text, re.MULTILINE))
    for location in ("location = /login {", "location /api/ {"):
        block = text.split(location, 1)[1].split("}", 1)[0]
        used = re.findall(r"limit_req zone=(\w+)", block)
        assert used and set(used) <= zones, location
        assert "add_header" not in block  # it would replace the server's HSTS header in that location


def test_nginx_accepts_the_example(nginx: str, tmp_path: Path) -> None:
    result = nginx_test(nginx, write_site(tmp_path, EXAMPLE.read_text()))
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr


def test_nginx_t_refuses_a_limit_without_its_zone(nginx: str, tmp_path: Path) -> None:
    """`nginx -t` is a real check: the example without its limit_req_zone lines fails it."""
    text = "\n".join(line for line in EXAMPLE.read_text().splitlines() if not line.startswith("limit_req_zone"))
    assert nginx_test(nginx, write_site(tmp_path, text)).returncode != 0


@contextmanager
def serve(nginx: str, tmp_path: Path, example_text: str) -> Iterator[Site]:
    site = write_site(tmp_path, example_text)
    process = subprocess.Popen([nginx, "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c",
                                str(site.main_conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while not (tmp_path / "nginx.pid").exists() or _refused(site.https_port):
            assert process.poll() is None, (tmp_path / "error.log").read_text()
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
        yield site
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture()
def running(nginx: str, tmp_path: Path) -> Iterator[Site]:
    with serve(nginx, tmp_path, EXAMPLE.read_text()) as site:
        yield site


def _refused(port: int) -> bool:
    try:
        http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
    except OSError:
        return True
    return False


def tls(*, version: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test's own self-signed certificate
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1_1: asking for it is the point
        context.minimum_version = context.maximum_version = version
    # OpenSSL 3 refuses TLS 1.1 on its own at the default security level: lower it, so that only the server's
    # ssl_protocols can refuse (test_old_tls_is_refused_by_the_config_not_the_client shows it).
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def get(site: Site, path: str, *, version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3) -> http.client.HTTPResponse:
    connection = http.client.HTTPSConnection("127.0.0.1", site.https_port, timeout=10, context=tls(version=version))
    connection.request("GET", path, headers={"Host": "runnerguard.example.org"})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_running_nginx_sends_hsts_and_throttles_login_and_api(running: Site) -> None:
    # No gunicorn behind it: a request nginx lets through answers 502, one it throttles 429.
    first = get(running, "/login", version=ssl.TLSVersion.TLSv1_2)
    assert first.status == 502
    assert first.getheader("Strict-Transport-Security") == "max-age=63072000; includeSubDomains"
    login = [get(running, "/login").status for _ in range(10)]
    assert login[:5] == [502] * 5 and set(login[5:]) == {429}  # burst=5 after the first
    api = [get(running, "/api/scorecard").status for _ in range(30)]
    assert 429 in api and api[:20] == [502] * 20
    throttled = get(running, "/login")
    assert throttled.status == 429 and throttled.getheader("Strict-Transport-Security")
    # the webhook path is not limited
    assert {get(running, "/webhooks/github").status for _ in range(30)} == {502}


def test_running_nginx_refuses_tls_1_1_and_redirects_http(running: Site) -> None:
    with pytest.raises(ssl.SSLError):
        get(running, "/", version=ssl.TLSVersion.TLSv1_1)
    plain = http.client.HTTPConnection("127.0.0.1", running.http_port, timeout=10)
    plain.request("GET", "/login?next=/", headers={"Host": "runnerguard.example.org"})
    response = plain.getresponse()
    assert response.status == 301
    assert response.getheader("Location") == "https://runnerguard.example.org/login?next=/"


def test_old_tls_is_refused_by_the_config_not_the_client(nginx: str, tmp_path: Path) -> None:
    """The same client gets TLS 1.1 from a server that offers it: the refusal above is the example's doing."""
    text = EXAMPLE.read_text().replace("ssl_protocols TLSv1.2 TLSv1.3;",
                                       "ssl_protocols TLSv1.1 TLSv1.2 TLSv1.3; ssl_ciphers DEFAULT:@SECLEVEL=0;")
    with serve(nginx, tmp_path, text) as site:
        assert get(site, "/", version=ssl.TLSVersion.TLSv1_1).status == 502
