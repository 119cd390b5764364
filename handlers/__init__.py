"""Task handlers, one module per concern; their routers are composed here, in one place."""

from handlers import prewarm, replay, rollback, timings
from runnerguard.queue.routing import Router

router = Router.compose(timings.router, rollback.router, prewarm.router)

__all__ = ["replay", "router"]
