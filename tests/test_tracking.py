"""MLflow lookups with awkward names, and tracking servers that answer but refuse us,
against a real store (the session's SQLite one) and a real HTTP server."""

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from alexnet import members, tracking
from alexnet.errors import UserError


@pytest.mark.parametrize("name", ["o'neil-run", 'say "hi"', "plain"])
def test_a_run_whose_name_has_a_quote_is_found_again(name: str) -> None:
    client = tracking.client()
    exp_id = tracking.experiment_id(client, "test-tracking-names")
    run_id, resumed = tracking.start_or_resume_run(client, exp_id, name, {"lr": 0.01})
    assert not resumed
    again, resumed = tracking.start_or_resume_run(client, exp_id, name, {"lr": 0.01})
    assert (again, resumed) == (run_id, True)


def test_a_name_with_both_quotes_is_refused_by_flag() -> None:
    with pytest.raises(UserError, match="--name .*use either ' or \" in it, not both"):
        tracking.filter_quote("it's \"x\"", "--name")


def test_runs_tagged_with_a_quote_are_members() -> None:
    client = tracking.client()
    exp_id = tracking.experiment_id(client, "test-tracking-tags")
    run = client.create_run(exp_id, tags={"team": "o'neil"})
    client.set_terminated(run.info.run_id, "FINISHED")
    client.set_terminated(client.create_run(exp_id, tags={"team": "other"}).info.run_id, "FINISHED")
    assert members.tagged(client, "test-tracking-tags", "team=o'neil") == [run.info.run_id]

    parent = client.create_run(exp_id)
    child = client.create_run(exp_id, tags={tracking.PARENT_TAG: parent.info.run_id})
    client.set_terminated(child.info.run_id, "FINISHED")
    assert members.children_of(client, parent.info.run_id) == [child.info.run_id]


class _Guarded(BaseHTTPRequestHandler):
    """/health behind a bearer token, as a proxy in front of a tracking server is."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        ok = self.headers.get("Authorization") == "Bearer s3cret"
        self.send_response(200 if ok else 401)
        self.end_headers()
        self.wfile.write(b"OK" if ok else b"Unauthorized")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def guarded_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for var in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Guarded)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_server_that_wants_credentials_says_so(guarded_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError) as e:
        tracking.check_reachable(guarded_server)
    msg = str(e.value)
    assert msg.startswith(f"MLFLOW_TRACKING_URI={guarded_server} answers HTTP 401")
    assert "needs credentials" in msg and "does not answer" not in msg
    assert "MLFLOW_TRACKING_USERNAME" in msg and "MLFLOW_TRACKING_PASSWORD" in msg and "MLFLOW_TRACKING_TOKEN" in msg

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "wrong")
    with pytest.raises(UserError, match="the credentials in MLFLOW_TRACKING_TOKEN were refused"):
        tracking.check_reachable(guarded_server)

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "s3cret")  # the token MLflow would send is sent
    tracking.check_reachable(guarded_server)
