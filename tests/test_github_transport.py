"""The client under GitHub's failures, over real HTTP: tokens, rate limits, retries, write spacing, headers."""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import Callable

import pytest
import redis
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from devtools.github_simulator import SimulatorServer
from runnerguard import APP_NAME, __version__
from runnerguard.github import (
    AuthError,
    Forbidden,
    GitHubApp,
    InstallationClient,
    MalformedResponse,
    NotFound,
    RateLimited,
    RetryPolicy,
    ServerError,
    Unavailable,
    Unprocessable,
)
from runnerguard.store import keys
from tests.github_fixtures import APP_ID, FakeClock, make_app

AppFactory = Callable[..., GitHubApp]


def token_mints(github_sim: SimulatorServer) -> int:
    return sum(r.path.endswith("/access_tokens") for r in github_sim.requests)


def api_calls(github_sim: SimulatorServer, fragment: str) -> list[int]:
    return [r.status for r in github_sim.requests if fragment in r.path]


def test_every_request_carries_githubs_headers(github_sim: SimulatorServer, installation_client: InstallationClient,
                                               sim_repo: tuple[str, int]) -> None:
    installation_client.get_repo(sim_repo[0])
    assert len(github_sim.requests) == 2  # the token, then the call
    for recorded in github_sim.requests:
        headers = {k.lower(): v for k, v in recorded.headers.items()}
        assert headers["accept"] == "application/vnd.github+json"
        assert headers["x-github-api-version"] == "2022-11-28"
        assert APP_NAME in headers["user-agent"] and __version__ in headers["user-agent"]
    assert [r.auth for r in github_sim.requests] == ["jwt", "token"]


def test_enterprise_base_url_with_a_path_prefix_works(app_public_pem: bytes, app_key: RSAPrivateKey,
                                                      redis_client: redis.Redis, fake_clock: FakeClock) -> None:
    with SimulatorServer(app_id=APP_ID, app_public_key_pem=app_public_pem, clock=fake_clock,
                         prefix="/api/v3") as ghes:
        ghes.add_repo("corp/tool", {"a.txt": "a"})
        iid = ghes.install(["corp/tool"])
        for n in range(3):
            ghes.deliveries.send("http://127.0.0.1:9/unreachable", "ping", {"zen": n}, "s", timeout=0.2)
        app = make_app(ghes, app_key, redis_client, fake_clock)
        assert app.installation(iid).get_repo("corp/tool").full_name == "corp/tool"
        assert len(app.list_hook_deliveries(per_page=2)) == 3  # Link headers keep the prefix
        assert sum(r.path == "/app/hook/deliveries" for r in ghes.requests) == 2


def test_installation_token_is_cached_in_process_memory_never_in_redis(
        github_sim: SimulatorServer, github_app: GitHubApp, app_factory: AppFactory, redis_client: redis.Redis,
        sim_repo: tuple[str, int]) -> None:
    repo, iid = sim_repo
    github_app.installation(iid).get_repo(repo)
    github_app.installation(iid).get_repo(repo)
    assert token_mints(github_sim) == 1  # cached in this process
    app_factory().installation(iid).get_repo(repo)  # another worker process mints its own
    assert token_mints(github_sim) == 2
    # whoever reads Redis (a runner host once could) finds no token: nothing under the old key, nothing anywhere
    assert not redis_client.exists(keys.installation_token(iid))
    for key in redis_client.scan_iter("*"):
        assert b"ghs_" not in (redis_client.dump(key) or b"")  # the simulator's tokens start as GitHub's do


def test_token_is_refreshed_five_minutes_before_expiry(github_sim: SimulatorServer, installation_client:
                                                       InstallationClient, sim_repo: tuple[str, int],
                                                       fake_clock: FakeClock) -> None:
    installation_client.get_repo(sim_repo[0])
    fake_clock.advance(3600 - 301)
    installation_client.get_repo(sim_repo[0])
    assert token_mints(github_sim) == 1
    fake_clock.advance(2)  # now within 5 minutes of expiry
    installation_client.get_repo(sim_repo[0])
    assert token_mints(github_sim) == 2


