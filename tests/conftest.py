"""Shared fixtures: warehouse URLs (SQLite, PostgreSQL) and realistic records.

PostgreSQL: the local server at ``MLOBS_TEST_PG_ADMIN_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``, trust auth). Each test using
``pg_url`` gets a fresh database, dropped afterwards. When the server is unreachable the
PostgreSQL tests are skipped, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from mlobs.core.records import ComponentRecord, EventRecord, ModelRef, RunRecord
from mlobs.core.signature import config_hash, model_signature
from support.ci import unavailable

PG_ADMIN_URL = os.environ.get("MLOBS_TEST_PG_ADMIN_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")



# -- database URLs ------------------------------------------------------------------------

@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """URL of a not-yet-existing SQLite warehouse file under tmp_path."""
    return f"sqlite:///{tmp_path / 'warehouse' / 'warehouse.db'}"


@pytest.fixture(scope="session")
def pg_admin_engine() -> Iterator[Engine]:
    """AUTOCOMMIT engine on the PostgreSQL maintenance database (CREATE/DROP DATABASE)."""
    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool,
                           connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        engine.dispose()
        reason = (f"PostgreSQL is unreachable at {PG_ADMIN_URL} "
                  f"({str(exc).splitlines()[0]}); start it or set MLOBS_TEST_PG_ADMIN_URL")
        unavailable(reason)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_url(pg_admin_engine: Engine) -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database ``mlobs_test_<hex>``, dropped afterwards."""
    name = f"mlobs_test_{uuid.uuid4().hex[:12]}"
    with pg_admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield pg_admin_engine.url.set(database=name).render_as_string(hide_password=False)
    with pg_admin_engine.connect() as conn:
        # FORCE terminates connections a test left open (pools not disposed, ...).
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each test using it runs once on SQLite and once on PostgreSQL."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


# -- records ------------------------------------------------------------------------------

WHISPER = ModelRef(name="openai/whisper-small", version="973afd24", runtime="inprocess",
                   weights_digest="sha256:" + "a1" * 32, engine="torch", precision="fp16",
                   device="cuda:0")
E5 = ModelRef(name="intfloat/e5-base-v2", version="1c644c92", runtime="triton",
              weights_digest="sha256:" + "b2" * 32, engine="onnx", precision="fp16",
              device="cuda:1")
RERANKER = ModelRef(name="BAAI/bge-reranker-base", version="2cfc18c9", runtime="inprocess",
                    weights_digest="sha256:" + "c3" * 32, engine="torch", precision="fp32",
                    device="cpu")
YOLO = ModelRef(name="ultralytics/yolov8n", version="8.1.0", runtime="inprocess",
                weights_digest="sha256:" + "d4" * 32, engine="tensorrt", precision="int8",
                device="cuda:0")


def _uuid() -> str:
    return str(uuid.uuid4())


