"""Train a body dictionary from the live delivery log, keep it in Redis, and make new deliveries use it."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from runnerguard.store import body_codec, delivery_query
from runnerguard.store.body_codec import BodyError

MAX_SAMPLES = 20_000


@dataclass(frozen=True)
class Trained:
    dict_id: int
    size: int
    samples: int
    average_before: float
    average_after: float
    activated: bool


def train_from_log(client: redis.Redis, *, samples: int = 3000, size: int = 16384, activate: bool = True,
                   event: str = "workflow_job") -> tuple[Trained, bytes]:
    """The newest `samples` bodies of `event` deliveries train a new dictionary, stored under a fresh id.

    Web processes read the active id when they first record a body: restart them to compress with the new one.
    Every dictionary stays in Redis, so deliveries compressed with an older one stay readable.
    """
    wanted = max(20, min(samples, MAX_SAMPLES))
    bodies = [d.body for d in delivery_query.latest(client, wanted * 2) if d.event == event][:wanted]
    if len(bodies) < 20:
        raise BodyError(f"only {len(bodies)} recorded {event} deliveries: at least 20 are needed to train")
    dict_id = body_codec.next_id(client)
    data = body_codec.train(bodies, dict_id=dict_id, size=size)
    body_codec.store_dictionary(client, dict_id, data, activate=activate)
    trial = body_codec.BodyCodec(client, active=dict_id)
    after = sum(len(trial.compress(b)[1]) for b in bodies) / len(bodies)
    return Trained(dict_id, len(data), len(bodies), sum(map(len, bodies)) / len(bodies), after, activate), data
