"""The console in a real browser: headless chromium (Debian's) driven by selenium against a real uvicorn server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import pytest

from lookout.relay.store import SqliteStore

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "correct horse battery"  # the accounts made by conftest.console_env
WAIT_S = 30
LOADED = "return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"


def _by():
    from selenium.webdriver.common.by import By

    return By


def _wait(driver, condition, timeout: float = WAIT_S):
    """Until ``condition`` holds; an element the page replaced while it was read (stale) is read again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(condition)


DOCS = Path(__file__).resolve().parents[2] / "docs" / "console" if os.environ.get("LOOKOUT_DOCS_SCREENSHOTS") else None


def screenshot(driver, path: Path) -> None:
    """A page as it shows once its images have loaded, scaled to 1024 pixels wide (the docs' figures)."""
    _wait(driver, lambda d: d.execute_script(LOADED))
    driver.save_screenshot(str(path))
    image = cv2.imread(str(path))
    image = cv2.resize(image, (1024, int(image.shape[0] * 1024 / image.shape[1])), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])


def log_in(driver, server, username: str) -> None:
    By = _by()
    driver.get(server.url + "/login")
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login").click()
    _wait(driver, lambda d: "/login" not in d.current_url)


def test_a_reviewer_confirms_and_rejects_alerts_with_the_keyboard(browser, console_server, console_env):
    from selenium.webdriver.common.keys import Keys

    By = _by()
    first = console_env.alert("grace_hopper", "cam-1")
    second = console_env.alert("eileen_collins", "cam-2")
    log_in(browser, console_server, "rita")
    _wait(browser, lambda d: d.current_url.endswith(f"/review/{first}"))
    assert "Grace Hopper" in browser.find_element(By.ID, "person-name").text
    crop = browser.find_element(By.ID, "crop")
    assert browser.execute_script("return arguments[0].naturalWidth", crop) > 0  # the crop image really loaded
    enrolled = browser.find_elements(By.CLASS_NAME, "enrolled-photo")
    assert enrolled and all(browser.execute_script("return arguments[0].naturalWidth", e) > 0 for e in enrolled)
    browser.find_element(By.TAG_NAME, "body").send_keys("c")  # confirm
    _wait(browser, lambda d: d.current_url.split("?")[0].endswith(f"/review/{second}"))
    assert f"Alert {first} confirmed" in browser.find_element(By.ID, "notice").text
    browser.find_element(By.TAG_NAME, "body").send_keys("r")  # reject: focus the reason
    reason = browser.switch_to.active_element
    assert reason.get_attribute("id") == "reason"
    reason.send_keys("not this person: a visitor", Keys.ENTER)
    _wait(browser, lambda d: d.find_elements(By.ID, "queue-empty"))
    assert f"Alert {second} rejected" in browser.find_element(By.ID, "notice").text
    store = SqliteStore(console_env.relay_store)
    try:
        assert store.get_alert(first).status == "confirmed"
        assert store.get_alert(second).status == "rejected"
        assert store.get_alert(second).review_reason == "not this person: a visitor"
    finally:
        store.close()