def test_a_401_on_a_cached_token_refreshes_it_once(github_sim: SimulatorServer, installation_client:
                                                   InstallationClient, sim_repo: tuple[str, int]) -> None:
    installation_client.get_repo(sim_repo[0])
    github_sim.expire_tokens()  # GitHub revoked it although our cache thinks it is fresh
    assert installation_client.get_repo(sim_repo[0]).full_name == sim_repo[0]
    assert token_mints(github_sim) == 2
    assert api_calls(github_sim, "/repos/octo-org/hello-world") == [200, 401, 200]


def test_a_401_that_persists_raises_auth_error_after_one_refresh(
        github_sim: SimulatorServer, installation_client: InstallationClient, sim_repo: tuple[str, int]) -> None:
    github_sim.sim.token_lifetime = 0  # every token GitHub hands out is already dead
    with pytest.raises(AuthError) as caught:
        installation_client.get_repo(sim_repo[0])
    assert caught.value.status == 401
    assert token_mints(github_sim) == 2


def test_secondary_limit_waits_for_retry_after(github_sim: SimulatorServer, installation_client: InstallationClient,
                                               sim_repo: tuple[str, int], fake_clock: FakeClock) -> None:
    github_sim.fail_next(1, "secondary", retry_after=7, match="/repos/")
    installation_client.get_repo(sim_repo[0])
    assert 7 in fake_clock.sleeps
    assert api_calls(github_sim, "/repos/") == [403, 200]


def test_secondary_limit_without_retry_after_backs_off_exponentially(
        github_sim: SimulatorServer, installation_client: InstallationClient, sim_repo: tuple[str, int],
        fake_clock: FakeClock) -> None:
    github_sim.fail_next(2, "secondary-no-retry-after", match="/repos/")
    installation_client.get_repo(sim_repo[0])
    assert fake_clock.sleeps == [60, 120]


def test_primary_limit_waits_until_reset(github_sim: SimulatorServer, installation_client: InstallationClient,
                                         sim_repo: tuple[str, int], fake_clock: FakeClock) -> None:
    start = fake_clock()
    github_sim.fail_next(1, "primary", reset_in=120, match="/repos/")
    installation_client.get_repo(sim_repo[0])
    assert fake_clock() - start >= 120
    assert api_calls(github_sim, "/repos/") == [403, 200]


def test_rate_limit_longer_than_allowed_raises_rate_limited(
        github_sim: SimulatorServer, sim_repo: tuple[str, int], app_factory: AppFactory, fake_clock: FakeClock) -> None:
    impatient = app_factory(retry=RetryPolicy(max_wait=60))
    github_sim.fail_next(1, "primary", reset_in=3000, match="/repos/")
    with pytest.raises(RateLimited) as caught:
        impatient.installation(sim_repo[1]).get_repo(sim_repo[0])
    assert caught.value.retry_after is not None and caught.value.retry_after > 2900
    assert caught.value.status == 403
    assert fake_clock.sleeps == []


def test_rate_limit_that_persists_raises_rate_limited(github_sim: SimulatorServer, installation_client:
                                                      InstallationClient, sim_repo: tuple[str, int]) -> None:
    github_sim.fail_next(10, "secondary", retry_after=1, match="/repos/")
    with pytest.raises(RateLimited):
        installation_client.get_repo(sim_repo[0])
    assert api_calls(github_sim, "/repos/") == [403] * 4  # the first try and three retries


def test_5xx_is_retried_with_backoff(github_sim: SimulatorServer, installation_client: InstallationClient,
                                     sim_repo: tuple[str, int], fake_clock: FakeClock) -> None:
    github_sim.fail_next(2, 502, match="/repos/")
    assert installation_client.get_repo(sim_repo[0]).name == "hello-world"
    assert fake_clock.sleeps == [1.0, 2.0]


def test_5xx_that_persists_raises_server_error(github_sim: SimulatorServer, installation_client: InstallationClient,
                                               sim_repo: tuple[str, int], fake_clock: FakeClock) -> None:
    github_sim.fail_next(10, 503, match="/repos/")
    with pytest.raises(ServerError) as caught:
        installation_client.get_repo(sim_repo[0])
    assert caught.value.status == 503 and isinstance(caught.value, Unavailable)
    assert fake_clock.sleeps == [1.0, 2.0, 4.0, 8.0]


