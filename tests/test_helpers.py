"""The test helpers test themselves: a helper that lies makes every test using it worthless."""

from __future__ import annotations

import sqlite3
import urllib.error
import urllib.request

import pytest

from tests.helpers import Subscriber, wait_for
from tests.relay_helpers import publish, write_gallery


def test_webhook_server_scripts_statuses(webhook):
    webhook.answer(500, 200)
    codes = []
    for _ in range(3):
        try:
            with urllib.request.urlopen(urllib.request.Request(webhook.url, data=b"{}", method="POST")) as r:
                codes.append(r.status)
        except urllib.error.HTTPError as err:
            codes.append(err.code)
    assert codes == [500, 200, 200]


def test_write_gallery_replaces_atomically(tmp_path):
    path = write_gallery(tmp_path / "gallery.sqlite", [{"person_id": "a", "name": "A"}])
    write_gallery(path, [{"person_id": "b", "name": "B"}])
    rows = sqlite3.connect(path).execute("SELECT person_id FROM persons").fetchall()
    assert rows == [("b",)]


@pytest.mark.broker
def test_subscriber_misses_nothing_published_after_it_returns_and_barrier_flushes(mosquitto):
    sub = Subscriber(mosquitto.port, "dt/lookout/#")
    try:
        publish(mosquitto.port, "dt/lookout/cam-1/match", [b"1", b"2", b"3"])  # right after: no wait, no retry
        sub.barrier()
        assert sub.kind("match") == [b"1", b"2", b"3"]
        assert len(sub.wait_for(lambda msgs: msgs if len(msgs) >= 4 else None)) == 4  # three and the marker
    finally:
        sub.close()


def test_wait_for_returns_the_value_and_fails_in_bounded_time():
    assert wait_for(lambda: 42, 1) == 42
    with pytest.raises(pytest.fail.Exception, match=r"timed out after 0\.1 s waiting for nothing"):
        wait_for(lambda: None, 0.1, "nothing")
