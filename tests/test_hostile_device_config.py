"""Device settings that used to pass silently or log the wrong thing (attack finding A17, device part).

- ``mqtt.tls.ca_file: /etc/passwd`` passed ``--check-config`` ("config OK") and failed only at run: now FAIL.
- ``mqtt.tls.insecure: true`` (no host name check) was accepted without a word: now one loud warning when the
  client is made, and a WARN line in ``--check-config``.
- ``mqtt.connecting`` logged ``client_id=(random)`` while the device connects as ``lookout-<device_id>``.
Real TLS files (a throwaway CA), the real paho client.
"""

from __future__ import annotations

import logging

from lookout.device.check import check_config
from lookout.device.config import DeviceConfig
from lookout.device.publisher import PahoPublisher
from lookout.mosquitto import free_port
from lookout.mqtt import MqttSettings, TlsSettings, make_client


def _cfg(tmp_path, tls: dict) -> DeviceConfig:
    return DeviceConfig.model_validate(
        {
            "device_id": "cam-1",
            "source": {"url": str(tmp_path / "frames")},
            "recognition": {"enabled": False},
            "mqtt": {"host": "127.0.0.1", "tls": tls},
            "outbox": {"path": str(tmp_path / "outbox.sqlite")},
        }
    )


def _lines(cfg: DeviceConfig) -> list[str]:
    lines: list[str] = []
    check_config(cfg, out=lines.append)
    return lines


def test_check_config_reads_the_tls_files_and_refuses_a_ca_file_that_holds_no_certificate(tmp_path, pki):
    (tmp_path / "frames").mkdir()
    bad = _lines(_cfg(tmp_path, {"ca_file": "/etc/passwd"}))
    assert [line for line in bad if line.startswith("FAIL  mqtt.tls")], bad
    assert bad[-1] != "config OK"
    good = _lines(_cfg(tmp_path, {"ca_file": str(pki["ca"]), "cert_file": str(pki["client"]),
                                  "key_file": str(pki["client_key"])}))  # fmt: skip
    assert [line for line in good if line.startswith("ok    mqtt.tls")], good
    assert not [line for line in good if "insecure" in line]


def test_tls_insecure_is_said_loudly_once(tmp_path, pki, caplog):
    (tmp_path / "frames").mkdir()
    lines = _lines(_cfg(tmp_path, {"ca_file": str(pki["ca"]), "insecure": True}))
    assert [line for line in lines if line.startswith("WARN  mqtt.tls.insecure")], lines
    settings = MqttSettings(host="127.0.0.1", tls=TlsSettings(ca_file=pki["ca"], insecure=True))
    make_client(settings, client_id="cam-1")
    warnings = [r for r in caplog.records if r.getMessage() == "mqtt.tls_insecure"]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"
    assert "NOT checked" in warnings[0].lookout_fields["effect"]


def test_connecting_logs_the_client_id_the_device_connects_with(caplog):
    caplog.set_level(logging.INFO)
    publisher = PahoPublisher(MqttSettings(host="127.0.0.1", port=free_port()), client_id="lookout-cam-1")
    publisher.start()
    try:
        (line,) = [r for r in caplog.records if r.getMessage() == "mqtt.connecting"]
        assert line.lookout_fields["client_id"] == "lookout-cam-1"
    finally:
        publisher.stop()
