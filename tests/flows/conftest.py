"""Flow fixtures: one Prefect test server per session, a fresh MLflow store per test, small data.

The Prefect harness starts a temporary API server (tens of seconds), so it is session-scoped.
A new MLflow SQLite database runs every schema migration (seconds), so one migrated template is
kept in pytest's cache folder and copied for each test.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A temporary Prefect API for the session; task results stored under a temp folder.

    The server skips registering Prefect's built-in block types at start (the flows store
    results in a local folder and use no server-side blocks), and its database starts from the
    installed Prefect version's migrated schema (:mod:`tests.flows.prefect_schema`) instead of
    running every migration: about 5 s instead of 17 s on 2 cores. Without that file for the
    installed version, the server migrates as usual. Flow and task logs stay in this process
    (no test reads them from the API; sending them costs both sides CPU time).
    """
    import prefect.testing.utilities
    from prefect.settings import (
        PREFECT_API_BLOCKS_REGISTER_ON_START,
        PREFECT_API_DATABASE_MIGRATE_ON_START,
        PREFECT_LOGGING_TO_API_ENABLED,
        PREFECT_RESULTS_LOCAL_STORAGE_PATH,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    from tests.flows.prefect_schema import seed_database

    storage = tmp_path_factory.mktemp("prefect-results")
    database = tmp_path_factory.mktemp("prefect-db")
    seeded = seed_database(database)
    with pytest.MonkeyPatch.context() as patch:
        if seeded:  # the harness puts its database in a fresh mkdtemp() folder: this one
            patch.setattr(prefect.testing.utilities, "mkdtemp", lambda: str(database))
        with (
            temporary_settings(
                {
                    PREFECT_RESULTS_LOCAL_STORAGE_PATH: str(storage),
                    PREFECT_SERVER_ANALYTICS_ENABLED: False,
                    PREFECT_LOGGING_TO_API_ENABLED: False,
                    PREFECT_API_BLOCKS_REGISTER_ON_START: False,
                    PREFECT_API_DATABASE_MIGRATE_ON_START: not seeded,
                }
            ),
            prefect_test_harness(server_startup_timeout=180),
        ):
            yield


@pytest.fixture(scope="session")
def mlflow_template(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A migrated, empty MLflow SQLite database (kept between sessions in pytest's cache)."""
    import mlflow
    from mlflow import MlflowClient

    cache = getattr(request.config, "cache", None)  # absent with -p no:cacheprovider
    name = f"mlflow-db-{mlflow.__version__}"
    folder = Path(cache.mkdir(name)) if cache else tmp_path_factory.mktemp(name)
    template = folder / "template.db"
    if not template.is_file():
        # Unique per process: parallel test workers may build it at the same time.
        building = folder / f"building-{os.getpid()}.db"
        building.unlink(missing_ok=True)
        MlflowClient(f"sqlite:///{building}").search_experiments()  # runs the migrations
        building.replace(template)
    return template


@pytest.fixture
def mlflow_store(tmp_path: Path, mlflow_template: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh tracking URI (a copy of the template) with artifacts under ``tmp_path``."""
    db = tmp_path / "mlflow.db"
    shutil.copyfile(mlflow_template, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("SEGREFINER_MLFLOW_ARTIFACT_ROOT", str(tmp_path / "mlartifacts"))
    return uri


@pytest.fixture(scope="session")
def coco_two_images(demo_ci: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo segmentor's results restricted to two val images."""
    results = json.loads((demo_ci / "results" / "segmentor_val.segm.json").read_text())
    keep = sorted({r["image_id"] for r in results})[:2]
    out = tmp_path_factory.mktemp("coco2") / "two_images.segm.json"
    out.write_text(json.dumps([r for r in results if r["image_id"] in keep]))
    return out
