"""The issue calls end to end against the simulator: open, find again, comment, close with a reason, refusals."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests

from devtools.github_simulator import SimulatorServer
from runnerguard.github import (
    Forbidden,
    GitHubApp,
    Gone,
    InstallationClient,
    MalformedResponse,
    NotFound,
    ServerError,
    Unavailable,
    Unprocessable,
)
from tests.github_fixtures import REPO, FakeClock

OUTAGE = "runnerguard:outage"
BOT = "runnerguard[bot]"


def open_outage(client: InstallationClient, pool: str = "laptop") -> int:
    return client.create_issue(REPO, title=f"{pool}: runner lost", body="9 of 13 jobs failed.",
                               labels=[OUTAGE, f"pool:{pool}"]).number


def test_create_issue_is_typed_and_made_by_the_app(github_sim: SimulatorServer,
                                                   installation_client: InstallationClient) -> None:
    issue = installation_client.create_issue(REPO, title="laptop: runner lost", body="9 of 13 jobs failed.",
                                             labels=[OUTAGE])
    assert (issue.number, issue.title, issue.body, issue.state, issue.state_reason, issue.labels) == (
        1, "laptop: runner lost", "9 of 13 jobs failed.", "open", None, (OUTAGE,))
    assert issue.user_login == BOT and not issue.is_pull_request and issue.html_url.endswith("/issues/1")
    assert [(i.number, i.title) for i in github_sim.issues(REPO)] == [(1, "laptop: runner lost")]
    assert installation_client.get_issue(REPO, 1) == issue


def test_the_outage_issue_is_found_again_by_label_and_creator(github_sim: SimulatorServer,
                                                              installation_client: InstallationClient,
                                                              app_factory: Callable[..., GitHubApp],
                                                              sim_repo: tuple[str, int]) -> None:
    mine = open_outage(installation_client)
    github_sim.add_issue(REPO, "laptop: runner lost", labels=[OUTAGE, "pool:laptop"], user="mallory")  # a lookalike
    github_sim.add_issue(REPO, "old outage", labels=[OUTAGE, "pool:laptop"], user=BOT, state="closed")
    open_outage(installation_client, "gpu")
    github_sim.push(REPO, {"x.txt": "x"}, branch="pr")
    installation_client.create_pull(REPO, title="a PR is an issue too", head="pr", base="main")
    installation_client.add_labels(REPO, 5, [OUTAGE, "pool:laptop"])
    restarted = app_factory().installation(sim_repo[1])  # a new process: nothing cached but the token
    found = restarted.list_issues(REPO, labels=[OUTAGE, "pool:laptop"], creator=BOT)
    assert [i.number for i in found] == [mine]
    assert {i.number for i in restarted.list_issues(REPO, labels=[OUTAGE], creator=BOT, per_page=1)} == {1, 4}
    assert [i.number for i in restarted.list_issues(REPO, state="closed", labels=[OUTAGE])] == [3]
    assert [i.number for i in restarted.list_issues(REPO, state="all", creator="mallory")] == [2]


def test_comment_then_close_with_a_reason_and_reopen(github_sim: SimulatorServer,
                                                     installation_client: InstallationClient) -> None:
    number = open_outage(installation_client)
    comment = installation_client.create_issue_comment(REPO, number, "Still failing: 11 of 15.")
    assert comment.html_url.endswith(f"/issues/{number}#issuecomment-{comment.id}")
    closed = installation_client.update_issue(REPO, number, state="closed", body="Resolved after 3 h.")
    assert (closed.state, closed.state_reason, closed.body) == ("closed", "completed", "Resolved after 3 h.")
    assert closed.closed_at is not None and closed.comments == 1
    reopened = installation_client.update_issue(REPO, number, state="open")
    assert (reopened.state, reopened.state_reason, reopened.closed_at) == ("open", "reopened", None)
    dropped = installation_client.update_issue(REPO, number, state="closed", state_reason="not_planned")
    assert dropped.state_reason == "not_planned"
    assert github_sim.comments(REPO, number) == ["Still failing: 11 of 15."]
    assert installation_client.list_issues(REPO, labels=[OUTAGE]) == []


def test_unknown_issue_is_not_found(installation_client: InstallationClient) -> None:
    for call in (lambda: installation_client.update_issue(REPO, 42, state="closed"),
                 lambda: installation_client.get_issue(REPO, 42),
                 lambda: installation_client.create_issue_comment(REPO, 42, "x")):
        with pytest.raises(NotFound):
            call()


@pytest.mark.parametrize("level", [None, "read"])
def test_writes_need_issues_write_and_name_it(github_sim: SimulatorServer, installation_client: InstallationClient,
                                              sim_repo: tuple[str, int], level: str | None) -> None:
    number = open_outage(installation_client)
    github_sim.set_permission(sim_repo[1], "issues", level)
    for call in (lambda: open_outage(installation_client),
                 lambda: installation_client.update_issue(REPO, number, state="closed"),
                 lambda: installation_client.create_issue_comment(REPO, number, "x")):
        with pytest.raises(Forbidden) as caught:
            call()
        assert caught.value.missing_permission == "issues"
    if level == "read":
        assert [i.number for i in installation_client.list_issues(REPO)] == [number]
    assert len(github_sim.issues(REPO)) == 1 and github_sim.issue(REPO, number).state == "open"


def test_issues_turned_off_are_gone(github_sim: SimulatorServer, installation_client: InstallationClient) -> None:
    github_sim.set_issues_enabled(REPO, False)
    with pytest.raises(Gone) as caught:
        open_outage(installation_client)
    assert caught.value.status == 410 and "disabled" in caught.value.message
    with pytest.raises(Gone):
        installation_client.list_issues(REPO)


def test_githubs_validation_answers_are_unprocessable(github_sim: SimulatorServer,
                                                      installation_client: InstallationClient) -> None:
    with pytest.raises(Unprocessable) as caught:
        installation_client.create_issue(REPO, title="  ")
    assert caught.value.errors[0]["field"] == "title"
    number = open_outage(installation_client)
    token = installation_client.app.installation_token(installation_client.installation_id)
    for body in ({"state": "shut"}, {"state": "closed", "state_reason": "because"},
                 {"state": "open", "state_reason": "not_planned"}, {"labels": "a,b"}, {"title": 5}):
        answer = requests.patch(f"{github_sim.url}/repos/{REPO}/issues/{number}", json=body, timeout=5,
                                headers={"Authorization": f"token {token}"})
        assert answer.status_code == 422, body
    assert github_sim.issue(REPO, number).state == "open"


def test_bad_arguments_never_reach_github(github_sim: SimulatorServer, installation_client: InstallationClient) -> None:
    before = len(github_sim.requests)
    with pytest.raises(ValueError, match="comma"):
        installation_client.list_issues(REPO, labels=["a,b"])
    with pytest.raises(ValueError, match="state"):
        installation_client.list_issues(REPO, state="shut")
    with pytest.raises(ValueError, match="state_reason"):
        installation_client.update_issue(REPO, 1, state="closed", state_reason="because")
    with pytest.raises(ValueError, match="not a repository"):
        installation_client.create_issue("evil/../app", title="x")
    assert len(github_sim.requests) == before


def test_a_secondary_limit_on_create_is_waited_out_and_opens_one_issue(
        github_sim: SimulatorServer, installation_client: InstallationClient, fake_clock: FakeClock) -> None:
    installation_client.list_issues(REPO)  # the token first
    github_sim.fail_next(1, "secondary", retry_after=30, match="/issues")
    open_outage(installation_client)
    assert 30 in fake_clock.sleeps and len(github_sim.issues(REPO)) == 1


@pytest.mark.parametrize("damage", [
    {"labels": "runnerguard:outage"},
    {"labels": [{"name": 5}]},
    {"user": "runnerguard[bot]"},
    {"number": "1"},
    {"title": None},
    {"closed_at": "later"},
])
def test_a_damaged_issue_is_malformed(github_sim: SimulatorServer, installation_client: InstallationClient,
                                      damage: dict[str, object]) -> None:
    number = open_outage(installation_client)
    token = installation_client.app.installation_token(installation_client.installation_id)
    good = requests.get(f"{github_sim.url}/repos/{REPO}/issues/{number}", timeout=5,
                        headers={"Authorization": f"token {token}"}).json()
    github_sim.respond_next(200, good | damage, match=f"/issues/{number}")
    with pytest.raises(MalformedResponse):
        installation_client.get_issue(REPO, number)
    github_sim.respond_next(200, [good | damage], match="/issues")
    with pytest.raises(MalformedResponse):
        installation_client.list_issues(REPO)


def test_a_listing_that_is_not_a_list_is_malformed(github_sim: SimulatorServer,
                                                   installation_client: InstallationClient) -> None:
    installation_client.list_issues(REPO)
    github_sim.respond_next(200, {"items": []}, match="/issues")
    with pytest.raises(MalformedResponse):
        installation_client.list_issues(REPO)


def test_create_issue_is_never_sent_twice_after_a_lost_answer_or_5xx(
        github_sim: SimulatorServer, sim_repo: tuple[str, int], app_factory: Callable[..., GitHubApp]) -> None:
    quick = app_factory(timeout=(1.0, 0.2)).installation(sim_repo[1])
    quick.list_issues(REPO)
    github_sim.fail_next(1, "lost", match="/issues")
    with pytest.raises(Unavailable, match="not sent again"):
        open_outage(quick)
    assert [i.title for i in quick.list_issues(REPO, labels=[OUTAGE], creator=BOT)] == ["laptop: runner lost"]
    github_sim.fail_next(1, 502, match="/issues")
    with pytest.raises(ServerError):
        open_outage(quick, "gpu")
    assert sum(r.method == "POST" and r.path == f"/repos/{REPO}/issues" for r in github_sim.requests) == 2
    assert len(github_sim.issues(REPO)) == 1


def test_other_calls_still_retry_a_5xx(github_sim: SimulatorServer, installation_client: InstallationClient) -> None:
    number = open_outage(installation_client)
    github_sim.fail_next(1, 502, match=f"/issues/{number}")
    assert installation_client.update_issue(REPO, number, state="closed").state == "closed"