def build_run(*, platform_id: str = "youtube", video_id: str | None = None,
              status: str = "ok", started_at: datetime | None = None,
              ) -> tuple[RunRecord, list[ComponentRecord]]:
    """A realistic finished run and its five components (ok, empty, an error with events).

    Components: asr (whisper on cuda:0, cache miss), cleaning (no model, cache hit),
    embedding (two models, listed in non-canonical order), faces (empty: no_faces),
    summarization (optional, error oom with two events).
    """
    run_id = _uuid()
    start = started_at or datetime(2026, 5, 9, 12, 0, 0, 123456, tzinfo=timezone.utc)
    config = {"asr": {"beam_size": 5, "language": None}, "chunking": {"max_tokens": 512},
              "sample_fps": 0.5}

    def component(name: str, offset_s: float, duration_ms: float, *,
                  models: list[ModelRef] = (), status: str = "ok", **extra) -> ComponentRecord:
        began = start + timedelta(seconds=offset_s)
        return ComponentRecord(
            component_run_id=_uuid(), run_id=run_id, component=name, attempt=1,
            required=extra.pop("required", True), status=status, started_at=began,
            finished_at=began + timedelta(milliseconds=duration_ms), duration_ms=duration_ms,
            producer_version="2.1.0", schema_version="3", models_used=list(models),
            model_signature=model_signature(models), **extra)

    asr = component("asr", 0.0, 5234.125, models=[WHISPER], device_used="cuda:0",
                    batch_size=16, cache_status="miss", cache_key="k" * 64,
                    cache_miss_reason="model_signature_changed", peak_rss_bytes=3_221_225_472,
                    peak_gpu_allocated_bytes=5_368_709_120,
                    peak_gpu_reserved_bytes=6_442_450_944, items=412,
                    metrics={"segments": 412.0, "rtf": 0.087},
                    warnings=["audio resampled from 48000 Hz"])
    cleaning = component("cleaning", 5.3, 41.5, device_used="cpu", cache_status="hit",
                         cache_key="c" * 64, peak_rss_bytes=1_073_741_824, items=412)
    embedding = component("embedding", 5.4, 812.0, models=[RERANKER, E5],
                          device_used="cuda:1", batch_size=64, peak_rss_bytes=2_147_483_648,
                          peak_gpu_allocated_bytes=1_500_000_000, items=96,
                          metrics={"chunks": 96})
    faces = component("faces", 6.3, 1500.75, models=[YOLO], status="empty",
                      empty_reason="no_faces", device_used="cuda:0", batch_size=8)
    summary = component("summarization", 7.9, 20012.0, required=False, status="error",
                        error_code="oom", error_type="torch.OutOfMemoryError",
                        error_message="CUDA out of memory. Tried to allocate 2.00 GiB",
                        device_used="cpu", batch_size=1, oom_count=1, retry_count=1,
                        peak_rss_bytes=9_000_000_000)
    oom_at = summary.started_at + timedelta(seconds=3)
    summary.events = [
        EventRecord(event_id=_uuid(), run_id=run_id, component_run_id=summary.component_run_id,
                    kind="oom", occurred_at=oom_at,
                    attributes={"device": "cuda:0", "requested_bytes": 2147483648}),
        # Same instant as the OOM: the order of the list must survive the round trip.
        EventRecord(event_id=_uuid(), run_id=run_id, component_run_id=summary.component_run_id,
                    kind="retry", occurred_at=oom_at,
                    attributes={"attempt": 2, "batch_size": 1, "device": "cpu"}),
    ]
    components = [asr, cleaning, embedding, faces, summary]
    finished = summary.finished_at
    run = RunRecord(
        run_id=run_id, platform_id=platform_id, video_id=video_id or f"vid-{run_id[:8]}",
        status=status, started_at=start, profile="baseline", pipeline_version="1.4.0",
        config_hash=config_hash(config), config=config, sampling_policy_version="sp-2",
        warnings=["optional component summarization failed: oom"], finished_at=finished,
        duration_ms=(finished - start).total_seconds() * 1000.0,
        environment={"python": "3.11.7", "platform": "Linux-6.1-x86_64", "host": "gpu-07",
                     "packages": {"torch": "2.5.1", "mlobs": "0.1.0"},
                     "cuda": "12.4", "gpus": ["NVIDIA A10G", "NVIDIA A10G"], "seed": 1234},
        resolved_models={"asr": ["openai/whisper-small:973afd24"],
                         "embedding": ["BAAI/bge-reranker-base:2cfc18c9",
                                       "intfloat/e5-base-v2:1c644c92"]},
    )
    return run, components


@pytest.fixture(scope="session")
def run_builder() -> Callable[..., tuple[RunRecord, list[ComponentRecord]]]:
    """:func:`build_run` for session- and module-scoped fixtures."""
    return build_run


@pytest.fixture
def make_run() -> Callable[..., tuple[RunRecord, list[ComponentRecord]]]:
    """:func:`build_run` as a fixture: ``run, components = make_run(status="ok")``."""
    return build_run


@pytest.fixture(scope="session")
def demo_warehouse_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SQLite warehouse file of two demo videos, run once per session."""
    pytest.importorskip("sklearn")
    from support.demo_warehouse import fill_with_demo

    return fill_with_demo(tmp_path_factory.mktemp("demo-warehouse"))
