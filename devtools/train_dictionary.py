"""Train the body and job-record dictionaries shipped in runnerguard/store/zdicts (fixtures + generated payloads).

Run: .venv/bin/python -m devtools.train_dictionary  (a live install trains its own: `flask --app app deliveries
train-dictionary`). A shipped dictionary is never changed once released, only added: records name it by id.
"""

from __future__ import annotations

import argparse

from devtools.payloads import record_samples, training_samples
from runnerguard.store import body_codec


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=3000)
    args = parser.parse_args()
    for dict_id, samples, size in ((body_codec.SHIPPED_ID, training_samples(args.samples), 16384),
                                   (body_codec.RECORD_ID, record_samples(args.samples), 8192)):
        data = body_codec.train(samples, dict_id=dict_id, size=size)
        path = body_codec.SHIPPED_DIR / f"{dict_id}.zdict"
        path.write_bytes(data)
        print(f"{path}: {len(data)} bytes, id {dict_id}")


if __name__ == "__main__":
    main()
