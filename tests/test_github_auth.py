"""The App's private key, the App JWT, and how the simulator judges JWTs and installation tokens."""

from __future__ import annotations

import logging
from pathlib import Path

import jwt
import pytest
import redis
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from devtools.github_simulator import SimulatorServer
from runnerguard.github import (
    AuthError,
    GitHubApp,
    GitHubKeyError,
    load_private_key,
    load_private_key_from,
    mint_app_jwt,
)
from tests.github_fixtures import APP_ID, FakeClock, make_app

KEY_BODY_LINE = 2  # a line from inside the PEM, never allowed to appear in an error


def pem_of(key: RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def test_rsa_pem_is_loaded(app_key_pem: bytes) -> None:
    assert isinstance(load_private_key(app_key_pem), RSAPrivateKey)


def test_garbage_key_is_refused_without_echoing_it() -> None:
    secretish = b"-----BEGIN RSA PRIVATE KEY-----\nTOPSECRETMATERIAL\n-----END RSA PRIVATE KEY-----\n"
    with pytest.raises(GitHubKeyError) as caught:
        load_private_key(secretish)
    assert "TOPSECRETMATERIAL" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_non_rsa_key_is_refused_with_a_clear_reason() -> None:
    with pytest.raises(GitHubKeyError, match="not an RSA key"):
        load_private_key(pem_of(ec.generate_private_key(ec.SECP256R1())))


def test_encrypted_key_is_refused(app_key: RSAPrivateKey) -> None:
    encrypted = app_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(b"pw"))
    with pytest.raises(GitHubKeyError, match="unencrypted"):
        load_private_key(encrypted)


