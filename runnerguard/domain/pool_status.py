"""One line per pool for the top of the dashboard: healthy, failing, rolled back, blocked..., and the next step."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runnerguard.domain.rules import Decision

# The state a person must hear about first when a pool has several repositories in different states.
URGENCY = ("blocked", "pr_open", "rolled_back", "restoring")
LABELS = {"blocked": "blocked", "pr_open": "rollback PR open", "rolled_back": "rolled back", "restoring": "restoring"}
SETUP_PATH = "/setup"
RESTORE_COMMAND = "flask --app app rollback restore {pool} --repo {repo}"

NEXT_BLOCKED_NO_APP = "Set up the GitHub App; the next sweep then opens the rollback PR."
NEXT_BLOCKED = "Fix what the reason says; the next sweep tries again."
NEXT_PR_OPEN = "Review and merge the rollback PR: {repo}'s jobs then run on {fallback} until the runner is fixed."
NEXT_DRY_RUN = "Dry run: no PR was opened. Turn dry_run off in the policy to let runnerguard open it."
NEXT_ROLLED_BACK = "{repo}'s jobs run on {fallback}. Once the runner is fixed, move them back with"
NEXT_RESTORING = "Merge the restore PR to move {repo}'s jobs back to the pool."
NEXT_OTHER = "See the rollback state below."
NEXT_FAILING = ("runnerguard opens a rollback PR after the next finished job of the pool; if none appears within a "
                "few minutes, look at the worker's log and the failed tasks below.")
NEXT_SOME = "Below the rollback threshold ({threshold:.0%}): nothing to do unless it keeps rising."


@dataclass(frozen=True)
class Link:
    text: str
    href: str  # a rollback PR's URL (the caller checks it before rendering) or a path of this service


@dataclass(frozen=True)
class PoolStatus:
    pool: str
    state: str  # healthy | some_failures | failing | blocked | pr_open | rolled_back | restoring | any other state
    label: str
    rate: str  # the failure rate now, as a sentence ("53% of 15 jobs failed in 24h")
    reason: str = ""  # the rollback state's reason, as recorded
    repo: str = ""
    next_step: str = ""
    command: str = ""
    links: tuple[Link, ...] = ()
    more_repos: int = 0

    @property
    def tone(self) -> str:
        """ok | warn | bad: the colour of the line."""
        if self.state == "healthy":
            return "ok"
        return "warn" if self.state in ("some_failures", "restoring") else "bad"


def _pr_links(row: Mapping[str, Any]) -> tuple[Link, ...]:
    links = []
    if row.get("pr_url"):
        links.append(Link(f"rollback PR #{row.get('pr_number') or ''}".rstrip(" #"), str(row["pr_url"])))
    if row.get("restore_pr_url"):
        links.append(Link(f"restore PR #{row.get('restore_pr_number') or ''}".rstrip(" #"), str(row["restore_pr_url"])))
    return tuple(links)


def _rank(row: Mapping[str, Any]) -> int:
    state = str(row.get("state"))
    return URGENCY.index(state) if state in URGENCY else len(URGENCY)


def status_for(pool: str, decision: Decision, states: Sequence[Mapping[str, Any]], *, fallback: str,
               app_configured: bool, failure_target: float) -> PoolStatus:
    """The pool's line from its failure-rate decision now and its rollback states (`RollbackState.public()` rows)."""
    active = sorted((s for s in states if s.get("state") not in (None, "healthy")), key=_rank)
    if active:
        row = active[0]
        state, repo = str(row["state"]), str(row.get("repo") or "")
        words = {"repo": repo, "fallback": fallback}
        common: dict[str, Any] = {"pool": pool, "state": state, "label": LABELS.get(state, state.replace("_", " ")),
                                  "rate": decision.reason, "reason": str(row.get("reason") or row.get("error") or ""),
                                  "repo": repo, "links": _pr_links(row), "more_repos": len(active) - 1}
        if state == "blocked":
            if not app_configured:
                return PoolStatus(**common | {"next_step": NEXT_BLOCKED_NO_APP,
                                              "links": (Link("set up the App", SETUP_PATH), *common["links"])})
            return PoolStatus(**common, next_step=NEXT_BLOCKED)
        if state == "pr_open":
            text = NEXT_DRY_RUN if row.get("dry_run") else NEXT_PR_OPEN.format(**words)
            return PoolStatus(**common, next_step=text)
        if state == "rolled_back":
            command = RESTORE_COMMAND.format(pool=shlex.quote(pool), repo=shlex.quote(repo))
            return PoolStatus(**common, next_step=NEXT_ROLLED_BACK.format(**words), command=command)
        if state == "restoring":
            return PoolStatus(**common, next_step=NEXT_RESTORING.format(**words))
        return PoolStatus(**common, next_step=NEXT_OTHER)
    if decision.fire:
        return PoolStatus(pool, "failing", "failing", decision.reason, next_step=NEXT_FAILING)
    rate = decision.rate
    if rate is not None and rate >= failure_target and decision.failed:
        return PoolStatus(pool, "some_failures", "some failures", decision.reason,
                          next_step=NEXT_SOME.format(threshold=decision.threshold))
    return PoolStatus(pool, "healthy", "healthy", decision.reason)
