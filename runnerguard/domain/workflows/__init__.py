"""The pure `runs-on` rewriter: point a failing pool's jobs at a fallback runner, and put them back later."""

from runnerguard.domain.workflows.model import (
    RUNS_ON,
    Change,
    NotReverted,
    RevertResult,
    RewriteResult,
    Unresolved,
    WorkflowParseError,
)
from runnerguard.domain.workflows.revert import revert_runs_on
from runnerguard.domain.workflows.rewrite import CanTake, rewrite_runs_on
from runnerguard.domain.workflows.source import is_workflow_path

__all__ = [
    "RUNS_ON",
    "CanTake",
    "Change",
    "NotReverted",
    "RevertResult",
    "RewriteResult",
    "Unresolved",
    "WorkflowParseError",
    "is_workflow_path",
    "revert_runs_on",
    "rewrite_runs_on",
]
