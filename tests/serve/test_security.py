"""Safe defaults: loopback binding, the access token, Host and Origin checks, no paths from requests."""

from __future__ import annotations

import json

import pytest

from mka_core.serve.limits import Limits
from mka_core.serve.security import AccessPolicy, is_loopback
from tests.serve.helpers import call, call_json, start_server


@pytest.fixture(scope="module")
def runtime(tiny_model_dir):
    from mka_core.pipeline import Pipeline
    from mka_core.serve.runtime import ModelRuntime

    return ModelRuntime(Pipeline.from_pretrained(tiny_model_dir, device="cpu"), tiny_model_dir, Limits())


@pytest.fixture(scope="module")
def live(runtime, tmp_path_factory):
    server = start_server(runtime, tmp_path_factory.mktemp("serve"))
    yield server
    server.close()


@pytest.fixture(scope="module")
def guarded(runtime, tmp_path_factory):
    server = start_server(runtime, tmp_path_factory.mktemp("serve-token"), token="s3cret-token")
    yield server
    server.close()


# -- the policy -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.1", "localhost", "::1", "[::1]"])
def test_loopback_hosts(host):
    assert is_loopback(host)
    assert AccessPolicy.for_binding(host, None).token is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.org"])
def test_any_other_binding_gets_a_random_token(host):
    first, second = AccessPolicy.for_binding(host, None), AccessPolicy.for_binding(host, None)
    assert not is_loopback(host)
    assert first.token and len(first.token) >= 32 and first.token != second.token
    assert AccessPolicy.for_binding(host, "given").token == "given"


def test_host_and_origin_rules():
    local = AccessPolicy.for_binding("127.0.0.1", None)
    assert local.host_allowed("127.0.0.1:7410") and local.host_allowed("localhost:7410") and local.host_allowed("[::1]:80")
    assert not local.host_allowed("evil.example:7410") and not local.host_allowed(None)
    assert AccessPolicy.for_binding("0.0.0.0", None).host_allowed("my-box.lan:7410")
    assert local.origin_allowed(None, "127.0.0.1:7410")
    assert local.origin_allowed("http://127.0.0.1:7410", "127.0.0.1:7410")
    assert not local.origin_allowed("http://evil.example", "127.0.0.1:7410")
    assert not local.origin_allowed("null", "127.0.0.1:7410")


# -- on a live server ------------------------------------------------------------------------------------


def test_a_foreign_host_header_is_refused(live):
    status, _, raw = call(f"{live.url}/api/info", headers={"Host": "evil.example:7410"})
    assert status == 403 and "localhost" in json.loads(raw)["error"]


def test_posts_from_another_sites_page_are_refused(live):
    host = live.url.removeprefix("http://")
    status, body = call_json(f"{live.url}/api/jobs", "POST", {"inputs": ["x"]}, {"Origin": "http://evil.example"})
    assert status == 403 and "another site" in body["error"]
    status, body = call_json(f"{live.url}/api/jobs", "POST", {"inputs": ["x"], "steps": 1, "duration": 0.2},
                             {"Origin": f"http://{host}"})
    assert status == 202, body


def test_responses_carry_the_security_headers(live):
    status, headers, page = call(f"{live.url}/")
    assert status == 200 and b"<title>mka serve</title>" in page
    assert headers["X-Content-Type-Options"] == "nosniff" and "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["Referrer-Policy"] == "no-referrer" and headers["X-Frame-Options"] == "DENY"
    assert call(f"{live.url}/", "HEAD")[2] == b""


@pytest.mark.parametrize(
    "path",
    ["/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/etc/passwd", "/static/app.js/../../serve/api.py",
     "/api/uploads/..%2f..%2fetc%2fpasswd/file", "/api/uploads/000000000000000000000000/file",
     "/api/jobs/../../etc/passwd", "/api/jobs/000000000000000000000000/outputs/0/audio",
     "/api/jobs/000000000000000000000000/frames/0/0", "//etc/passwd", "/etc/passwd"],
)
def test_no_url_reaches_a_file_outside_the_tables(live, path):
    status, _, raw = call(live.url + path)
    assert status == 404 and b"root:" not in raw and b"import" not in raw


def test_unknown_outputs_of_a_real_job_are_404(live):
    _, job = call_json(f"{live.url}/api/jobs", "POST", {"inputs": ["x"], "steps": 1, "duration": 0.2})
    from tests.serve.helpers import wait_for_job

    wait_for_job(live.url, job["id"])
    assert call(f"{live.url}/api/jobs/{job['id']}/outputs/1/audio")[0] == 404
    assert call(f"{live.url}/api/jobs/{job['id']}/outputs/0/audio")[0] == 200


def test_bodies_need_a_length_and_json_has_a_limit(live):
    status, _, raw = call(f"{live.url}/api/jobs", "POST", b"x" * (Limits().json_bytes + 1),
                          {"Content-Type": "application/json"})
    assert status == 413 and "limit" in json.loads(raw)["error"]
    status, _, raw = call(f"{live.url}/api/jobs", "POST", iter([b'{"inputs": ["x"]}']), {"Transfer-Encoding": "chunked"})
    assert status == 411


def test_a_wrong_method_is_named(live):
    status, body = call_json(f"{live.url}/api/info", "DELETE")
    assert status == 405 and "GET" in body["error"]


# -- the token ---------------------------------------------------------------------------------------------


def test_without_the_token_nothing_is_served(guarded):
    for path in ("/", "/api/info", "/static/app.js", "/api/jobs"):
        status, _, raw = call(guarded.url + path)
        assert status == 401 and "token" in json.loads(raw)["error"]
    assert call(f"{guarded.url}/api/info", headers={"Authorization": "Bearer wrong"})[0] == 401


def test_the_token_works_as_bearer_header_and_through_the_printed_address(guarded):
    assert call(f"{guarded.url}/api/info", headers={"Authorization": "Bearer s3cret-token"})[0] == 200
    status, headers, _ = call(f"{guarded.url}/?token=s3cret-token")
    assert status == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert call(f"{guarded.url}/api/info", headers={"Cookie": cookie.split(";")[0]})[0] == 200
    assert call(f"{guarded.url}/api/info", headers={"Cookie": "mka_token=nope"})[0] == 401
