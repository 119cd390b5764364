"""What the web views share, stored on the Flask app (no globals that tests would have to mutate)."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import Flask, current_app

from config import Policy, Settings
from runnerguard.web.intake import Intake

EXTENSION = "runnerguard"


@dataclass
class WebState:
    settings: Settings
    policy: Policy
    redis: redis.Redis
    intake: Intake


def init_app(app: Flask, state: WebState) -> None:
    app.extensions[EXTENSION] = state


def state() -> WebState:
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]
