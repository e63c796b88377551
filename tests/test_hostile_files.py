"""Attack A37: config, key and policy files were read whole with no check of their kind or size
(``/dev/zero`` -> MemoryError or the OOM killer), and commands that make a folder where none can be
made ended in tracebacks. Each now ends in one line naming the path and the reason."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from lookout.cli.main import main
from lookout.config_file import read_mapping
from lookout.errors import ConfigError, InputError
from lookout.files import MAX_TEXT_FILE_BYTES
from lookout.gallery.keys import load_public_key
from lookout.gallery.policy import Policy
from lookout.sync.report import write_report
from lookout.sync.sources.csv_json import read_manifest_file
from lookout.sync.sources.http_api import HttpApiSource


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def test_a_device_file_is_refused_before_it_is_read() -> None:
    with pytest.raises(ConfigError, match="/dev/zero: cannot read policy file: not a regular file"):
        Policy.load(Path("/dev/zero"))
    with pytest.raises(ConfigError, match="/dev/zero: cannot read public key: not a regular file"):
        load_public_key(Path("/dev/zero"))


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []
    reader = threading.Thread(target=lambda: _catch(outcome, lambda: read_mapping(fifo)), daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "reading a FIFO blocked"
    assert isinstance(outcome[0], ConfigError) and "not a regular file" in str(outcome[0])


def _catch(out: list[BaseException], call) -> None:
    try:
        call()
    except BaseException as err:
        out.append(err)


def test_an_oversized_config_is_refused_by_its_size(tmp_path: Path) -> None:
    big = tmp_path / "relay.yaml"
    big.write_bytes(b"# padding\n" * (MAX_TEXT_FILE_BYTES // 10 + 1))
    with pytest.raises(ConfigError, match=r"relay.yaml: cannot read config file: \d+ bytes, more than the"):
        read_mapping(big)


def test_binary_junk_is_not_utf8_in_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "policy.yaml"
    junk.write_bytes(b"version: x\n\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        read_mapping(junk)


@pytest.mark.parametrize("command", ["relay", "run", "console"])
def test_services_refuse_dev_zero_as_config_in_one_line(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--config", "/dev/zero", "--check-config"]) == 2
    assert "/dev/zero" in _one_line(capsys)


def test_a_folder_that_cannot_be_made_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "generate", "--out", "/proc/lookout-keys"]) == 1
    assert _one_line(capsys).startswith("lookout: /proc/lookout-keys")
    assert main(["sync", "unpin", "--into", "/proc"]) == 1
    assert _one_line(capsys).startswith("lookout: /proc/")


def test_people_and_api_config_files_are_bounded_too() -> None:
    """Attack A53: the A37 fix missed ``--people`` and ``--api-config``."""

    with pytest.raises(InputError, match="not a regular file"):
        read_manifest_file(Path("/dev/zero"))
    with pytest.raises(ConfigError, match="/dev/zero: cannot read API config: not a regular file"):
        HttpApiSource.from_config(Path("/dev/zero"), "http://127.0.0.1:1/{id}")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_report_that_cannot_be_written_names_its_file() -> None:

    with pytest.raises(InputError, match="/dev/full: cannot write the failure-to-enrol report: No space left"):
        write_report([], Path("/dev/full"), {"photos": 0})