def test_key_file_that_cannot_be_read_names_the_path_only(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(GitHubKeyError, match=r"cannot read .*nope\.pem"):
        load_private_key_from(missing, None)


def test_key_file_wins_over_inline_pem(tmp_path: Path, app_key_pem: bytes, app_key: RSAPrivateKey) -> None:
    path = tmp_path / "app.pem"
    path.write_bytes(app_key_pem)
    loaded = load_private_key_from(path, "not a key")
    assert loaded.private_numbers() == app_key.private_numbers()


def test_inline_pem_with_escaped_newlines_is_accepted(app_key_pem: bytes, app_key: RSAPrivateKey) -> None:
    escaped = app_key_pem.decode().replace("\n", "\\n")
    assert load_private_key_from(None, escaped).private_numbers() == app_key.private_numbers()


def test_no_key_at_all_names_both_settings() -> None:
    with pytest.raises(GitHubKeyError, match="GITHUB_PRIVATE_KEY_PATH or GITHUB_PRIVATE_KEY"):
        load_private_key_from(None, None)


def test_unreadable_inline_key_error_hides_the_key(app_key_pem: bytes) -> None:
    broken = app_key_pem.decode().replace("A", "!", 3)
    with pytest.raises(GitHubKeyError) as caught:
        load_private_key_from(None, broken)
    assert broken.splitlines()[KEY_BODY_LINE] not in str(caught.value)


def test_app_jwt_claims_follow_githubs_rules(app_key: RSAPrivateKey) -> None:
    now = 1_700_000_000.7
    token = mint_app_jwt(APP_ID, app_key, now)
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(token, app_key.public_key(), algorithms=["RS256"], options={"verify_exp": False,
                                                                                       "verify_iat": False})
    assert claims["iss"] == str(APP_ID)
    assert claims["iat"] == int(now) - 60
    assert claims["exp"] > now and claims["exp"] - claims["iat"] <= 600
    assert len(claims["jti"]) >= 16
    assert mint_app_jwt(APP_ID, app_key, now) != token  # a fresh jti every time


def _raw_get(github_sim: SimulatorServer, token: str) -> requests.Response:
    return requests.get(f"{github_sim.url}/app", headers={"Authorization": f"Bearer {token}"}, timeout=5)


def test_simulator_accepts_the_clients_jwt(github_app: GitHubApp) -> None:
    assert github_app.get_app().id == APP_ID


def test_simulator_refuses_a_jwt_signed_by_another_key(github_sim: SimulatorServer, fake_clock: FakeClock) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    answer = _raw_get(github_sim, mint_app_jwt(APP_ID, other, fake_clock()))
    assert answer.status_code == 401
    assert answer.json()["message"] == "A JSON web token could not be decoded"


def test_simulator_refuses_an_expired_jwt(github_sim: SimulatorServer, app_key: RSAPrivateKey,
                                          fake_clock: FakeClock) -> None:
    token = mint_app_jwt(APP_ID, app_key, fake_clock())
    fake_clock.advance(600)
    answer = _raw_get(github_sim, token)
    assert answer.status_code == 401 and "'exp'" in answer.json()["message"]


@pytest.mark.parametrize(
    ("claims", "fragment"),
    [
        ({"iss": "999"}, "'iss'"),
        ({"exp_offset": 1200}, "'exp'"),  # a lifetime over 10 minutes
        ({"iat_offset": 300}, "'iat'"),  # issued in the future, beyond the skew
    ],
)
def test_simulator_refuses_jwts_github_would_refuse(github_sim: SimulatorServer, app_key: RSAPrivateKey,
                                                   fake_clock: FakeClock, claims: dict[str, object],
                                                   fragment: str) -> None:
    now = int(fake_clock())
    iat = now - 60 + int(claims.get("iat_offset", 0))  # type: ignore[call-overload]
    body = {"iss": claims.get("iss", str(APP_ID)), "iat": iat, "exp": iat + int(claims.get("exp_offset", 600))}  # type: ignore[call-overload]
    answer = _raw_get(github_sim, jwt.encode(body, app_key, algorithm="RS256"))
    assert answer.status_code == 401
    assert fragment in answer.json()["message"]


def test_client_with_the_wrong_key_gets_a_typed_auth_error(github_sim: SimulatorServer, redis_client: redis.Redis,
                                                           fake_clock: FakeClock) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client = make_app(github_sim, other, redis_client, fake_clock)
    with pytest.raises(AuthError) as caught:
        client.get_app()
    assert caught.value.status == 401 and caught.value.request_id
    # a 401 earns exactly one fresh JWT, then the error
    assert [r.status for r in github_sim.requests] == [401, 401]


def test_unknown_installation_token_is_bad_credentials(github_sim: SimulatorServer, sim_repo: tuple[str, int]) -> None:
    answer = requests.get(f"{github_sim.url}/repos/{sim_repo[0]}", headers={"Authorization": "token ghs_nope"},
                          timeout=5)
    assert answer.status_code == 401 and answer.json()["message"] == "Bad credentials"


def test_expired_installation_token_is_refused(github_sim: SimulatorServer, github_app: GitHubApp,
                                               sim_repo: tuple[str, int], fake_clock: FakeClock) -> None:
    token = github_app.create_installation_token(sim_repo[1])
    fake_clock.advance(3601)
    answer = requests.get(f"{github_sim.url}/repos/{sim_repo[0]}",
                          headers={"Authorization": f"Bearer {token.token}"}, timeout=5)
    assert answer.status_code == 401


def test_token_of_another_installation_cannot_see_the_repo(github_sim: SimulatorServer, github_app: GitHubApp,
                                                           sim_repo: tuple[str, int]) -> None:
    github_sim.add_repo("elsewhere/other", {"a": "b"})
    other = github_sim.install(["elsewhere/other"])
    token = github_app.create_installation_token(other)
    answer = requests.get(f"{github_sim.url}/repos/{sim_repo[0]}", headers={"Authorization": f"token {token.token}"},
                          timeout=5)
    assert answer.status_code == 404 and answer.json()["message"] == "Not Found"


def test_no_key_or_token_in_reprs_errors_or_logs(github_sim: SimulatorServer, github_app: GitHubApp,
                                                 sim_repo: tuple[str, int], app_key_pem: bytes,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = github_app.installation(sim_repo[1])
    github_sim.fail_next(1, 502, match="/repos/")
    client.get_repo(sim_repo[0])
    token = github_app.installation_token(sim_repo[1])
    jwt_token = github_app.app_jwt()
    with pytest.raises(Exception) as caught:
        client.get_contents(sim_repo[0], "missing.txt")
    key_line = app_key_pem.decode().splitlines()[KEY_BODY_LINE]
    texts = [repr(github_app), repr(client), repr(github_app.tokens), repr(github_app.transport), str(caught.value),
             repr(caught.value), caplog.text]
    for text in texts:
        assert token not in text and jwt_token not in text and key_line not in text
    assert "github request failed" in caplog.text  # the retry was logged, without secrets
