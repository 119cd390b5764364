"""Train the body dictionary shipped in runnerguard/store/zdicts from ../shared fixtures and generated payloads.

Run: .venv/bin/python -m devtools.train_dictionary  (a live install trains its own: `flask --app app deliveries
train-dictionary`). A shipped dictionary is never changed once released, only added: records name it by id.
"""

from __future__ import annotations

import argparse

from devtools.payloads import training_samples
from runnerguard.store import body_codec


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--id", type=int, default=body_codec.SHIPPED_ID)
    parser.add_argument("--samples", type=int, default=3000)
    args = parser.parse_args()
    data = body_codec.train(training_samples(args.samples), dict_id=args.id)
    path = body_codec.SHIPPED_DIR / f"{args.id}.zdict"
    path.write_bytes(data)
    print(f"{path}: {len(data)} bytes, id {args.id}")


if __name__ == "__main__":
    main()