def test_timeouts_are_retried_then_raise_unavailable(github_sim: SimulatorServer, sim_repo: tuple[str, int],
                                                     app_factory: AppFactory) -> None:
    quick = app_factory(timeout=(1.0, 0.2), retry=RetryPolicy(transient_attempts=1))
    client = quick.installation(sim_repo[1])
    github_sim.fail_next(1, "timeout", match="/repos/")
    assert client.get_repo(sim_repo[0]).name == "hello-world"
    github_sim.fail_next(2, "timeout", match="/repos/")
    with pytest.raises(Unavailable, match="ReadTimeout"):
        client.get_repo(sim_repo[0])


def test_connection_refused_raises_unavailable(app_key: RSAPrivateKey, redis_client: redis.Redis,
                                               fake_clock: FakeClock) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = GitHubApp(api_url=f"http://127.0.0.1:{port}", app_id=APP_ID, private_key=app_key, redis=redis_client,
                    clock=fake_clock, sleep=fake_clock.sleep, timeout=(0.5, 0.5))
    with pytest.raises(Unavailable) as caught:
        app.get_app()
    assert caught.value.status is None
    assert len(fake_clock.sleeps) == 4


def test_writes_of_one_installation_go_at_least_a_second_apart(
        github_sim: SimulatorServer, installation_client: InstallationClient, sim_repo: tuple[str, int]) -> None:
    repo = sim_repo[0]
    for n in range(3):
        installation_client.create_blob(repo, f"blob {n}")
    installation_client.get_repo(repo)
    installation_client.get_repo(repo)
    writes = [r.at for r in github_sim.requests if r.method == "POST" and "/git/blobs" in r.path]
    reads = [r.at for r in github_sim.requests if r.method == "GET"]
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(writes))
    assert reads[1] - reads[0] < 1.0  # reads are not spaced


def test_write_spacing_holds_across_workers(github_sim: SimulatorServer, sim_repo: tuple[str, int],
                                            app_factory: AppFactory) -> None:
    first = app_factory().installation(sim_repo[1])
    second = app_factory().installation(sim_repo[1])
    first.create_blob(sim_repo[0], "one")
    second.create_blob(sim_repo[0], "two")
    writes = [r.at for r in github_sim.requests if r.method == "POST" and "/git/blobs" in r.path]
    assert writes[1] - writes[0] >= 1.0


def test_concurrent_writes_never_overlap(github_sim: SimulatorServer, sim_repo: tuple[str, int],
                                         app_factory: AppFactory) -> None:
    github_sim.slow_next(4, 0.15, match="/git/blobs")
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            client = app_factory().installation(sim_repo[1])
            client.create_blob(sim_repo[0], f"concurrent {n}")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    spans = sorted((r.started, r.finished) for r in github_sim.requests if "/git/blobs" in r.path)
    assert len(spans) == 4
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))


def test_pagination_follows_link_headers(github_sim: SimulatorServer, github_app: GitHubApp) -> None:
    for n in range(5):
        github_sim.deliveries.send("http://127.0.0.1:9/unreachable", "ping", {"zen": n}, "s", timeout=0.2)
    deliveries = github_app.list_hook_deliveries(per_page=2)
    assert len(deliveries) == 5
    assert len({d.id for d in deliveries}) == 5
    assert [d.id for d in deliveries] == sorted((d.id for d in deliveries), reverse=True)
    assert len([r for r in github_sim.requests if r.path == "/app/hook/deliveries"]) == 3


def test_a_next_link_to_another_host_is_refused(github_sim: SimulatorServer, github_app: GitHubApp) -> None:
    github_sim.respond_next(200, [], match="/app/installations",
                            headers={"Link": '<http://evil.invalid/steal?page=2>; rel="next"'})
    with pytest.raises(MalformedResponse, match="outside"):
        github_app.list_installations()


@pytest.mark.parametrize(
    ("answer", "raw"),
    [
        (None, b"<html>not json</html>"),  # malformed JSON
        ({"id": 1, "full_name": "octo-org/hello-world"}, None),  # missing fields
        ({"id": "1", "full_name": 5, "name": "x", "owner": {"login": "o"}, "default_branch": "main",
          "private": False, "html_url": "u"}, None),  # wrong types
        ([1, 2], None),  # not an object at all
    ],
)
def test_bad_answers_from_github_raise_malformed_response(
        github_sim: SimulatorServer, installation_client: InstallationClient, sim_repo: tuple[str, int],
        answer: object, raw: bytes | None) -> None:
    installation_client.get_ref(sim_repo[0], "heads/main")  # mint the token first
    github_sim.respond_next(200, answer, raw=raw, match="/repos/")
    with pytest.raises(MalformedResponse):
        installation_client.get_repo(sim_repo[0])


