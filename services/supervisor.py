"""Start, stop and inspect the local services: Prefect server, MLflow server, deployment runner.

::

    python -m services up        # start (or reuse) all three, wait until they answer
    python -m services status    # what runs, where, and the log files
    python -m services down      # runner first, then the servers

Each service is a background process in its own session (so that ending the starting shell
does not end it) with a pid file under ``.services/pids/`` and a log under ``.services/logs/``.
A pid file is trusted only while that process is alive and its command line is the service's
(pids are reused). ``up`` reuses a healthy service and replaces a dead one.

Stopping sends the service's stop signal to its process group, waits, then kills the group:
the Prefect runner ignores SIGTERM and shuts down on SIGINT (cancelling its flow runs); the
MLflow server's web workers and the runner's flow-run processes are in the same group.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from services.settings import HOST, ServiceSettings, load_settings

__all__ = [
    "DEPLOYMENT_NAMES",
    "Service",
    "ServiceError",
    "down",
    "read_pid",
    "service_specs",
    "status",
    "up",
]

# What the runner serves; `up` waits until the Prefect server lists them as polled.
DEPLOYMENT_NAMES = (
    "refine-coco/demo",
    "refine-coco/default",
    "refine-big/default",
    "refine-dis/default",
    "gen-coarse-hr/default",
    "train-lr/default",
    "train-hr/default",
    "evaluate/default",
    "reevaluate/scheduled",
)


class ServiceError(RuntimeError):
    """A service did not start, or did not answer in time; the message ends with its log."""


@dataclass(frozen=True)
class Service:
    """One background process: how to start it, how to know it is ready, how to stop it."""

    name: str
    command: tuple[str, ...]
    marker: str  # a string its command line contains (guards against reused pids)
    stop_signal: int = signal.SIGTERM
    health_url: str | None = None
    env: tuple[tuple[str, str], ...] = ()  # extra environment of this service only
    start_timeout: float = 180.0
    stop_timeout: float = 20.0


def service_specs(settings: ServiceSettings) -> list[Service]:
    """The services in start order (stop order is the reverse)."""
    python = sys.executable
    return [
        Service(
            name="prefect-server",
            command=(
                python, "-m", "prefect", "server", "start",
                "--host", HOST, "--port", str(settings.prefect_port),
            ),
            marker="prefect server start",
            health_url=f"{settings.prefect_api_url}/health",
        ),
        Service(
            name="mlflow-server",
            command=(
                python, "-m", "mlflow", "server",
                "--host", HOST, "--port", str(settings.mlflow_port),
                # One web worker is plenty here; the default starts several (~2.5 GB).
                "--workers", "1",
                "--backend-store-uri", f"sqlite:///{settings.mlflow_db}",
                "--artifacts-destination", str(settings.mlflow_artifacts),
            ),
            marker="mlflow server",
            health_url=f"{settings.mlflow_url}/health",
            # The job runner (GenAI evaluation jobs) adds ~8 processes and ~1.5 GB; unused here.
            env=(("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false"),),
        ),
        Service(
            name="runner",
            command=(python, "-m", "flows.deployments"),
            marker="flows.deployments",
            # serve() treats SIGTERM as nothing to act on; SIGINT shuts it down cleanly.
            stop_signal=signal.SIGINT,
            stop_timeout=30.0,
        ),
    ]  # fmt: skip


# --------------------------------------------------------------------------- pid files


def pid_file(settings: ServiceSettings, name: str) -> Path:
    return settings.pid_dir / f"{name}.pid"


def log_file(settings: ServiceSettings, name: str) -> Path:
    return settings.log_dir / f"{name}.log"


def _cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    # Empty while the process is being set up or torn down: unknown, not "another program".
    return raw.replace(b"\0", b" ").decode(errors="replace").strip() or None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _state(pid) != "Z"


def _state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def read_pid(settings: ServiceSettings, service: Service) -> int | None:
    """The service's pid when its pid file names a live process running that service."""
    path = pid_file(settings, service.name)
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    if not _alive(pid):
        return None
    cmdline = _cmdline(pid)
    if cmdline is not None and service.marker not in cmdline:
        return None  # the pid was reused by another program
    return pid


# --------------------------------------------------------------------------- health


