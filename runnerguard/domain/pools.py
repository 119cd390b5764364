"""Which runner pools could take a job: GitHub's rule, every requested label on the runner, case-insensitively."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

SELF_HOSTED = "self-hosted"
DEFAULT_FALLBACK = "ubuntu-latest"


@dataclass(frozen=True)
class Pool:
    """A set of self-hosted runners, named by the labels they carry."""

    name: str
    labels: tuple[str, ...]
    hosts: tuple[str, ...] = ()
    fallback: str = DEFAULT_FALLBACK
    rollback: dict[str, object] = field(default_factory=dict, hash=False, compare=False)
    runners: int | None = None  # declared `runners = N`; else one runner per host (see runner_count)
    scorecard: dict[str, object] = field(default_factory=dict, hash=False, compare=False)
    # The no-policy pool stands for "every self-hosted runner": it takes any job that asked for `self-hosted`,
    # whatever other labels came with it, since we cannot know which labels its runners carry.
    any_self_hosted: bool = False
    # The watchdog (issue #15): a job running longer than max_run is cancelled, force-cancelled force_after later;
    # a job the runner lost is re-run once when retry_runner_failures is 1.
    max_run_seconds: int | None = None
    force_after_seconds: int = 300
    retry_runner_failures: int = 1

    @property
    def runner_count(self) -> int:
        """How many jobs the pool can run at once: `runners = N`, else its hosts (one runner each), else one."""
        return self.runners or len(self.hosts) or 1

    def can_take(self, requested: Iterable[str]) -> bool:
        if self.any_self_hosted:
            return any(label.lower() == SELF_HOSTED for label in requested)
        return runner_can_take(self.labels, requested)


DEFAULT_POOL = Pool(name=SELF_HOSTED, labels=(SELF_HOSTED,), any_self_hosted=True)


def runner_can_take(runner_labels: Iterable[str], requested: Iterable[str]) -> bool:
    """A runner takes a job when it has every label the job asked for (GitHub compares them case-insensitively).

    A job that asked for no label at all is not taken by a pool: only GitHub-hosted images are picked that way.
    """
    wanted = {label.lower() for label in requested}
    if not wanted:
        return False
    return wanted <= {label.lower() for label in runner_labels}


def pools_for(requested: Sequence[str], pools: Sequence[Pool]) -> list[str]:
    """Names of every pool whose runners could take a job that asked for `requested`.

    With no policy (`pools` empty) there is one implicit pool, `self-hosted`, holding every job that asked for it.
    """
    return [pool.name for pool in (pools or (DEFAULT_POOL,)) if pool.can_take(requested)]
