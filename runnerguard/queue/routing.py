"""A small synchronous router: (event, action) -> the tasks a delivery fans out to, and the queues they go to."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from config.policy import Policy

# A route's queues may depend on the payload (pre-warm goes to the queue of each host that will run the job).
QueueChooser = Callable[[Mapping[str, Any], Policy], Sequence[str]]
TaskBody = Callable[..., None]


@dataclass(frozen=True)
class Route:
    event: str
    action: str | None
    name: str
    task: Callable[[str], None]
    queues: str | QueueChooser

    @property
    def task_path(self) -> str:
        return f"{self.task.__module__}.{self.task.__qualname__}"

    def queues_for(self, payload: Mapping[str, Any], policy: Policy) -> list[str]:
        if isinstance(self.queues, str):
            return [self.queues]
        return list(self.queues(payload, policy))


class Router:
    """Each handler module keeps one; `Router.compose` joins them in handlers/__init__.py."""

    def __init__(self, routes: Iterable[Route] = ()) -> None:
        self._routes: list[Route] = list(routes)

    def register(
        self, event: str, action: str | None = None, *, name: str, queue: str | QueueChooser = "events",
        wrap: Callable[[str, TaskBody], Callable[[str], None]] | None = None,
    ) -> Callable[[TaskBody], Callable[[str], None]]:
        """Register a task for `event` (and `action`, or any action). `wrap` turns a task body into an RQ task."""

        def decorator(body: TaskBody) -> Callable[[str], None]:
            task = functools.wraps(body)(wrap(name, body)) if wrap else body
            self._routes.append(Route(event=event, action=action, name=name, task=task, queues=queue))
            return task

        return decorator

    def routes_for(self, event: str, action: str | None) -> list[Route]:
        return [r for r in self._routes if r.event == event and (r.action is None or r.action == action)]

    @classmethod
    def compose(cls, *routers: Router) -> Router:
        return cls(route for router in routers for route in router._routes)
