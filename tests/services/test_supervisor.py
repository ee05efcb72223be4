"""The services helper without the real servers: commands, environment, pid files, signals."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from services import supervisor
from services.settings import ServiceSettings
from services.supervisor import Service, pid_file, read_pid, service_specs, start, stop


@pytest.fixture
def settings(tmp_path: Path) -> ServiceSettings:
    return ServiceSettings(root=tmp_path, state_dir=tmp_path / ".services", prefect_port=14200,
                           mlflow_port=15000)  # fmt: skip


def test_commands_bind_loopback_and_keep_state_under_the_project(settings):
    specs = {s.name: s for s in service_specs(settings)}
    assert list(specs) == ["prefect-server", "mlflow-server", "runner"]
    prefect = specs["prefect-server"].command
    assert prefect[prefect.index("--host") + 1] == "127.0.0.1"
    assert prefect[prefect.index("--port") + 1] == "14200"
    mlflow = specs["mlflow-server"].command
    assert mlflow[mlflow.index("--workers") + 1] == "1"
    assert mlflow[mlflow.index("--host") + 1] == "127.0.0.1"
    assert mlflow[mlflow.index("--backend-store-uri") + 1] == (
        f"sqlite:///{settings.state_dir}/mlflow/mlflow.db"
    )
    assert dict(specs["mlflow-server"].env)["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert specs["runner"].stop_signal == signal.SIGINT  # serve() ignores SIGTERM
    env = settings.env()
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:14200/api"
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:15000"
    assert Path(env["PREFECT_HOME"]).is_relative_to(settings.state_dir)


def _sleeper(name: str, *, ignore: int | None = None, ready: Path | None = None) -> Service:
    """A service that sleeps; with ``ready``, it creates that file once its signal handler is
    in place."""
    code = "import signal, time\n"
    if ignore is not None:
        code += f"signal.signal({int(ignore)}, signal.SIG_IGN)\n"
    if ready is not None:
        code += f"open({str(ready)!r}, 'w').close()\n"
    code += "time.sleep(120)  # sleeper-service\n"
    return Service(
        name=name,
        command=(sys.executable, "-c", code),
        marker="sleeper-service",
        stop_signal=signal.SIGINT,
        stop_timeout=1.0,
        start_timeout=10.0,
    )


def test_start_writes_pid_file_reuses_and_stop_removes(settings):
    service = _sleeper("sleeper")
    pid = start(settings, service, say=lambda _: None)
    try:
        found = read_pid(settings, service)
        assert found == pid, (  # what the process looked like, should it ever fail
            supervisor._state(pid),
            supervisor._cmdline(pid),
            (settings.log_dir / "sleeper.log").read_text(),
        )
        assert start(settings, service, say=lambda _: None) == pid  # reused, not restarted
        assert (settings.log_dir / "sleeper.log").is_file()
    finally:
        assert stop(settings, service, say=lambda _: None)
    assert read_pid(settings, service) is None
    assert not pid_file(settings, "sleeper").exists()
    assert not stop(settings, service, say=lambda _: None)  # nothing left to stop


def _wait_for(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.01)


def test_a_service_ignoring_its_stop_signal_is_killed(settings, tmp_path):
    ready = tmp_path / "stubborn.ready"
    service = _sleeper("stubborn", ignore=signal.SIGINT, ready=ready)
    messages: list[str] = []
    pid = start(settings, service, say=messages.append)
    _wait_for(ready)  # it ignores SIGINT from here on
    stop(settings, service, say=messages.append)
    assert any("killing" in m for m in messages)
    assert read_pid(settings, service) is None
    stat = Path(f"/proc/{pid}/stat")
    # Gone, or a zombie until this test process (its parent here) reaps it.
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_stale_or_reused_pid_files_are_not_trusted(settings):
    service = _sleeper("ghost")
    settings.pid_dir.mkdir(parents=True)
    pid_file(settings, "ghost").write_text("999999\n")  # no such process
    assert read_pid(settings, service) is None
    import os

    pid_file(settings, "ghost").write_text(f"{os.getpid()}\n")  # alive, but not the service
    assert read_pid(settings, service) is None
    pid_file(settings, "ghost").write_text("not a pid\n")
    assert read_pid(settings, service) is None


def test_an_empty_command_line_is_unknown_not_a_stranger(settings, monkeypatch):
    """/proc/<pid>/cmdline is empty while a process is being set up or torn down: the live pid
    of the pid file is trusted then, as when the command line cannot be read at all."""
    import os

    service = _sleeper("starting")
    settings.pid_dir.mkdir(parents=True)
    pid_file(settings, "starting").write_text(f"{os.getpid()}\n")
    assert read_pid(settings, service) is None  # our own command line: not the service
    real = Path.read_bytes
    monkeypatch.setattr(
        Path, "read_bytes", lambda self: b"" if self.name == "cmdline" else real(self)
    )
    assert supervisor._cmdline(os.getpid()) is None
    assert read_pid(settings, service) == os.getpid()


def test_a_stranger_on_the_port_is_not_taken_for_our_server(settings):
    import http.server
    import threading

    from services.supervisor import ServiceError

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    stranger = http.server.HTTPServer(("127.0.0.1", 0), Ok)
    thread = threading.Thread(target=stranger.serve_forever, daemon=True)
    thread.start()
    try:
        port = stranger.server_address[1]
        service = _sleeper("server")
        service = Service(**{**service.__dict__, "health_url": f"http://127.0.0.1:{port}/health"})
        with pytest.raises(ServiceError, match=rf"127.0.0.1:{port}/health already answers, but"):
            start(settings, service, say=lambda _: None)
        assert read_pid(settings, service) is None  # nothing of ours was started
    finally:
        stranger.shutdown()
