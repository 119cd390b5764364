"""Failure causes as pure rules: each cause from its evidence, what counts toward the rate, and mention-safe text."""

from __future__ import annotations

import pytest

from config import ConfigError, parse_policy
from runnerguard.domain import causes, rollback_text, rules
from runnerguard.domain.causes import Facts, HostFact, StepFact, Twin, classify

OK = "success"
SETUP, TESTS, DONE = StepFact("Set up job", "completed", OK), StepFact("Run tests", "completed", "failure"), \
    StepFact("Complete job", "completed", OK)
# GitHub's own texts (see runnerguard/domain/causes.py for where each comes from)
LOST = ("The self-hosted runner: laptop-1 lost communication with the server. Verify the machine is running and has "
        "a healthy network connection.")
SHUTDOWN = ("The runner has received a shutdown signal. This can happen when the runner service is stopped, or a "
            "manually started runner is canceled.")
NOT_ACQUIRED = "The job was not acquired by Runner of type self-hosted even after multiple attempts"
DISK_WARNING = ("You are running out of disk space. The runner will stop working when the machine runs out of disk "
                "space. Free space left: 12 MB")
ENOSPC = "System.IO.IOException: No space left on device : '/home/runner/_diag/Worker.log'"
MAX_TIME = "The job running on runner laptop-1 has exceeded the maximum execution time of 360 minutes."
KILLED = "Process completed with exit code 137."


