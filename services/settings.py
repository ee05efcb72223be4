"""Where the local services live and how every process finds them: the one place that sets
``PREFECT_API_URL``, ``PREFECT_HOME`` and ``MLFLOW_TRACKING_URI`` for spawned processes.

Everything the services keep (Prefect's home and database, the MLflow database and artifacts,
pid files, logs) is under ``<project>/.services/`` (git-ignored), so a project folder is
self-contained and nothing is written to the user's home directory. Ports and the state folder
can be moved with ``SEGREFINER_PREFECT_PORT``, ``SEGREFINER_MLFLOW_PORT`` and
``SEGREFINER_SERVICES_DIR``. ``SEGREFINER_DATA_ROOT`` (default ``data``; the demo uses
``data/demo``) is the data root the served deployments' parameters point at, and
``SEGREFINER_REEVALUATE_INTERVAL`` the re-evaluation schedule in seconds (default 600).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PROJECT_ROOT", "ServiceSettings", "load_settings"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"  # every service binds to loopback only


@dataclass(frozen=True)
class ServiceSettings:
    """Addresses and folders of the local Prefect server, MLflow server and runner."""

    root: Path = PROJECT_ROOT
    state_dir: Path = PROJECT_ROOT / ".services"
    prefect_port: int = 4200
    mlflow_port: int = 5000
    data_root: str = "data"  # what the served deployments' default parameters point at
    reevaluate_interval_s: int = 600

    @property
    def prefect_url(self) -> str:
        """The Prefect UI."""
        return f"http://{HOST}:{self.prefect_port}"

    @property
    def prefect_api_url(self) -> str:
        return f"{self.prefect_url}/api"

    @property
    def prefect_home(self) -> Path:
        return self.state_dir / "prefect"

    @property
    def mlflow_url(self) -> str:
        """The MLflow UI and tracking URI."""
        return f"http://{HOST}:{self.mlflow_port}"

    @property
    def mlflow_db(self) -> Path:
        return self.state_dir / "mlflow" / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.state_dir / "mlflow" / "artifacts"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def pid_dir(self) -> Path:
        return self.state_dir / "pids"

    def env(self) -> dict[str, str]:
        """Variables for every process that talks to the services (runner, flow runs, CLI)."""
        return {
            "PREFECT_API_URL": self.prefect_api_url,
            "PREFECT_HOME": str(self.prefect_home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_API_URL": self.prefect_api_url,
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            # The tracking server owns the artifact store; clients upload through it.
            "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "false",
            "SEGREFINER_DATA_ROOT": self.data_root,
            "SEGREFINER_REEVALUATE_INTERVAL": str(self.reevaluate_interval_s),
            # Flow runs and Dask workers import the project from here.
            "PYTHONPATH": _prepend(str(self.root), os.environ.get("PYTHONPATH", "")),
        }


def _prepend(path: str, current: str) -> str:
    parts = [p for p in current.split(os.pathsep) if p]
    return os.pathsep.join([path, *[p for p in parts if p != path]])


def load_settings() -> ServiceSettings:
    """Settings from the environment (defaults: ports 4200 / 5000, ``<project>/.services``)."""
    state = os.environ.get("SEGREFINER_SERVICES_DIR")
    return ServiceSettings(
        state_dir=Path(state).resolve() if state else PROJECT_ROOT / ".services",
        prefect_port=int(os.environ.get("SEGREFINER_PREFECT_PORT", "4200")),
        mlflow_port=int(os.environ.get("SEGREFINER_MLFLOW_PORT", "5000")),
        data_root=os.environ.get("SEGREFINER_DATA_ROOT", "data"),
        reevaluate_interval_s=int(os.environ.get("SEGREFINER_REEVALUATE_INTERVAL", "600")),
    )