def _http_ok(url: str, timeout: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _get_json(url: str, timeout: float = 5.0) -> object | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def deployments_polled(settings: ServiceSettings, since: datetime | None = None) -> list[str]:
    """Deployments of :data:`DEPLOYMENT_NAMES` the runner has not polled (since ``since``)."""
    waiting = []
    for name in DEPLOYMENT_NAMES:
        info = _get_json(f"{settings.prefect_api_url}/deployments/name/{name}")
        polled = _parse_time(info.get("last_polled")) if isinstance(info, dict) else None
        if polled is None or (since is not None and polled < since):
            waiting.append(name)
    return waiting


def _healthy(settings: ServiceSettings, service: Service, since: datetime | None) -> bool:
    if service.health_url is not None:
        return _http_ok(service.health_url)
    if service.name == "runner":
        return not deployments_polled(settings, since)
    return True


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- start / stop


def start(
    settings: ServiceSettings,
    service: Service,
    *,
    say: Callable[[str], None] = print,
    spawn: Callable[..., subprocess.Popen] = subprocess.Popen,
) -> int:
    """Start ``service`` unless it already runs and answers; wait until it is healthy.

    Returns its pid. Raises :class:`ServiceError` when it exits or does not answer in time.
    """
    pid = read_pid(settings, service)
    if pid is not None and _healthy(settings, service, None):
        say(f"{service.name}: running (pid {pid}), reused")
        return pid
    if pid is not None:  # alive but not answering: replace it
        stop(settings, service, say=say)
    if service.health_url is not None and _http_ok(service.health_url):
        # Something this project did not start answers on the port: it would pass for our
        # server (and ours could not bind). Say so rather than talk to a stranger.
        raise ServiceError(
            f"{service.name}: {service.health_url} already answers, but not from a process "
            f"started here (no pid in {pid_file(settings, service.name)}); stop that process "
            "or move ours with SEGREFINER_PREFECT_PORT / SEGREFINER_MLFLOW_PORT"
        )
    for folder in (settings.log_dir, settings.pid_dir, settings.prefect_home):
        folder.mkdir(parents=True, exist_ok=True)
    settings.mlflow_artifacts.mkdir(parents=True, exist_ok=True)
    log_path = log_file(settings, service.name)
    started = datetime.now(UTC)
    with open(log_path, "ab") as log:
        log.write(f"\n--- {started.isoformat()} {' '.join(service.command)}\n".encode())
        log.flush()
        proc = spawn(
            list(service.command),
            cwd=settings.root,
            env={**os.environ, **settings.env(), **dict(service.env)},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop() signals the whole group
        )
    pid_file(settings, service.name).write_text(f"{proc.pid}\n")
    say(f"{service.name}: starting (pid {proc.pid}, log {log_path})")
    deadline = time.monotonic() + service.start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pid_file(settings, service.name).unlink(missing_ok=True)
            raise ServiceError(
                f"{service.name} exited with status {proc.returncode}; log tail ({log_path}):\n"
                f"{_tail(log_path)}"
            )
        if _healthy(settings, service, started):
            say(f"{service.name}: ready")
            return proc.pid
        time.sleep(1.0)
    raise ServiceError(
        f"{service.name} did not answer within {service.start_timeout:.0f} s; log tail "
        f"({log_path}):\n{_tail(log_path)}"
    )


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the service leads its own group (start_new_session)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def stop(
    settings: ServiceSettings, service: Service, *, say: Callable[[str], None] = print
) -> bool:
    """Stop ``service``: its stop signal, then SIGKILL after ``stop_timeout``. Returns whether
    a process was running."""
    pid = read_pid(settings, service)
    path = pid_file(settings, service.name)
    if pid is None:
        path.unlink(missing_ok=True)
        return False
    say(f"{service.name}: stopping (pid {pid})")
    _signal_group(pid, service.stop_signal)
    deadline = time.monotonic() + service.stop_timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.5)
    if _alive(pid):
        say(f"{service.name}: still running after {service.stop_timeout:.0f} s; killing it")
    # Children (web workers, flow runs, Dask workers) may outlive the leader: end the group.
    _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    path.unlink(missing_ok=True)
    return True


def up(settings: ServiceSettings | None = None, *, say: Callable[[str], None] = print) -> None:
    """Start (or reuse) every service, in order."""
    settings = settings or load_settings()
    for service in service_specs(settings):
        start(settings, service, say=say)


def down(settings: ServiceSettings | None = None, *, say: Callable[[str], None] = print) -> None:
    """Stop every service: the runner before the servers it talks to."""
    settings = settings or load_settings()
    stopped = [stop(settings, s, say=say) for s in reversed(service_specs(settings))]
    if not any(stopped):
        say("no service was running")


def status(settings: ServiceSettings | None = None) -> dict[str, dict[str, object]]:
    """Per service: pid (or None), whether it answers, its log file."""
    settings = settings or load_settings()
    out: dict[str, dict[str, object]] = {}
    for service in service_specs(settings):
        pid = read_pid(settings, service)
        out[service.name] = {
            "pid": pid,
            "healthy": pid is not None and _healthy(settings, service, None),
            "log": str(log_file(settings, service.name)),
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services", description=__doc__)
    parser.add_argument("action", choices=("up", "down", "status", "env"))
    args = parser.parse_args(argv)
    settings = load_settings()
    try:
        if args.action == "up":
            up(settings)
            print(f"Prefect UI: {settings.prefect_url}\nMLflow UI:  {settings.mlflow_url}")
        elif args.action == "down":
            down(settings)
        elif args.action == "env":  # for `eval "$(python -m services env)"`
            for key, value in settings.env().items():
                print(f"export {key}={shlex.quote(value)}")
        else:
            for name, info in status(settings).items():
                state = "stopped" if info["pid"] is None else f"pid {info['pid']}"
                health = "healthy" if info["healthy"] else "not answering"
                print(f"{name:15s} {state:12s} {health if info['pid'] else '':14s} {info['log']}")
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
