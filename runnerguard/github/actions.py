"""GitHub Actions calls of an installation: runs, jobs, annotations, cancel, force-cancel, re-run."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from runnerguard.github.actions_models import Annotation, WorkflowRun
from runnerguard.github.errors import Forbidden, NotRerunnable
from runnerguard.github.paths import repo as _repo

# The texts of GitHub's 403 for a job it will not re-run (the run is still going, or it may not be retried at all);
# GitHub names the endpoint's permission in X-Accepted-GitHub-Permissions on these too, so the text decides.
_NOT_RERUNNABLE = re.compile(r"already running|cannot be (re-?run|retried)|unable to (re-?run|retry)", re.IGNORECASE)


class ActionsCalls:
    """Mixed into `InstallationClient`, which provides `_call` and `_paginate`."""

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:  # pragma: no cover - the client's own
        raise NotImplementedError

    def _paginate(self, path: str, params: dict[str, Any]) -> Iterator[Any]:  # pragma: no cover
        raise NotImplementedError

    def get_run(self, repo: str, run_id: int) -> WorkflowRun:
        """The workflow run, with its head repository (a fork's run has another one). Needs `actions: read`."""
        path = f"/repos/{_repo(repo)}/actions/runs/{int(run_id)}"
        return WorkflowRun.from_json(self._call("GET", path, params={"exclude_pull_requests": "true"}))

    def list_annotations(self, repo: str, check_run_id: int, *, per_page: int = 100) -> list[Annotation]:
        """A check run's annotations, every page; a workflow job's id is its check run's id. Needs `checks: read`."""
        path = f"/repos/{_repo(repo)}/check-runs/{int(check_run_id)}/annotations"
        return [Annotation.from_json(a) for a in self._paginate(path, {"per_page": per_page})]

    def force_cancel_run(self, repo: str, run_id: int) -> None:
        """Cancel even what `always()` would keep running; Conflict when the run already completed."""
        self._call("POST", f"/repos/{_repo(repo)}/actions/runs/{int(run_id)}/force-cancel")

    def rerun_job(self, repo: str, job_id: int, *, enable_debug_logging: bool = False) -> None:
        """Re-run one job (a new attempt of its run, with a new job id). NotRerunnable when GitHub refuses the run's
        state; Forbidden (with `missing_permission`) without `actions: write`."""
        path = f"/repos/{_repo(repo)}/actions/jobs/{int(job_id)}/rerun"
        try:
            self._call("POST", path, json={"enable_debug_logging": enable_debug_logging})
        except Forbidden as exc:
            if not _NOT_RERUNNABLE.search(exc.message):
                raise
            raise NotRerunnable(exc.message, status=exc.status, request_id=exc.request_id, method=exc.method,
                                path=exc.path, documentation_url=exc.documentation_url) from None
