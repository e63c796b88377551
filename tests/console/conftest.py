"""Fixtures for the console tests: a real signed gallery built with the real models, a real relay store with
alerts waiting for review, a console config over both, accounts for each role.

The gallery holds two real people shipped in PyPI packages (Grace Hopper from matplotlib, Eileen Collins from
scikit-image), two photos of Grace; the alerts are written by the relay's own ``ingest`` as a relay would.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from lookout.console.accounts import Accounts
from lookout.console.app import Services
from lookout.console.config import ConsoleConfig, load_config
from lookout.events import MatchEvent
from lookout.gallery.keys import generate_keys
from lookout.relay.config import StoreSettings
from lookout.relay.records import AlertPlan, Intake
from lookout.relay.store import SqliteStore, open_store
from lookout.sync.build import build_gallery_from_folders
from lookout.sync.publish import publish

PASSWORD = "correct horse battery"
USERS = {"admin": "admin", "rita": "reviewer", "gus": "gallery_admin"}


@dataclass
class ConsoleEnv:
    root: Path
    config_path: Path
    relay_store: Path
    published: Path
    people: Path
    model_digest: str
    model_name: str
    grace: np.ndarray
    eileen: np.ndarray

    def config(self, **overrides: object) -> ConsoleConfig:
        sets = [f"{k}={v}" for k, v in overrides.items()]
        return load_config(self.config_path, sets)

    def alert(self, person_id: str, device_id: str = "cam-1", score: float = 0.95, seen_at: float | None = None) -> int:
        """A match event through the relay's own ingest, as a relay would store it; returns the alert id."""
        result = self.ingest(person_id, device_id, score, seen_at)
        assert result.alert_id is not None
        return result.alert_id

    def ingest(
        self,
        person_id: str,
        device_id: str = "cam-1",
        score: float = 0.95,
        seen_at: float | None = None,
        store_settings: StoreSettings | None = None,
    ):
        """The relay store's verdict on one match event (new alert, follow-up, suppressed...); the test's SQLite
        store unless ``store_settings`` names another (a PostgreSQL database)."""
        from datetime import datetime, timezone

        face = cv2.resize(self.grace if person_id == "grace_hopper" else self.eileen, (112, 112))
        ok, jpeg = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, 80])
        assert ok
        seen = datetime.fromtimestamp(seen_at or time.time(), timezone.utc)
        event = MatchEvent.create(
            device_id=device_id,
            seen_at=seen,
            person_id=person_id,
            score=score,
            margin=0.2,
            track_length=5,
            model={"name": self.model_name, "digest": self.model_digest},
            bundle_version="1",
            policy_version="default-1",
            box=[10, 10, 120, 120],
            device_name=f"Camera {device_id}",
            crop_jpeg=jpeg.tobytes(),
        )
        store = open_store(store_settings or StoreSettings(path=self.relay_store))
        try:
            (result,) = store.ingest([Intake(event, AlertPlan(True, ["duty-officer"]))], time.time(), 60)
        finally:
            store.close()
        return result


def _people(root: Path, grace: np.ndarray, eileen: np.ndarray) -> Path:
    people = root / "people"
    for pid, name, images in (
        ("grace_hopper", "Grace Hopper", {"1.jpg": grace, "2.jpg": cv2.flip(grace, 1)}),
        ("eileen_collins", "Eileen Collins", {"1.png": eileen}),
    ):
        folder = people / pid
        folder.mkdir(parents=True)
        for file, image in images.items():
            cv2.imwrite(str(folder / file), image)
        (folder / "person.json").write_text(
            f'{{"name": "{name}", "jurisdiction": "US-NY", "department": "Demo", "case_url": "https://cases.example/{pid}"}}'
        )
    return people


