"""Task handlers, one module per concern; their routers are composed here, in one place."""

from handlers import replay, rollback, timings
from handlers.routing import Router

router = Router.compose(timings.router, rollback.router)

__all__ = ["replay", "router"]
