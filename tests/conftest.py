"""Fixtures shared by the whole suite: the shared folder, the mini data set, a hermetic cache, Redis."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import NoReturn

import pytest
import torch

from pipeline.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared folder (EDGEPRUNE_SHARED or ../shared); the suite cannot run without it."""
    path = Path(os.environ.get("EDGEPRUNE_SHARED", REPO_ROOT.parent / "shared"))
    if not (path / "data").is_dir():
        pytest.fail(f"shared folder not found at {path}: set EDGEPRUNE_SHARED to it")
    return path


@pytest.fixture(scope="session")
def mini_data(shared_dir: Path) -> Path:
    """2,000 train / 1,000 test images of the lossless CIFAR-10 binary version (200 / 100 a class)."""
    return shared_dir / "data" / "cifar-10-binary-mini.tar.gz"


@pytest.fixture(scope="session")
def jpeg_mini_data(shared_dir: Path) -> Path:
    """2,000 train / 1,000 test JPEG CIFAR-10 images as an image-folder .tar.gz: a user's own data."""
    return shared_dir / "data" / "cifar10-jpeg-mini.tar.gz"


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One decode cache for the whole session, so tests do not touch the user's cache."""
    return tmp_path_factory.mktemp("edgeprune-cache")


@pytest.fixture(scope="session")
def settings(shared_dir: Path, mini_data: Path, cache_dir: Path) -> Settings:
    """Settings that point at the shared folder, the mini data set and the session cache."""
    return Settings.load(env={}, shared_dir=shared_dir, data=mini_data, cache_dir=cache_dir,
                         device="cpu")


@pytest.fixture(scope="session")
def checkpoint_resnet20(shared_dir: Path) -> Path:
    return next((shared_dir / "models").glob("resnet20-*.th"))


@pytest.fixture(scope="session")
def checkpoint_resnet56(shared_dir: Path) -> Path:
    return next((shared_dir / "models").glob("resnet56-*.th"))


@pytest.fixture(scope="session")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real ONNX model (one conv, one linear; about 260 KB), for the queue's tests."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(32, 2000)).eval()
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    torch.onnx.export(model, torch.zeros(1, 3, 32, 32), str(path), dynamo=False)
    return path


REDIS_URL = os.environ.get("EDGEPRUNE_TEST_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("EDGEPRUNE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

# CI sets CI=true: there a missing service fails the suite instead of skipping its tests.
REQUIRE_SERVICES = os.environ.get("EDGEPRUNE_REQUIRE_SERVICES", os.environ.get("CI", "")).lower() in (
    "1", "true", "yes")


def service_missing(message: str) -> NoReturn:
    """Skip the test with a one-line reason, or fail it when the suite must have its services."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} (required: CI or EDGEPRUNE_REQUIRE_SERVICES is set)")
    pytest.skip(f"{message}; start it (see README) or set EDGEPRUNE_REQUIRE_SERVICES=1 to fail instead")


@pytest.fixture
def redis_url() -> str:
    """The real Redis on 127.0.0.1:6379 (EDGEPRUNE_TEST_REDIS); skipped when it is not running."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        service_missing(f"Redis not reachable at {REDIS_URL}: {exc}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def postgres_url() -> str:
    """The real PostgreSQL on 127.0.0.1:5432 (EDGEPRUNE_TEST_POSTGRES); skipped when it is not running."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 2})
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.OperationalError as exc:
        service_missing(f"PostgreSQL not reachable at {POSTGRES_URL}: {str(exc.orig).splitlines()[0]}")
    finally:
        engine.dispose()
    return POSTGRES_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> str:
    """A key prefix unique to the test; every key under it is deleted afterwards."""
    import redis

    prefix = f"edgeprune-test-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
