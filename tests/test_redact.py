"""Secrets in URLs never reach the output (attack finding A15).

Found: ``lookout run --check-config`` printed an RTSP camera's password in its first line; ``lookout relay
--check-config`` ("no secrets") printed a Slack-style webhook URL whose path is the credential, and every failed
delivery logged it ("cannot reach http://.../HookS3cretToken"). One helper (``lookout.redact``) now masks
userinfo and query values of every URL shown, and the path of webhook URLs; a webhook URL can also come from the
environment (``url_env``).
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import ValidationError

from lookout.device.check import check_config
from lookout.device.config import load_config as load_device_config
from lookout.errors import ConfigError
from lookout.http_client import FetchError, HttpClient
from lookout.redact import redact_dsn, redact_url
from lookout.relay.config import WebhookNotifier as WebhookSettings
from lookout.relay.config import load_config
from lookout.relay.message import Outgoing
from lookout.relay.notifiers import build
from lookout.relay.notifiers.base import DeliveryError
from lookout.relay.service import RelayService
from tests.helpers import wait_for
from tests.relay_helpers import make_event, publish_event, write_config

CAM_PASSWORD = "S3cretCamPass"
HOOK_TOKEN = "HookS3cretToken"
OUTGOING = Outgoing(1, "ops", None, "text", {"type": "lookout.alert"})


@pytest.mark.parametrize(
    ("url", "secret_path", "shown"),
    [
        (f"rtsp://viewer:{CAM_PASSWORD}@127.0.0.1:1/stream", False, "rtsp://viewer:***@127.0.0.1:1/stream"),
        (f"https://{HOOK_TOKEN}@hooks.example/x", False, "https://***@hooks.example/x"),
        (f"https://h.example/services/T0/B0/{HOOK_TOKEN}", True, "https://h.example/***"),
        (
            f"https://b.example/g/manifest.json?X-Amz-Signature={HOOK_TOKEN}&v=1#f",
            False,
            "https://b.example/g/manifest.json?X-Amz-Signature=***&v=***",
        ),
        (f"rtsp://u:{CAM_PASSWORD}@[::1]:554/a", False, "rtsp://u:***@[::1]:554/a"),
        ("/dev/video0", False, "/dev/video0"),
        ("0", False, "0"),
    ],
)
def test_redact_url(url, secret_path, shown):
    assert redact_url(url, secret_path=secret_path) == shown


@pytest.mark.parametrize(
    "dsn",
    [
        f"host=db password={CAM_PASSWORD} user=x",
        f"password='{CAM_PASSWORD} x' host=db",
        f"postgresql://u:{CAM_PASSWORD}@db/lookout?password={CAM_PASSWORD}",
    ],
)
def test_redact_dsn(dsn):
    assert CAM_PASSWORD not in redact_dsn(dsn) and "***" in redact_dsn(dsn)


def test_device_check_config_does_not_print_the_camera_password(tmp_path):
    (tmp_path / "device.yaml").write_text(
        f"device_id: cam-attack-3\nsource: {{url: 'rtsp://viewer:{CAM_PASSWORD}@127.0.0.1:1/stream'}}\n"
        "location: {jurisdiction: US-NY}\nrecognition: {enabled: false}\n"
    )
    lines: list[str] = []
    check_config(load_device_config(tmp_path / "device.yaml", environ={}), out=lines.append)
    assert lines and lines[0].startswith("ok    config:") and "viewer:***@127.0.0.1:1/stream" in lines[0]
    assert not [line for line in lines if CAM_PASSWORD in line]


def _relay_check_config(path, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lookout", "relay", "--config", str(path), "--check-config"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_relay_check_config_redacts_the_webhook_url(tmp_path, monkeypatch):
    path = write_config(
        tmp_path / "relay.yaml",
        1,
        notifiers={
            "hook": {"type": "webhook", "url": f"https://hooks.example/services/T000/B000/{HOOK_TOKEN}"},
            "env": {"type": "webhook", "url_env": "LOOKOUT_TEST_HOOK_URL"},
        },
        recipients=[{"name": "ops", "notifier": "hook"}, {"name": "ops2", "notifier": "env"}],
        store={"type": "postgresql", "dsn": "host=db.internal dbname=lookout user=relay"},
        console_url=f"https://admin:{CAM_PASSWORD}@console.example",
    )
    monkeypatch.setenv("LOOKOUT_TEST_HOOK_URL", f"https://hooks.example/services/T1/B1/{HOOK_TOKEN}-env")
    done = _relay_check_config(path)
    assert done.returncode == 0, done.stderr
    assert HOOK_TOKEN not in done.stdout + done.stderr and CAM_PASSWORD not in done.stdout + done.stderr
    assert '"url": "https://hooks.example/***"' in done.stdout and '"url_env": "LOOKOUT_TEST_HOOK_URL"' in done.stdout


def test_webhook_url_env_is_required_and_exclusive(monkeypatch):
    monkeypatch.delenv("LOOKOUT_TEST_HOOK_URL", raising=False)
    with pytest.raises(ConfigError, match="LOOKOUT_TEST_HOOK_URL is not set"):
        build("h", WebhookSettings(type="webhook", url_env="LOOKOUT_TEST_HOOK_URL"))
    monkeypatch.setenv("LOOKOUT_TEST_HOOK_URL", "ftp://x.example/")
    with pytest.raises(ConfigError, match="does not hold an http"):
        build("h", WebhookSettings(type="webhook", url_env="LOOKOUT_TEST_HOOK_URL"))
    with pytest.raises(ValidationError, match="exactly one of url and url_env"):
        WebhookSettings(type="webhook", url_env="LOOKOUT_TEST_HOOK_URL", url="https://x.example/")


def test_a_failed_delivery_never_names_the_webhook_token(webhook):
    """HTTP error and unreachable host: the error (logged, stored as last_error) names the URL redacted."""
    webhook.answer(500)
    hook = build("h", WebhookSettings(type="webhook", url=f"{webhook.url}/services/T0/B0/{HOOK_TOKEN}"))
    with pytest.raises(DeliveryError) as http_error:
        hook.send(OUTGOING)
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    gone = build("h", WebhookSettings(type="webhook", url=f"http://127.0.0.1:{closed}/services/T0/B0/{HOOK_TOKEN}"))
    with pytest.raises(DeliveryError) as unreachable:
        gone.send(OUTGOING)
    for err in (http_error.value, unreachable.value):
        assert HOOK_TOKEN not in str(err) and "/***" in str(err)
    assert "HTTP 500" in str(http_error.value) and "cannot reach" in str(unreachable.value)


@pytest.mark.broker
def test_the_relay_log_never_holds_the_webhook_token(tmp_path, mosquitto, webhook, caplog):
    """The attack as run: a relay whose webhook answers 500; its retries are logged without the token."""
    webhook.answer(500)
    config = load_config(
        write_config(
            tmp_path / "relay.yaml",
            mosquitto.port,
            notifiers={"hook": {"type": "webhook", "url": f"{webhook.url}/services/T000/B000/{HOOK_TOKEN}"}},
            recipients=[{"name": "ops", "notifier": "hook"}],
        )
    )
    service = RelayService(config).start()
    try:
        assert service.connected.wait(15)
        with caplog.at_level(logging.DEBUG):
            publish_event(mosquitto.port, make_event(person_id="p-1"))
            wait_for(lambda: len(webhook.requests) >= 2, timeout=15, what="two failed attempts")
            deliveries = service.delivery_store.deliveries_of(1)
    finally:
        service.stop()
    assert webhook.requests[0]["path"].endswith(HOOK_TOKEN)  # it was really sent there
    text = "\n".join(f"{r.getMessage()} {getattr(r, 'lookout_fields', {})}" for r in caplog.records)
    assert "delivery.retry" in text and HOOK_TOKEN not in text
    assert HOOK_TOKEN not in (deliveries[0].last_error or "")


class _Failing(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_http_fetch_errors_and_retries_never_name_the_credentials(caplog):
    """The gallery's HTTP client (pull, HTTP sources): a presigned or userinfo URL is shown redacted in the error
    (which callers log) and in each ``http.retry`` line."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"http://mirror:{CAM_PASSWORD}@127.0.0.1:{server.server_address[1]}/g/manifest.json?sig={HOOK_TOKEN}"
    try:
        with caplog.at_level(logging.INFO), pytest.raises(FetchError) as caught:
            HttpClient(retries=1, backoff_s=0.01, timeout_s=5).get(url)
    finally:
        server.shutdown()
        server.server_close()
    text = str(caught.value) + "\n".join(f"{r.getMessage()} {getattr(r, 'lookout_fields', {})}" for r in caplog.records)
    assert "HTTP 503" in str(caught.value) and "http.retry" in text
    assert CAM_PASSWORD not in text and HOOK_TOKEN not in text and "mirror:***@" in text
