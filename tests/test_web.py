"""The operator's web page: a real headless Chromium (Debian's, through Selenium and chromedriver) on the page of
a replay-simulator run (labelling its kept frames on the Teach tab too), the JSON API's bad inputs, the token and
bind rules, and both commands that serve it.

Screenshots go to artifacts/ (the README's docs/web-live.png is one of them, committed once)."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from edge.app import Sorter
from edge.classifier import Classifier
from edge.config import DEFAULT_CONFIG, Settings, load_settings
from edge.errors import ConfigError, PortError
from edge.images import read_rgb
from edge.loop import FrameObserver
from edge.preprocess import Roi, prepare
from edge.records import NOT_ITEM, ItemRecord, Records
from edge.retrain import FrameKeeper
from edge.sources import Frame
from edge.web import LiveState, WebServer
from edge.web.queries import RecordsView
from edge.web.state import annotated_jpeg
from tests.conftest import LABELS, PROJECT, TINY_MODEL, make_settings
from tests.test_loop import write_config
from tools.faults import png_bomb

ARTIFACTS = PROJECT / "artifacts"
ITEMS = 12
TEACH_ITEMS = 8


def request(url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
            ) -> tuple[int, http.client.HTTPMessage, bytes]:
    """(status, headers, body) of one request; redirects are not followed."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body, headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def post_refused_early(url: str, body: bytes | object, headers: dict[str, str], **options: object
                       ) -> tuple[int, bytes]:
    """(status, body) of a POST that the server may answer before it has read the whole body."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
    try:
        try:
            conn.request("POST", parts.path, body, headers, **options)  # type: ignore[arg-type]
        except OSError:
            pass  # the server answered and closed before the end of the body
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def get_json(url: str) -> object:
    status, _, body = request(url)
    assert status == 200, body
    return json.loads(body)


def multipart(data: bytes, field: str = "image", filename: str = "photo.jpg") -> tuple[bytes, dict[str, str]]:
    boundary = "smartbin-test-boundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def db_rows(settings: Settings, sql: str) -> list[tuple]:
    with sqlite3.connect(settings.records.database) as db:
        return db.execute(sql).fetchall()


def web_settings(tmp_path: Path, **web: object) -> Settings:
    """Replay of a folder (``photos`` in tmp_path) at 2 frames a second, one frame per item, with the tiny model
    and a region of interest inside the frame; the page on any free local port."""
    model = tmp_path / "tiny12.tflite"
    for suffix in (".tflite", ".json"):
        shutil.copy(TINY_MODEL.with_suffix(suffix), model.with_suffix(suffix))
    return make_settings(
        tmp_path, model={"path": model}, sorting={"votes": 1},
        camera={"source": str(tmp_path / "photos"), "fps": 2.0, "roi": (0.1, 0.1, 0.8, 0.8)},
        conveyor={"trigger": "frames", "item_pass_s": 0.1, "belt_speed_m_s": 1.0}, web={"port": 0, **web})


@pytest.fixture(scope="module")
def replay(tmp_path_factory, garbage12, browser):
    """The page served by a sorter replaying real photos: the browser opens it before the first item, then the
    sorter sorts ITEMS items (the page must follow by itself). Yields (settings, live state, server)."""
    tmp_path = tmp_path_factory.mktemp("web")
    link_photos(tmp_path / "photos", garbage12, ITEMS)
    settings = web_settings(tmp_path)
    live = LiveState(settings.camera.region, settings.camera.source)
    with WebServer(settings, live) as server, Sorter(settings, observers=[live]) as sorter:
        browser.get(server.url + "#live")
        wait_for(browser, lambda d: d.find_element("id", "live-empty").is_displayed())
        sorter.loop.run(max_items=ITEMS)
        yield settings, live, server


def link_photos(folder: Path, garbage12: Path, classes: int) -> None:
    """One real photo of each of the first ``classes`` classes, in ``folder/<class>/``."""
    for label in sorted(p.name for p in garbage12.iterdir())[:classes]:
        (folder / label).mkdir(parents=True)
        photo = sorted((garbage12 / label).iterdir())[0]
        (folder / label / photo.name).symlink_to(photo)


def wait_for(driver, condition, timeout: float = 15.0):
    from selenium.webdriver.support.wait import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def screenshot(driver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / name))


def show(driver, tab: str) -> None:
    driver.find_element("id", f"tab-{tab}").click()
    wait_for(driver, lambda d: d.find_element("id", tab).is_displayed())


def test_live_view_follows_the_sorter_to_its_last_item_and_top5(replay, browser):
    settings, live, _server = replay
    item_id, label, top_k, bin_name, outcome = db_rows(
        settings, "SELECT id, label, top_k, bin, outcome FROM items ORDER BY id DESC LIMIT 1")[0]
    assert item_id == ITEMS and live.latest is not None and live.latest.item_id == item_id
    wait_for(browser, lambda d: d.find_element("id", "live-facts").text.startswith(f"item\n{item_id} "))
    assert browser.find_element("id", "live-label").text.startswith(label)
    bars = browser.find_elements("css selector", "#live-bars .bar")
    assert [(b.get_attribute("data-label"), float(b.get_attribute("data-p"))) for b in bars] == \
        [tuple(pair) for pair in json.loads(top_k)]
    widths = [b.find_element("class name", "fill").size["width"] for b in bars]
    assert widths == sorted(widths, reverse=True) and widths[0] > 0
    assert browser.find_element("id", "live-tags").text.split() == ["bin", bin_name, outcome]
    frame = browser.find_element("id", "live-frame")
    wait_for(browser, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", frame))
    assert frame.get_attribute("src").endswith(f"/api/live/frame.jpg?id={item_id}")

    screenshot(browser, "web-live.png")


def test_today_counts_match_the_database_and_items_link_their_kept_frames(replay, browser):
    settings, _, _server = replay
    show(browser, "today")
    wait_for(browser, lambda d: d.find_elements("css selector", "#today-items tbody tr"))
    cards = {c.get_attribute("data-outcome"): int(c.find_element("tag name", "b").text)
             for c in browser.find_elements("css selector", "#today-outcomes .card")}
    outcomes = dict(db_rows(settings, "SELECT outcome, COUNT(*) FROM items GROUP BY outcome"))
    assert cards == {"total": ITEMS, **{o: outcomes.get(o, 0) for o in
                                        ("sorted", "rejected", "late", "too_close", "error")}}
    per_bin = {r.get_attribute("data-bin"): int(r.find_elements("tag name", "td")[1].text)
               for r in browser.find_elements("css selector", "#today-bins tbody tr")}
    assert per_bin == dict.fromkeys(settings.bins, 0) | dict(db_rows(settings, "SELECT bin, COUNT(*) FROM items "
                                                                       "GROUP BY bin"))
    bin_of = settings.bin_of()  # the replay's photos are labelled: each bin's purity among them
    known = db_rows(settings, "SELECT bin, truth FROM items WHERE truth IS NOT NULL")
    assert known, "a replay of labelled photos knows its truths"
    purity = {b: f"{100 * sum(bin_of[t] == b for x, t in known if x == b) / n:.1f} % of {n}"
              for b in {x for x, _ in known} if (n := sum(x == b for x, _ in known))}
    shown = {r.get_attribute("data-bin"): r.find_elements("tag name", "td")[-1].text
             for r in browser.find_elements("css selector", "#today-bins tbody tr")}
    assert shown == dict.fromkeys(settings.bins, "–") | purity
    rows = [[td.text for td in tr.find_elements("tag name", "td")]
            for tr in browser.find_elements("css selector", "#today-items tbody tr")]
    assert [int(r[1]) for r in rows] == list(range(ITEMS, 0, -1))
    kept = {int(p.stem) for p in settings.retrain_folder.glob("*.jpg")}
    assert kept - {ITEMS}, "the tiny model is unsure of most items: their frames are kept"
    links = browser.find_elements("css selector", "#today-items a")
    linked = {int(re.search(r"/api/items/(\d+)/frame.jpg", a.get_attribute("href"))[1]) for a in links
              if "/api/items/" in a.get_attribute("href")}
    assert linked == kept - {ITEMS}  # the latest item links its live frame instead
    status, headers, body = request(links[-1].get_attribute("href"))
    assert status == 200 and headers["content-type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    screenshot(browser, "web-today.png")


def test_health_shows_fps_latencies_model_and_uptime(replay, browser):
    show(browser, "health")
    wait_for(browser, lambda d: d.find_elements("css selector", "#health-latency tbody tr"))
    text = browser.find_element("id", "health-facts").text
    assert "sorter (this process sorts)" in text and "tiny12.tflite (12 classes, 32x32 px" in text
    assert re.search(r"camera\n.+/photos: \d+\.\d fps, \d+ frames", text) and "last error\nnone" in text
    stages = [tr.find_element("tag name", "td").text for tr in
              browser.find_elements("css selector", "#health-latency tbody tr")]
    assert {"preprocess", "classify", "decide", "plan", "total", "since_line"} <= set(stages)
    screenshot(browser, "web-health.png")


def test_a_real_photo_gets_the_loops_label_without_a_record(replay, browser, garbage12):
    settings, _, _ = replay
    photo = sorted((garbage12 / "cardboard").iterdir())[0]
    with Classifier(settings.model.path) as classifier:
        expected = classifier.classify(prepare(read_rgb(photo), classifier.input_size)).top(5)
    items = db_rows(settings, "SELECT COUNT(*) FROM items")
    show(browser, "classify")
    browser.find_element("id", "classify-file").send_keys(str(photo))
    browser.find_element("css selector", "#classify-form button").click()
    wait_for(browser, lambda d: d.find_element("id", "classify-result").is_displayed())
    assert browser.find_element("id", "classify-label").text.startswith(f"{expected[0][0]} ")
    bars = browser.find_elements("css selector", "#classify-bars .bar")
    assert [(b.get_attribute("data-label"), float(b.get_attribute("data-p"))) for b in bars] == \
        [(label, pytest.approx(p)) for label, p in expected]
    screenshot(browser, "web-classify.png")
    assert db_rows(settings, "SELECT COUNT(*) FROM items") == items  # nothing recorded

    browser.find_element("id", "classify-file").send_keys(str(PROJECT / "pyproject.toml"))
    browser.find_element("css selector", "#classify-form button").click()
    wait_for(browser, lambda d: d.find_element("id", "classify-error").is_displayed())
    assert browser.find_element("id", "classify-error").text.startswith("cannot decode image: the upload")


@pytest.fixture(scope="module")
def teach_replay(tmp_path_factory, garbage12, browser):
    """A sorter that replays TEACH_ITEMS real photos and keeps every item's frame (retrain.keep_below 1), beside
    its page. Yields (settings, the page's URL)."""
    tmp_path = tmp_path_factory.mktemp("teach")
    link_photos(tmp_path / "photos", garbage12, TEACH_ITEMS)
    settings = web_settings(tmp_path)
    settings = settings.model_copy(update={"retrain": settings.retrain.model_copy(update={"keep_below": 1.0})})
    live = LiveState(settings.camera.region, settings.camera.source)
    with WebServer(settings, live) as server, Sorter(settings, observers=[live]) as sorter:
        sorter.loop.run(max_items=TEACH_ITEMS)
        yield settings, server.url


def test_teach_labels_kept_frames_with_keys_and_undo_and_the_database_holds_exactly_those(teach_replay, browser):
    from selenium.webdriver.common.action_chains import ActionChains

    settings, url = teach_replay
    facts = {int(p.stem): json.loads(p.read_text()) for p in settings.retrain_folder.glob("*.json")}
    assert sorted(facts) == list(range(1, TEACH_ITEMS + 1))  # the sorter kept every item's frame
    browser.get(url + "#teach")

    def shown() -> int:
        return int(browser.find_element("id", "teach").get_attribute("data-item") or 0)

    def press(key: str) -> int:
        """Press a key on the page; the frame shown once the page has moved on."""
        before = shown()
        ActionChains(browser).send_keys(key).perform()
        wait_for(browser, lambda d: shown() != before)
        return shown()

    wait_for(browser, lambda d: shown())
    buttons = [(b.get_attribute("data-label"), b.text) for b in browser.find_elements("css selector",
                                                                                        "#teach-classes button")]
    assert buttons == [(label, f"{label} {key}") for label, key in zip(LABELS, "1234567890ab", strict=True)]
    first = shown()
    assert first == min(facts, key=lambda i: (facts[i]["confidence"], i))  # the least certain first
    assert browser.find_element("id", "teach-guess").text.startswith(f"{facts[first]['label']}? ")
    bars = browser.find_elements("css selector", "#teach-bars .bar")
    assert [b.get_attribute("data-label") for b in bars] == [label for label, _ in facts[first]["top_k"][:3]]
    frame = browser.find_element("id", "teach-frame")
    wait_for(browser, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", frame))
    assert frame.get_attribute("src").endswith(f"/api/items/{first}/frame.jpg")

    second = press("1")  # first: the first class
    third = press("n")  # second: not an item
    assert press("u") == second and second != third  # undone: the second frame again
    assert press("2") == third  # second: the second class
    fourth = press(" ")  # third: skipped
    fifth = press("b")  # fourth: the twelfth class
    press("n")  # fifth: not an item
    assert len({first, second, third, fourth, fifth}) == 5

    assert sorted(db_rows(settings, "SELECT item_id, label, who FROM labels")) == sorted([
        (first, LABELS[0], "operator"), (second, LABELS[1], "operator"), (fourth, LABELS[11], "operator"),
        (fifth, NOT_ITEM, "operator")])
    counts = {r.get_attribute("data-label"): int(r.find_elements("tag name", "td")[1].text)
              for r in browser.find_elements("css selector", "#teach-counts tbody tr")}
    assert counts == {**dict.fromkeys(LABELS, 0), LABELS[0]: 1, LABELS[1]: 1, LABELS[11]: 1, NOT_ITEM: 1,
                      "left": TEACH_ITEMS - 4}
    screenshot(browser, "web-teach.png")

    show(browser, "live")  # the keys do nothing while another tab is shown
    ActionChains(browser).send_keys("3u").perform()
    time.sleep(0.5)
    assert len(db_rows(settings, "SELECT * FROM labels")) == 4


@pytest.fixture(scope="module")
def standalone(replay):
    """``smartbin web`` alone on the same records (no sorter in the process)."""
    settings, _, _ = replay
    with WebServer(settings) as server:
        yield settings, server.url


def test_standalone_serves_the_same_records_without_a_live_frame(standalone, replay):
    _settings, url = standalone
    assert get_json(url + "api/today") == get_json(replay[2].url + "api/today")
    live = get_json(url + "api/live")
    assert live["mode"] == "standalone" and live["item"]["id"] == ITEMS
    assert live["item"]["frame_url"] in (None, f"/api/items/{ITEMS}/frame.jpg")  # a kept frame at most
    health = get_json(url + "api/health")
    assert health["mode"] == "standalone" and health["camera"] is None and health["records"]["items"] == ITEMS


def test_reading_the_records_never_waits_for_the_sorters_write(tmp_path):
    with Records(tmp_path / "items.db") as records:
        records.add(ItemRecord(time.time(), 0, "test", "residual", "none", "sorted", "tiny12.tflite"))
        writer = sqlite3.connect(tmp_path / "items.db")
        writer.execute("BEGIN IMMEDIATE")  # the sorter in the middle of committing an item
        view = RecordsView(tmp_path / "items.db", tmp_path / "uncertain", ["residual"])
        started = time.monotonic()
        assert view.total() == 1 and view.today()["total"] == 1 and view.recent(5)[0]["frame"] == 0
        assert time.monotonic() - started < 1
        writer.rollback()
        writer.close()


@pytest.mark.parametrize("case, status, message", [
    ("text", 415, "cannot decode image: the upload (not a readable JPEG, PNG, BMP or WebP header)"),
    ("empty", 415, "cannot decode image: the upload"),
    ("no boundary", 400, "broken multipart body"),
    ("garbage", 400, "broken multipart body"),
    ("no image field", 400, "no photo"),
    ("declared huge", 413, "upload too large: at most 1 MB"),
    ("streamed huge", 413, "upload too large: at most 1 MB"),
    ("decompression bomb", 413, "image too large: the upload is 30000×30000 pixels, over the cap of 20"),
])
def test_bad_uploads_get_one_line_and_their_status(tmp_path, case, status, message):
    settings = web_settings(tmp_path, max_upload_mb=1.0)
    cases = {
        "text": multipart(b"not a photo at all\n"),
        "empty": multipart(b""),
        "no boundary": (b"whatever", {"Content-Type": "multipart/form-data"}),
        "garbage": (b"no boundary here", {"Content-Type": "multipart/form-data; boundary=xyz"}),
        "no image field": multipart(b"\xff\xd8", field="photo"),
        "declared huge": multipart(os.urandom(2 * 1024 * 1024)),
        "decompression bomb": multipart(png_bomb()),  # 0.1 MB that would decode into 2.7 GB
    }
    with WebServer(settings) as server:
        if case == "streamed huge":  # chunked: no Content-Length to refuse it by
            chunks = (os.urandom(64 * 1024) for _ in range(40))
            got, body = post_refused_early(server.url + "api/classify", chunks, {"Content-Type": "image/jpeg"},
                                           encode_chunked=True)
        else:
            got, body = post_refused_early(server.url + "api/classify", *cases[case])
    error = json.loads(body)["error"]
    assert (got, error[:len(message)]) == (status, message) and "\n" not in error and "Traceback" not in error


def test_unknown_items_and_paths_get_404_and_never_a_file_outside_the_frames(standalone):
    settings, url = standalone
    (settings.retrain_folder.parent / "secret.jpg").write_bytes(b"\xff\xd8 not for the page")
    cases = {
        "api/items/99999": (404, "no item 99999"),
        "api/items/abc": (404, "no item 'abc': items are numbered"),
        "api/items/" + "9" * 5000: (404, "no item '9999"),
        "api/items/%C2%B2": (404, "no item '²'"),
        "api/live/frame.jpg?id=" + "9" * 5000: (400, "id must be a whole number"),
        "api/items/99999/frame.jpg": (404, "no kept frame of item 99999"),
        "api/live/frame.jpg?id=1": (404, "no live frame of item 1"),
        "api/live/frame.jpg?id=..": (400, "id must be a whole number"),
        "api/items?limit=0": (400, "limit must be a whole number from 1 to 500"),
        "api/items/..%2f..%2fsecret/frame.jpg": (404, ""),
        "api/items/1/../../secret.jpg": (404, ""),
        "api/items/..%2f..%2fsecret.jpg": (404, ""),
        "api/items/%2e%2e/frame.jpg": (404, ""),
        "static/..%2f..%2f..%2fconfig.py": (404, ""),
        "static/%2e%2e/app.py": (404, ""),
        "static/index.html": (404, "not found"),
        "api/classify": (405, "method not allowed: GET /api/classify"),
    }
    for path, (status, message) in cases.items():
        got, _, body = request(url + path)
        assert (got, json.loads(body)["error"][:len(message)]) == (status, message), path
        assert b"not for the page" not in body and b"import" not in body
    for path in ("static/app.js", "static/style.css", ""):
        assert request(url + path)[0] == 200


@pytest.mark.parametrize("host, token, error", [
    ("127.0.0.1", "", None),
    ("localhost", "", None),
    ("::1", "", None),
    ("0.0.0.0", "", "web: token: required to listen on '0.0.0.0'"),
    ("192.168.1.20", "", "web: token: required to listen on '192.168.1.20'"),
    ("bin.local", "", "web: token: required to listen on 'bin.local'"),
    ("0.0.0.0", "short", "web: token: at least 16 characters"),
    ("0.0.0.0", "a-long-enough-token", None),
])
def test_no_token_no_lan_bind(tmp_path, host, token, error):
    config = tmp_path / "lan.toml"
    config.write_text(DEFAULT_CONFIG.read_text().replace("\n[web]\n", f'\n[web]\nhost = "{host}"\ntoken = "{token}"\n'))
    if error is None:
        assert load_settings(config).web.host == host
        return
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert str(info.value).startswith(f"lan.toml: {error}") and "\n" not in str(info.value)


def test_token_is_required_on_every_request_and_compared_in_constant_time(tmp_path, monkeypatch):
    import edge.web.auth

    token = "s3cret-token-for-the-test"
    compared = []
    real = edge.web.auth.hmac.compare_digest
    monkeypatch.setattr(edge.web.auth.hmac, "compare_digest", lambda a, b: compared.append(1) or real(a, b))
    settings = web_settings(tmp_path, token=token)
    with WebServer(settings) as server:
        url = server.url
        for path in ("", "api/today", "static/app.js", "api/items/1/frame.jpg"):
            status, headers, body = request(url + path)
            assert status == 401 and headers["WWW-Authenticate"] == "Bearer", path
            assert json.loads(body)["error"].startswith("access token required")
        assert request(url + "api/today", headers={"Authorization": f"Bearer {token}x"})[0] == 401
        assert request(url + "api/today", headers={"Authorization": f"Bearer {token}"})[0] == 200
        assert request(url + "?token=wrong")[0] == 401
        status, headers, _ = request(url + "api/today?token=" + token + "&x=1")
        assert status == 303 and headers["Location"] == "/api/today?x=1"
        for evil in ("//evil.example/", "///evil.example/"):  # never a redirect off this server
            status, headers, _ = request(url.rstrip("/") + evil + "?token=" + token)
            assert status == 303 and headers["Location"] == "/evil.example/", evil
        cookie = headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert request(url + "api/today", headers={"Cookie": cookie.split(";")[0]})[0] == 200
        assert request(url + "api/today", headers={"Cookie": "smartbin_token=nope"})[0] == 401
    assert compared


def test_a_busy_port_is_one_line_at_start_and_not_a_config_error(tmp_path):
    settings = web_settings(tmp_path)
    with WebServer(settings) as server:
        port = urlsplit(server.url).port
        busy = settings.model_copy(update={"web": settings.web.model_copy(update={"port": port})})
        with pytest.raises(PortError, match=rf"^web: cannot listen on 127.0.0.1:{port}: .+$") as info:
            WebServer(busy)
        assert info.value.exit_code == 1  # systemd restarts it (RestartPreventExitStatus=2 is for config errors)


def test_live_frame_is_the_items_best_frame_with_the_roi_drawn_and_the_frame_untouched():
    live = LiveState(Roi(0.25, 0.0, 0.5, 1.0), "test")
    assert isinstance(live, FrameObserver)
    rgb = np.full((240, 320, 3), 40, np.uint8)
    frame = Frame(rgb, time.time(), 7, time.monotonic())
    live.on_frame(frame)
    live.on_item_frame(3, frame)
    live.on_item(3, ItemRecord(frame.timestamp, 7, "test", "residual", "none", "sorted", "tiny12.tflite"))
    assert live.jpeg(2) is None and live.jpeg(3) is live.jpeg(3)  # encoded once per item
    import cv2

    drawn = cv2.cvtColor(cv2.imdecode(np.frombuffer(live.jpeg(3), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert drawn.shape == rgb.shape and (rgb == 40).all()
    amber = np.abs(drawn.astype(int) - (255, 160, 0)).sum(axis=2) < 90
    assert amber[:, 78:83].any(axis=1).all() and amber[:, 237:242].any(axis=1).all()  # the ROI's sides
    assert not amber[10:230, 100:220].any()  # and nothing inside
    assert annotated_jpeg(np.zeros((720, 1280, 3), np.uint8), (280, 0, 1000, 720))[:2] == b"\xff\xd8"


def test_commands_serve_the_page_beside_the_sorter_and_alone(tmp_path, tiny_model, garbage12):
    config = write_config(tmp_path, tiny_model)
    config.write_text(config.read_text().replace("\n[web]\n", "\n[web]\nenabled = true\nport = 0\n").replace(
        "\n[simulator]\n", f'\n[simulator]\nitems = "{garbage12}"\n'))

    def start(*args: str) -> tuple[subprocess.Popen, str]:
        proc = subprocess.Popen([sys.executable, "-m", "edge.cli", *args, "--config", str(config)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:  # type: ignore[union-attr]
            if "web page at " in line:
                return proc, line.split("web page at ")[1].split()[0]
        raise AssertionError(f"no web page line; exit {proc.wait()}")

    proc, url = start("run", "--max-items", "4")
    deadline = time.monotonic() + 30
    while (live := get_json(url + "api/live"))["item"] is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert live["mode"] == "sorter" and live["item"]["frame_url"].startswith("/api/live/frame.jpg")
    assert proc.wait(timeout=60) == 0
    proc, url = start("web")
    assert get_json(url + "api/live")["mode"] == "standalone" and get_json(url + "api/today")["total"] == 4
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def test_a_flood_of_silent_connections_is_bounded_and_the_page_still_answers(tmp_path, capsys):
    from tools import faults

    settings = web_settings(tmp_path, max_connections=8, request_timeout_s=5.0)
    with WebServer(settings) as server:
        held: list[int] = []
        refused: list[int] = []

        def count() -> None:
            held.append(server.open_connections)
            refused.append(server.refused_connections)

        assert faults.flood(server.url, 300, 0.5, "", during=count)
        out = capsys.readouterr().out
        assert held[0] <= 8 and int(re.search(r"(\d+) closed by the server", out).group(1)) > 0, out
        assert refused[0] <= 8 * 8  # over the limit: answered 503 if they ever send, the oldest silent closed
        assert "GET /api/health during the flood: 200" in out
        assert faults.main(["bomb", server.url]) == 0  # the script as an operator runs it
        assert "413" in capsys.readouterr().out


def upload(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, http.client.HTTPMessage, bytes] | str:
    """(status, headers, body) of a POST to /api/classify, or the error that left it without an answer."""
    try:
        status, answer_headers, answer = request(url + "api/classify", "POST", body, headers)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return status, answer_headers, answer


def concurrent_uploads(url: str, n: int, body: bytes, headers: dict[str, str]) -> list:
    """``upload`` from ``n`` threads started together."""
    start = threading.Barrier(n)
    results: list = [None] * n

    def one(i: int) -> None:
        start.wait()
        results[i] = upload(url, body, headers)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def is_busy_answer(result: object, limit: int = 4) -> bool:
    """A 503 with Retry-After and a one-line JSON reason, the request's body read first."""
    if not isinstance(result, tuple) or result[0] != 503:
        return False
    error = json.loads(result[2])["error"]
    return result[1].get("Retry-After") == "1" and error.startswith(f"busy: {limit} connections served at once") and \
        "\n" not in error


def test_uploads_over_the_connection_limit_get_503_with_retry_after_and_never_a_reset(tmp_path, garbage12):
    settings = web_settings(tmp_path, max_connections=4, request_timeout_s=5.0)
    body, headers = multipart(sorted((garbage12 / "paper").iterdir())[0].read_bytes())
    with WebServer(settings) as server:
        parts = urlsplit(server.url)
        held = []
        for _ in range(4):  # the limit taken by uploads in progress (their bodies half sent)
            sock = socket.create_connection((parts.hostname, parts.port), timeout=20)
            sock.sendall(f"POST /api/classify HTTP/1.1\r\nHost: x\r\nContent-Type: {headers['Content-Type']}\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:1000])
            held.append(sock)
        results = concurrent_uploads(server.url, 30, body, headers)  # under the 8 × 4 open refused at most
        assert all(is_busy_answer(r) for r in results), [r for r in results if not is_busy_answer(r)][:3]
        status, _, answer = request(server.url + "api/health")  # answered over the limit too
        assert status == 200 and "uptime_s" in json.loads(answer)
        for sock in held:  # the uploads in progress are served as if nothing happened
            sock.sendall(body[1000:])
            response = http.client.HTTPResponse(sock)
            response.begin()
            assert response.status == 200 and json.loads(response.read())["label"]
            sock.close()


def test_200_concurrent_uploads_against_32_connections_each_get_an_http_answer(tmp_path, garbage12):
    settings = web_settings(tmp_path)  # web.max_connections: the default 32
    body, headers = multipart(sorted((garbage12 / "white-glass").iterdir())[0].read_bytes())
    with WebServer(settings) as server:
        results = concurrent_uploads(server.url, 200, body, headers)  # issue #42: 163 of them were reset
        assert not [r for r in results if isinstance(r, str)]  # no reset, no time-out
        statuses = [r[0] for r in results]
        assert set(statuses) == {200, 503} and all(is_busy_answer(r, 32) for r in results if r[0] == 503), statuses


def test_a_request_head_sent_too_slowly_is_cut_off(tmp_path):
    settings = web_settings(tmp_path, request_timeout_s=0.5)
    with WebServer(settings) as server:
        parts = urlsplit(server.url)
        with socket.create_connection((parts.hostname, parts.port), timeout=5) as slow:
            slow.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            started = time.monotonic()
            assert slow.recv(1024) == b""  # closed by the server
            assert 0.3 < time.monotonic() - started < 3
        status, _, _ = request(server.url + "api/health")  # a prompt client is served as before
        assert status == 200 and server.open_connections <= 1


def kept_items(settings: Settings, guesses: list[tuple[str, float]]) -> list[int]:
    """Items recorded and their frames kept, as the sorter does, one per (guess, confidence); their ids."""
    keeper = FrameKeeper(settings.retrain_folder, keep_below=1.0, max_mb=10)
    ids = []
    with Records(settings.records.database) as records:
        for n, (guess, confidence) in enumerate(guesses):
            record = ItemRecord(1_700_000_000.0 + n, n, "test", "residual", "none", "rejected", "tiny12.tflite",
                                label=guess, confidence=confidence, top_k=((guess, confidence), ("trash", 0.05)))
            ids.append(records.add(record))
            keeper.keep(ids[-1], Frame(np.full((60, 80, 3), 40 + n, np.uint8), record.time, n, 0.0), record)
    return ids


def send(url: str, method: str, payload: object = None, headers: dict[str, str] | None = None) -> tuple[int, object]:
    """(status, decoded JSON) of a request with a JSON body."""
    body = None if payload is None else payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    status, _, answer = request(url, method, body, {"Content-Type": "application/json", **(headers or {})})
    return status, json.loads(answer)


def test_teach_offers_the_unlabelled_kept_frames_least_certain_first_and_spread_over_the_guesses(tmp_path):
    settings = web_settings(tmp_path)
    ids = kept_items(settings, [("paper", 0.1), ("paper", 0.2), ("paper", 0.3), ("metal", 0.5), ("battery", 0.4)])
    with WebServer(settings) as server:
        teach = get_json(server.url + "api/teach")
        assert teach["labels"] == list(LABELS) and teach["not_item"] == NOT_ITEM
        assert [f["id"] for f in teach["frames"]] == [ids[0], ids[4], ids[3], ids[1], ids[2]]
        assert teach["frames"][0] == {
            "id": ids[0], "time": 1_700_000_000.0, "guess": "paper", "confidence": 0.1,
            "top_k": [["paper", 0.1], ["trash", 0.05]], "bin": "residual", "outcome": "rejected", "kept": "uncertain",
            "frame_url": f"/api/items/{ids[0]}/frame.jpg"}
        assert teach["counts"] == {"labelled": dict.fromkeys(LABELS, 0), "not_item": 0, "left": 5}
        assert send(server.url + f"api/teach/{ids[0]}", "POST", {"label": "cardboard", "who": "ann"})[0] == 200
        assert send(server.url + f"api/teach/{ids[4]}", "POST", {"label": NOT_ITEM})[0] == 200
        teach = get_json(server.url + "api/teach?limit=2")
        assert [f["id"] for f in teach["frames"]] == [ids[1], ids[3]]  # paper 0.2, then metal before paper 0.3
        assert teach["counts"] == {"labelled": {**dict.fromkeys(LABELS, 0), "cardboard": 1}, "not_item": 1, "left": 3}
        assert request(server.url + "api/teach?limit=501")[0] == 400


def test_a_label_needs_a_kept_frame_a_model_class_and_a_small_json_body_and_is_undone(tmp_path):
    settings = web_settings(tmp_path)
    item, unkept = kept_items(settings, [("paper", 0.4), ("paper", 0.99)])
    (settings.retrain_folder / f"{unkept:08d}.jpg").unlink()  # a confident item: no frame kept
    with WebServer(settings) as server:
        teach = server.url + f"api/teach/{item}"
        cases = [
            ({"label": "plastik"}, 400, "label 'plastik' is neither a label of the model nor 'not-an-item': one of "
                                        "battery, biological, "),
            ({"label": 7}, 400, "label 7 is neither"),
            ({}, 400, "label None is neither"),
            ({"label": "paper", "who": 7}, 400, "who must be a name of 1 to 64 printable characters, not 7"),
            ({"label": "paper", "who": "x" * 65}, 400, "who must be a name of 1 to 64"),
            ({"label": "paper", "who": " "}, 400, "who must be a name of 1 to 64"),
            ({"label": "paper", "by": "ann"}, 400, "unknown key 'by'"),
            (["paper"], 400, "the body must be a JSON object"),
            (b"label=paper", 400, "the body is not JSON"),
            ({"label": "paper", "who": "x" * 5000}, 413, "body too large: at most 4 KiB"),
        ]
        for payload, status, message in cases:
            got, answer = send(teach, "POST", payload)
            assert (got, answer["error"][:len(message)]) == (status, message), payload
        got, _, answer = request(teach, "POST", b'{"label": "paper"}', {"Content-Type": "text/plain"})
        assert (got, json.loads(answer)["error"]) == (415, "send JSON with Content-Type: application/json")
        for path, message in ((f"api/teach/{unkept}", f"no kept frame of item {unkept}: only kept frames"),
                              ("api/teach/99999", "no kept frame of item 99999"), ("api/teach/abc", "no item 'abc'")):
            got, answer = send(server.url + path, "POST", {"label": "paper"})
            assert (got, answer["error"][:len(message)]) == (404, message), path
        assert get_json(server.url + "api/teach/labels") == [] and db_rows(settings, "SELECT * FROM labels") == []

        got, answer = send(teach, "POST", {"label": "paper"})
        assert got == 200 and answer["id"] == item and answer["label"] == "paper" and answer["who"] == "operator"
        assert abs(answer["time"] - time.time()) < 60
        assert send(teach, "POST", {"label": "cardboard", "who": "ann"})[0] == 200  # a second look replaces it
        assert db_rows(settings, "SELECT item_id, label, who, guess, confidence FROM labels") == [
            (item, "cardboard", "ann", "paper", 0.4)]
        assert send(teach, "DELETE") == (200, {"id": item, "removed": True})
        assert send(teach, "DELETE") == (404, {"error": f"item {item} has no label"})
        assert db_rows(settings, "SELECT * FROM labels") == []


def test_labelling_without_the_token_is_401_and_changes_nothing(tmp_path):
    token = "s3cret-token-for-the-test"
    settings = web_settings(tmp_path, token=token)
    (item,) = kept_items(settings, [("paper", 0.4)])
    with WebServer(settings) as server:
        teach = server.url + f"api/teach/{item}"
        for method, headers in (("POST", {}), ("POST", {"Cookie": "smartbin_token=nope"}),
                                ("POST", {"Authorization": f"Bearer {token}x"}), ("DELETE", {})):
            got, answer = send(teach, method, {"label": "paper"}, headers)
            assert got == 401 and answer["error"].startswith("access token required"), (method, headers)
        assert db_rows(settings, "SELECT * FROM labels") == []
        assert send(teach, "POST", {"label": "paper"}, {"Authorization": f"Bearer {token}"})[0] == 200
        assert send(teach, "DELETE", None, {"Authorization": "Bearer wrong-token"})[0] == 401
        assert db_rows(settings, "SELECT item_id, label FROM labels") == [(item, "paper")]


def test_labels_and_their_frames_outlive_the_retention_of_the_items_and_a_restart(tmp_path):
    settings = web_settings(tmp_path)
    ids = kept_items(settings, [("paper", 0.4), ("metal", 0.3), ("battery", 0.2)])
    with WebServer(settings) as server:
        for item_id, label in zip(ids, ("cardboard", NOT_ITEM, "battery"), strict=True):
            assert send(server.url + f"api/teach/{item_id}", "POST", {"label": label})[0] == 200
    with Records(settings.records.database) as records:
        while records.prune(before=1e12):  # retention: every item's row goes
            pass
    assert db_rows(settings, "SELECT COUNT(*) FROM items") == [(0,)]
    with WebServer(settings) as server:
        labels = get_json(server.url + "api/teach/labels")
        assert [(r["id"], r["label"], r["who"], r["guess"], r["confidence"], r["frame_url"]) for r in labels] == [
            (ids[0], "cardboard", "operator", "paper", 0.4, f"/api/items/{ids[0]}/frame.jpg"),
            (ids[1], NOT_ITEM, "operator", "metal", 0.3, f"/api/items/{ids[1]}/frame.jpg"),
            (ids[2], "battery", "operator", "battery", 0.2, f"/api/items/{ids[2]}/frame.jpg")]
        assert labels[0]["time"] <= labels[1]["time"] <= labels[2]["time"]
        status, headers, body = request(server.url + f"api/items/{ids[1]}/frame.jpg")
        assert status == 200 and headers["content-type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
        assert request(server.url + f"api/items/{ids[1]}")[0] == 404  # its record is gone, its frame stays
        assert get_json(server.url + "api/teach")["counts"] == {
            "labelled": {**dict.fromkeys(LABELS, 0), "cardboard": 1, "battery": 1}, "not_item": 1, "left": 0}