def test_draw_a_box_around_a_face_and_search_it(browser, console_server, console_env, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    By = _by()
    photo = tmp_path / "probe.jpg"
    cv2.imwrite(str(photo), cv2.resize(console_env.grace, (400, 500)))
    log_in(browser, console_server, "rita")
    browser.get(console_server.url + "/search")
    browser.find_element(By.ID, "photo").send_keys(str(photo))
    browser.find_element(By.ID, "search").click()
    _wait(browser, lambda d: d.find_elements(By.ID, "results"))
    results = browser.find_element(By.ID, "results").text
    assert "Grace Hopper" in results and "above threshold" in results
    assert browser.find_elements(By.CSS_SELECTOR, "rect.face.hit")  # the detected face is outlined
    image = browser.find_element(By.ID, "upload-image")
    browser.execute_script("arguments[0].scrollIntoView()", image)  # the whole photo in the viewport
    size = image.size
    assert not browser.find_element(By.ID, "search-box").is_enabled()
    # drag from 15% to 85% of the photo's width and 8% to 72% of its height: around the face
    ActionChains(browser).move_to_element_with_offset(
        image, int(-size["width"] * 0.35), int(-size["height"] * 0.42)
    ).click_and_hold().move_by_offset(int(size["width"] * 0.7), int(size["height"] * 0.64)).release().perform()
    _wait(browser, lambda d: d.find_element(By.ID, "search-box").is_enabled())
    assert "photo pixels" in browser.find_element(By.ID, "box-text").text
    browser.find_element(By.ID, "search-box").click()
    _wait(browser, lambda d: "drawn box" in d.find_element(By.ID, "results").text)
    assert "Grace Hopper" in browser.find_element(By.ID, "results").text


def test_withdraw_a_photo_and_see_the_new_bundle_version(browser, console_server, console_env):
    By = _by()
    log_in(browser, console_server, "gus")
    browser.get(console_server.url + "/galleries/default")
    assert "v1" in browser.find_element(By.ID, "current-version").text
    button = browser.find_element(By.CSS_SELECTOR, 'button[data-photo="grace_hopper/2.jpg"]')
    form = button.find_element(By.XPATH, "./..")
    form.find_element(By.NAME, "reason").send_keys("consent withdrawn")
    button.click()
    _wait(browser, lambda d: d.find_elements(By.ID, "notice"), timeout=120)
    assert "version 2 signed and published" in browser.find_element(By.ID, "notice").text
    assert "v2" in browser.find_element(By.ID, "current-version").text
    assert not browser.find_elements(By.CSS_SELECTOR, 'button[data-photo="grace_hopper/2.jpg"]')


FAKE_DEVICE = textwrap.dedent(
    """
    import sys, time
    from lookout.events import DeviceStatus, Heartbeat, utc_now
    from lookout.mqtt import MqttSettings, connect, make_client
    from lookout.topics import Topics

    port, device = int(sys.argv[1]), sys.argv[2]
    topics = Topics()
    status = lambda state: DeviceStatus(device_id=device, state=state, at=utc_now(), bundle_version="7").model_dump_json(exclude_none=True)
    client = make_client(MqttSettings(port=port, keepalive=5), client_id=device, will=(topics.status(device), status("offline").encode(), 1, True))
    connect(client, MqttSettings(port=port, keepalive=5), blocking=True)
    client.loop_start()
    client.publish(topics.status(device), status("online"), qos=1, retain=True).wait_for_publish(5)
    print("online", flush=True)
    while True:
        beat = Heartbeat(device_id=device, at=utc_now(), fps=12.5, bundle_version="7", queue_depth=0)
        client.publish(topics.heartbeat(device), beat.model_dump_json(exclude_none=True), qos=0)
        time.sleep(1)
    """
)


@pytest.mark.broker
def test_the_fleet_page_shows_a_device_go_offline_when_it_stops(browser, console_env, tmp_path):
    from lookout.console.server import ConsoleServer
    from lookout.mosquitto import LocalMosquitto, find_mosquitto

    if find_mosquitto() is None:
        pytest.skip("mosquitto not installed")
    By = _by()
    with LocalMosquitto(workdir=tmp_path / "broker") as broker:
        broker.start()
        device = subprocess.Popen(
            [sys.executable, "-c", FAKE_DEVICE, str(broker.port), "door-cam"], stdout=subprocess.PIPE, text=True
        )
        try:
            assert device.stdout.readline().strip() == "online"
            config = console_env.config(**{"fleet.enabled": "true", "mqtt.port": str(broker.port)})
            server = ConsoleServer(config).start()
            try:
                assert server.wait_started()
                log_in(browser, server, "rita")
                browser.get(server.url + "/fleet")
                row = '//tr[@data-device="door-cam"]'
                online = row + '[@data-state="online"]'
                # online from the retained status at once; fps once a heartbeat came (the page reloads every 5 s)
                _wait(browser, lambda d: "12.5" in "".join(e.text for e in d.find_elements(By.XPATH, online)))
                assert "7" in browser.find_element(By.XPATH, row).text  # the bundle version it reports
                if DOCS:
                    screenshot(browser, DOCS / "fleet.png")
                os.kill(device.pid, signal.SIGKILL)  # the device dies: the broker publishes its last will
                device.wait(10)
                _wait(browser, lambda d: d.find_elements(By.XPATH, row + '[@data-state="offline"]'))
            finally:
                server.stop()
        finally:
            if device.poll() is None:
                device.kill()
                device.wait(10)


def test_docs_screenshots(browser, console_server, console_env, tmp_path):
    """One screenshot per page; written into docs/console/ when LOOKOUT_DOCS_SCREENSHOTS=1 (else a temp folder)."""
    By = _by()
    out = DOCS or tmp_path
    out.mkdir(parents=True, exist_ok=True)
    first = console_env.alert("grace_hopper", "cam-1", 0.95)
    console_env.alert("grace_hopper", "cam-2", 0.96)
    console_env.alert("eileen_collins", "cam-2", 0.93)
    browser.set_window_size(1280, 1000)
    browser.get(console_server.url + "/login")
    screenshot(browser, out / "login.png")
    log_in(browser, console_server, "admin")

    def shoot(name: str) -> None:
        screenshot(browser, out / f"{name}.png")

    shots = {"review": f"/review/{first}", "galleries": "/galleries/default", "accounts": "/accounts"}
    for name, path in shots.items():
        browser.get(console_server.url + path)
        shoot(name)
    photo = tmp_path / "probe.jpg"
    cv2.imwrite(str(photo), cv2.resize(console_env.grace, (400, 500)))
    browser.get(console_server.url + "/search")
    browser.find_element(By.ID, "photo").send_keys(str(photo))
    browser.find_element(By.ID, "search").click()
    _wait(browser, lambda d: d.find_elements(By.ID, "results"))
    shoot("search")
    browser.get(console_server.url + f"/review/{first}")  # a morning's work, for the audit page
    browser.find_element(By.ID, "note").send_keys("same person: scar above the left eye")
    browser.find_element(By.ID, "confirm").click()
    _wait(browser, lambda d: d.find_elements(By.ID, "reason"))
    browser.find_element(By.ID, "reason").send_keys("not this person: a visitor with a similar face")
    browser.find_element(By.ID, "reject").click()
    _wait(browser, lambda d: d.find_elements(By.ID, "queue-empty"))
    browser.get(console_server.url + "/audit")
    shoot("audit")
    for name in ("login", "review", "galleries", "accounts", "search", "audit"):
        assert (out / f"{name}.png").stat().st_size > 10_000