@pytest.fixture(scope="session")
def console_template(tmp_path_factory, pipeline, model_store, grace_hopper, astronaut) -> ConsoleEnv:
    """Built once per session (the gallery build runs the real models); each test gets a copy."""
    root = tmp_path_factory.mktemp("console-template")
    keys = root / "keys"
    generate_keys(keys)
    people = _people(root, grace_hopper, astronaut)
    build_gallery_from_folders(
        people,
        root / "bundle",
        keys / "bundle-signing.key.pem",
        pipeline,
        report_path=root / "report.json",
        progress=False,
    )
    publish(root / "bundle", root / "published")
    SqliteStore(root / "relay.sqlite").close()
    (root / "relay.yaml").write_text(
        yaml.safe_dump({"store": {"path": "relay.sqlite"}, "galleries": {"default": {"purpose": "accountability"}}})
    )
    config = {
        "listen": {"host": "127.0.0.1", "port": 0},
        "data_dir": "console-data",
        "relay_config": "relay.yaml",
        "galleries": {
            "default": {
                "published": "published",
                "source": str(
                    people
                ),  # absolute: the bundle names its photos by path, and each test's copy shares them
                "key": "keys/bundle-signing.key.pem",
                "public_key": "keys/bundle-signing.pub.pem",
                "report": "report.json",
            }
        },
        "models": {"model_dir": str(model_store.root), "device": "CPU"},
        "fleet": {"enabled": False},
        "location": "US-CA",  # where the console's users are: the default for where a searched photo was taken
    }
    (root / "console.yaml").write_text(yaml.safe_dump(config))
    accounts = Accounts(load_config(root / "console.yaml").database)  # one account per role, hashed once
    try:
        for name, role in USERS.items():
            accounts.add_user(name, role, PASSWORD)
    finally:
        accounts.close()
    return ConsoleEnv(
        root,
        root / "console.yaml",
        root / "relay.sqlite",
        root / "published",
        people,
        pipeline.embedder.digest,
        pipeline.embedder.name,
        grace_hopper,
        astronaut,
    )


@pytest.fixture
def console_env(console_template: ConsoleEnv, tmp_path: Path) -> ConsoleEnv:
    root = tmp_path / "env"
    shutil.copytree(console_template.root, root, symlinks=True, ignore=shutil.ignore_patterns("people"))
    env = ConsoleEnv(
        root,
        root / "console.yaml",
        root / "relay.sqlite",
        root / "published",
        root / "people",
        console_template.model_digest,
        console_template.model_name,
        console_template.grace,
        console_template.eileen,
    )
    return env


@pytest.fixture
def services(console_env: ConsoleEnv) -> Iterator[Services]:
    s = Services.open(console_env.config(), start_fleet=False)
    yield s
    s.close()


# -- real browser -------------------------------------------------------------------------------

CHROMIUM = os.environ.get("LOOKOUT_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("LOOKOUT_CHROMEDRIVER", "/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("LOOKOUT_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so the browser fixture knows whether the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="session")
def chromium(tmp_path_factory) -> Iterator:
    """Headless Debian chromium through chromedriver (selenium), started once a session (seconds each time)."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip(f"chromium/chromedriver not found at {CHROMIUM} / {CHROMEDRIVER} (./run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    folder = tmp_path_factory.mktemp("chromium")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        f"--user-data-dir={folder / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        service=Service(CHROMEDRIVER, log_output=str(folder / "chromedriver.log")), options=options
    )
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(request, chromium) -> Iterator:
    """The session's chromium, as a fresh one: no cookies or cache from an earlier test (each test's console
    is another server on 127.0.0.1, where cookies are shared across ports); a screenshot if the test fails."""
    _forget_everything(chromium)
    try:
        yield chromium
    finally:
        failed = getattr(request.node, "report_call", None)
        if failed is not None and failed.failed:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / f"{request.node.name}.png"
            chromium.save_screenshot(str(shot))
            (ARTIFACTS / f"{request.node.name}.html").write_text(chromium.page_source)
            print(f"screenshot of the failure: {shot}")
        _forget_everything(chromium)


def _forget_everything(driver) -> None:
    driver.get("about:blank")
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.execute_cdp_cmd("Network.clearBrowserCache", {})


@pytest.fixture
def console_server(console_env) -> Iterator:
    """The console served by uvicorn on a free loopback port, in this process."""
    from lookout.console.server import ConsoleServer

    server = ConsoleServer(console_env.config()).start()
    assert server.wait_started(), "the console did not start"
    yield server
    server.stop()