def test_a_bool_where_github_promises_an_int_is_malformed(github_sim: SimulatorServer, github_app: GitHubApp) -> None:
    github_sim.respond_next(200, {"id": True, "slug": "x", "name": "x"}, match="/app")
    with pytest.raises(MalformedResponse, match="`id`"):
        github_app.get_app()


def test_429_with_retry_after_waits_that_long(github_sim: SimulatorServer, github_app: GitHubApp,
                                              fake_clock: FakeClock) -> None:
    github_sim.respond_next(429, {"message": "Too many requests"}, match="/app", headers={"retry-after": "3"})
    assert github_app.get_app().id == APP_ID
    assert fake_clock.sleeps == [3.0]


def test_an_exhausted_budget_on_a_success_holds_the_next_request(github_sim: SimulatorServer, github_app: GitHubApp,
                                                                 fake_clock: FakeClock) -> None:
    reset = int(fake_clock()) + 50
    github_app.get_app()
    github_sim.respond_next(200, {"id": APP_ID, "slug": "runnerguard", "name": "runnerguard"}, match="/app",
                            headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)})
    github_app.get_app()
    assert fake_clock.sleeps == []
    github_app.get_app()
    assert len(fake_clock.sleeps) == 1 and fake_clock() >= reset


def test_a_plain_403_is_forbidden_at_once_with_the_permission_named(
        github_sim: SimulatorServer, installation_client: InstallationClient, sim_repo: tuple[str, int],
        fake_clock: FakeClock) -> None:
    installation_client.get_repo(sim_repo[0])
    github_sim.respond_next(403, {"message": "Resource not accessible by integration"}, match="/repos/",
                            headers={"X-Accepted-GitHub-Permissions": "contents=write"})
    with pytest.raises(Forbidden) as caught:
        installation_client.get_repo(sim_repo[0])
    assert caught.value.missing_permission == "contents"
    assert fake_clock.sleeps == [] and api_calls(github_sim, "/repos/") == [200, 403]


def test_error_text_names_call_status_and_request_id(github_sim: SimulatorServer,
                                                     installation_client: InstallationClient) -> None:
    with pytest.raises(NotFound) as caught:
        installation_client.get_repo("octo-org/nothing-here")
    text = str(caught.value)
    assert "GET /repos/octo-org/nothing-here" in text and "HTTP 404" in text
    assert caught.value.request_id and caught.value.request_id in text
    assert caught.value.documentation_url == "https://docs.github.com/rest"


def test_odd_422_error_lists_are_still_typed(github_sim: SimulatorServer, installation_client: InstallationClient,
                                             sim_repo: tuple[str, int]) -> None:
    installation_client.get_repo(sim_repo[0])
    github_sim.respond_next(422, {"message": "Validation Failed", "errors": ["already_exists", 7]}, match="/repos/")
    with pytest.raises(Unprocessable) as caught:
        installation_client.create_blob(sim_repo[0], "x")
    assert caught.value.already_exists
    assert caught.value.errors == ({"message": "already_exists"}, {"message": "7"})


def test_a_damaged_token_cache_entry_is_replaced(github_sim: SimulatorServer, installation_client: InstallationClient,
                                                 sim_repo: tuple[str, int], redis_client: redis.Redis) -> None:
    redis_client.set(keys.installation_token(sim_repo[1]), b"{not json")
    assert installation_client.get_repo(sim_repo[0]).name == "hello-world"
    assert token_mints(github_sim) == 1


def test_a_call_sent_once_still_retries_a_refused_connection(app_key: RSAPrivateKey, redis_client: redis.Redis,
                                                             fake_clock: FakeClock) -> None:
    """`resend=False` holds back only where GitHub may have acted: a refused connect never reached it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = GitHubApp(api_url=f"http://127.0.0.1:{port}", app_id=APP_ID, private_key=app_key, redis=redis_client,
                    clock=fake_clock, sleep=fake_clock.sleep, timeout=(0.5, 0.5))
    with pytest.raises(Unavailable, match="unreachable"):
        app.transport.request("POST", "/repos/o/r/issues", auth=lambda _refresh: "Bearer x", resend=False)
    assert len(fake_clock.sleeps) == 4
