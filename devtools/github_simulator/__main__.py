"""`python -m devtools.github_simulator`: serve the simulator until interrupted, for demos and manual runs."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from devtools.github_simulator.server import SimulatorServer


def _public_key(path: Path) -> RSAPublicKey:
    """The App's public key from either half of the pair (a demo usually holds the private key file)."""
    data = path.read_bytes()
    if b"PRIVATE KEY" in data:
        private = serialization.load_pem_private_key(data, password=None)
        if not isinstance(private, RSAPrivateKey):
            raise SystemExit(f"{path} is not an RSA key")
        return private.public_key()
    public = serialization.load_pem_public_key(data)
    if not isinstance(public, RSAPublicKey):
        raise SystemExit(f"{path} is not an RSA key")
    return public


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--app-id", type=int, required=True)
    parser.add_argument("--key", type=Path, required=True, help="the App's private or public key (PEM)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--prefix", default="", help='e.g. "/api/v3" to look like GitHub Enterprise Server')
    args = parser.parse_args(argv)
    server = SimulatorServer(app_id=args.app_id, app_public_key_pem=_public_key(args.key), port=args.port,
                             prefix=args.prefix)
    print(f"GitHub simulator at {server.url} (control API under {server.url}/_sim)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