def facts(**kw: object) -> Facts:
    base: dict[str, object] = {"conclusion": "failure", "runner_name": "laptop-1", "steps": (SETUP, TESTS, DONE)}
    return Facts(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(("message", "cause", "kind"), [
    (LOST, "runner", "lost communication"), (SHUTDOWN, "runner", "shutdown signal"),
    (NOT_ACQUIRED, "runner", "not acquired"), (DISK_WARNING, "runner", "disk"), (ENOSPC, "runner", "disk"),
    (MAX_TIME, "timeout", "time limit"), (KILLED, "runner", "killed"),
])
def test_annotations_name_the_cause(message: str, cause: str, kind: str) -> None:
    found = classify(facts(messages=(message,)))
    assert (found.cause, found.kind) == (cause, kind)
    assert "\n" not in found.evidence and len(found.evidence) < 200


def test_a_lost_runner_is_named_in_the_evidence() -> None:
    assert classify(facts(messages=(LOST,))).evidence == "runner laptop-1 lost communication with the server"


def test_exit_codes_other_than_137_are_not_the_runner() -> None:
    assert classify(facts(messages=("Process completed with exit code 1.", "exit code 1370"))).cause == "unknown"


def test_never_acquired_without_runner_or_steps() -> None:
    assert classify(facts(runner_name=None, steps=())).cause == "runner"


def test_the_runners_own_steps_failing_are_the_runner() -> None:
    for name in ("Set up job", "Initialize containers", "Complete job", "Post Run actions/checkout@v4"):
        found = classify(facts(steps=(StepFact(name, "completed", "failure"),)))
        assert (found.cause, found.kind) == ("runner", "set-up"), name


def test_a_step_left_running_with_none_failed_is_a_lost_runner() -> None:
    found = classify(facts(steps=(SETUP, StepFact("Run tests", "in_progress", None))))
    assert found.cause == "runner" and "stopped during step 'Run tests'" in found.evidence


def test_a_user_step_with_a_hosted_twin_failing_the_same_step_is_code() -> None:
    found = classify(facts(twins=(Twin(9, "ubuntu-latest", "Run tests"),)))
    assert found.cause == "code"
    assert found.evidence == "step 'Run tests' also failed on ubuntu-latest at the same commit"


def test_a_twin_failing_another_step_proves_nothing() -> None:
    assert classify(facts(twins=(Twin(9, "ubuntu-latest", "Lint"),))).cause == "unknown"


def test_a_user_step_without_evidence_is_unknown() -> None:
    found = classify(facts())
    assert found.cause == "unknown" and found.step == "Run tests"


def test_the_watchdog_and_timeouts_are_timeout() -> None:
    found = classify(facts(conclusion="cancelled", watchdog={"cancelled_at": 1.0, "reason": "max_run 2h"}))
    assert found.cause == "timeout" and found.evidence == "cancelled by runnerguard's watchdog after max_run 2h"
    assert classify(facts(conclusion="timed_out")).cause == "timeout"


def test_host_reports_point_at_the_runner() -> None:
    assert classify(facts(host=HostFact("laptop", state="down"))).kind == "host down"
    assert classify(facts(host=HostFact("laptop", state="up", runner="offline"))).kind == "runner offline"
    assert classify(facts(host=HostFact("laptop", state="up", runner="busy", disk_over="/"))).kind == "disk"
    assert classify(facts(host=HostFact("laptop", state="up", runner="busy"))).cause == "unknown"


def test_cancels_count_only_as_runner_or_timeout() -> None:
    lost = classify(facts(conclusion="cancelled", steps=(SETUP, StepFact("Run tests", "completed", OK))))
    assert lost.cause == "runner"
    person = classify(facts(conclusion="cancelled", steps=(SETUP, StepFact("Run tests", "completed", "cancelled"))))
    assert person.extra.get("person") and person.cause == "unknown"
    unassigned = classify(facts(conclusion="cancelled", runner_name=None, steps=()))
    assert unassigned.extra.get("person")
    no_steps = classify(facts(conclusion="cancelled", steps=()))
    assert no_steps.extra.get("person")  # nothing tells a lost runner from a person's cancel


def count(conclusion: str | None, cause: str | None, *, person: bool = False, fork: bool | None = None,
          counted: tuple[str, ...] = causes.DEFAULT_COUNTED, forks: bool = False) -> tuple[bool, bool]:
    rule = rules.CountingRule()
    return causes.counts(conclusion, cause, person_cancel=person, from_fork=fork, failed=rule.failed,
                         ignored=rule.ignored, counted=frozenset(counted), count_forks=forks)


def test_what_counts_toward_the_failure_rate() -> None:
    assert count("failure", None) == (True, True)  # nothing known: the seed's rule
    assert count("failure", "runner") == (True, True)
    assert count("failure", "code") == (True, False)  # the runner did its part: never moves the pool
    assert count("failure", "unknown", counted=("runner",)) == (True, False)
    assert count("cancelled", None) == (False, False)
    assert count("cancelled", "runner") == (True, True)
    assert count("cancelled", "timeout") == (True, True)
    assert count("cancelled", "unknown") == (False, False)
    assert count("cancelled", "runner", person=True) == (False, False)
    assert count("success", None) == (True, False)
    assert count("skipped", None) == (False, False)
    assert count("startup_failure", None) == (True, False)  # not a job conclusion: no longer a failure
    assert count("failure", "runner", fork=True) == (False, False)
    assert count("success", None, fork=True) == (False, False)
    assert count("failure", "runner", fork=True, forks=True) == (True, True)


def test_matrix_legs_are_the_same_job() -> None:
    assert causes.twin_key_name("test (ubuntu-latest, 3.12)") == causes.twin_key_name("test (self-hosted, 3.12)")
    assert causes.twin_key_name("test") == "test" and causes.twin_key_name("(x)") == "(x)"


def test_the_summary_line_counts_the_runners_failures_by_kind() -> None:
    jobs = [{"failure_cause": "runner", "failure_kind": "lost communication"}] * 5 + \
        [{"failure_cause": "runner", "failure_kind": "set-up"}] * 4 + [{"failure_cause": "unknown"}] * 4
    assert rollback_text.cause_summary(jobs) == "9 of 13 failures were the runner's: lost communication 5, set-up 4"
    assert rollback_text.cause_summary([]) == ""


def test_payload_strings_neither_mention_nor_link() -> None:
    job = {"name": "build @octocat", "workflow": "CI @octocat https://evil.example/2", "runner_name": "r@x",
           "conclusion": "failure", "failure_cause": "unknown", "failure_evidence": "step 'x @team' failed",
           "repo": "o/r", "html_url": "https://evil.example/o/r/actions/runs/1/job/2x"}
    table = rollback_text.jobs_table([job])
    assert "@octocat" not in table and "https://evil" not in table and "@team" not in table
    assert "(https://" not in table  # the payload's html_url is no link unless it is the job's own page
    own = rollback_text.jobs_table([{**job, "html_url": "https://github.com/o/r/actions/runs/1/job/2"}])
    assert "](https://github.com/o/r/actions/runs/1/job/2)" in own
    other_repo = rollback_text.jobs_table([{**job, "html_url": "https://github.com/evil/r/actions/runs/1/job/2"}])
    assert "](https://" not in other_repo
    decision = rules.manual("laptop", note="ping @octocat see https://evil.example")
    assert "@octocat" not in rollback_text.title("laptop", "ubuntu-latest", decision)
    assert "https://evil" not in rollback_text.commit_message("laptop", "ubuntu-latest", decision)


def test_count_and_count_forks_are_read_and_checked() -> None:
    policy = parse_policy({"rollback": {"failure_rate": {"count": ["runner"], "count_forks": True}}})
    counting = policy.rollback.failure_rate.counting
    assert counting.counted == frozenset({"runner"}) and counting.count_forks
    default = parse_policy({}).rollback.failure_rate.counting
    assert default.counted == frozenset({"runner", "timeout", "unknown"}) and not default.count_forks
    assert "startup_failure" not in default.failed
    with pytest.raises(ConfigError, match="count"):
        parse_policy({"rollback": {"failure_rate": {"count": ["bogus"]}}})
    with pytest.raises(ConfigError, match="count_forks"):
        parse_policy({"rollback": {"failure_rate": {"count_forks": "no"}}})
    with pytest.raises(ConfigError, match="fleet-wide"):
        parse_policy({"pool": [{"name": "laptop", "labels": ["self-hosted"], "rollback": {"count": ["runner"]}}]})


def test_malformed_or_huge_steps_are_data_not_trouble() -> None:
    assert causes.steps_from_payload("nope") == () and causes.steps_from_payload(None) == ()
    assert causes.steps_from_payload([1, None, {"name": 5}, {"status": "completed"}]) == ()
    mixed = causes.steps_from_payload([{"name": "Run tests", "status": 3, "conclusion": ["failure"]}])
    assert mixed == (StepFact("Run tests", None, None),)
    huge = causes.steps_from_payload([{"name": "x" * 10_000, "status": "completed", "conclusion": "failure"}] * 5000)
    assert len(huge) == causes.MAX_STEPS and len(huge[0].name) == causes.MAX_NAME
    found = classify(facts(steps=huge))
    assert found.cause == "unknown" and len(found.evidence) < 200


def test_long_names_and_urls_cost_no_more_than_short_ones() -> None:
    import time  # noqa: PLC0415 - only this timing test needs it

    for text in (" " * 100_000 + "x", "(" * 100_000, "test " + "(a)" * 30_000):
        started = time.perf_counter()
        causes.twin_key_name(text)
        rollback_text.jobs_table([{"name": text, "html_url": "https://" + "a" * 100_000, "repo": "o/r"}])
        assert time.perf_counter() - started < 0.05, text[:10]
