"""`fitpipe serve` in a real browser: Playwright drives Debian's chromium against the real server
on a real TimescaleDB. The cohort lists the participants with adherence's numbers, a click opens
one, the heart-rate chart is drawn where data is and blank over a wear gap, zooming to a (23-hour)
day fetches 1-minute rows equal to the export, the hypnogram's stages are sleep_stages', the
pipeline page shows a failed run's reason, and with a secret configured nobody gets in without it.
Screenshots are kept in tests/artifacts/serve/."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
from pathlib import Path

import psycopg
import pytest

from support import serve as support

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "serve"
SECRET = "browser-test-secret-0123456789"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"Debian's chromium is not installed at {CHROMIUM}"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the test extra) is not installed")

# Pixels of the heart-rate line's colour (participant.js COLORS.measured) between two canvas x positions.
RED_PIXELS = """([x0, x1]) => {
  const u = window.fitpipe.charts.heart_rate;
  const left = Math.round(Math.min(x0, x1)), width = Math.max(1, Math.round(Math.abs(x1 - x0)));
  const top = Math.round(u.bbox.top), height = Math.round(u.bbox.height);
  const pixels = u.ctx.getImageData(left, top, width, height).data;
  let red = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    if (pixels[i] > 150 && pixels[i + 1] < 110 && pixels[i + 2] < 110 && pixels[i + 3] > 200) red++;
  }
  return red;
}"""


@pytest.fixture(scope="module")
def store(database_url):
    return support.build_store(database_url)


@pytest.fixture(scope="module")
def base_url(store):
    port = support.free_port()
    server = support.start_server(store, port)
    yield f"http://127.0.0.1:{port}"
    support.stop_server(server)


@pytest.fixture(scope="module")
def browser():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    opened.on(
        "console",
        lambda message: problems.append(message.text) if "Content Security Policy" in message.text else None,
    )
    yield opened
    context.close()
    assert not problems, problems


def wait_for_charts(page, loads: int = 1) -> None:
    page.wait_for_function(
        f"() => document.getElementById('participant').dataset.loads >= {loads}"
        " && document.getElementById('participant').dataset.state === 'ready'"
    )


def test_cohort_lists_participants_with_the_adherence_numbers(store, base_url, page):
    adherence = {
        row["user_id"]: row for row in json.loads(support.fitpipe(store, "adherence", "--json").stdout)["participants"]
    }
    page.goto(base_url + "/")
    rows = page.locator("#cohort tbody tr")
    assert rows.count() == 3
    shown = [int(rows.nth(i).get_attribute("data-user-id")) for i in range(rows.count())]
    assert shown == list(adherence), "worst first, as `fitpipe adherence` orders them"
    for i, user_id in enumerate(shown):
        row = rows.nth(i)
        wear = float(row.locator("td.wear-share").get_attribute("data-value"))
        assert wear == pytest.approx(adherence[user_id]["wear_share"], rel=1e-6)
        assert row.locator("td.wear-share").inner_text() == f"{adherence[user_id]['wear_share'] * 100:.1f} %"
        assert int(row.locator("td.nights").inner_text()) == adherence[user_id]["nights_captured"]
    # The hostile display name is shown as text, and no script ran from it.
    assert "<script>alert('x')</script> & co" in page.locator('tr[data-user-id="1"] a.participant').inner_text()
    page.screenshot(path=ARTIFACTS / "cohort.png", full_page=True)


def test_a_click_opens_the_participant_and_the_heart_rate_is_drawn_but_not_over_a_gap(base_url, page):
    page.goto(base_url + "/")
    page.locator('tr[data-user-id="1"] a.participant').click()
    page.wait_for_url("**/participants/1")
    wait_for_charts(page)
    payload = page.evaluate("() => window.fitpipe.payloads.heart_rate")
    assert payload["rows"] > 0
    times, values = payload["t"], payload["data"]["bpm"]
    # A wear gap: the longest stretch between consecutive rows, well over the resolution's step.
    step = {"raw": 1, "1min": 60, "1h": 3600, "1d": 86400}[payload["resolution"]]
    gap_start, gap_end = max(itertools.pairwise(times), key=lambda pair: pair[1] - pair[0])
    assert gap_end - gap_start >= 6 * step and gap_end - gap_start >= 3600, "the store has a wear gap in view"
    to_x = "(pair) => pair.map((v) => window.fitpipe.charts.heart_rate.valToPos(v, 'x', true))"
    margin = 3 * step
    over_gap = page.evaluate(to_x, [gap_start + margin, gap_end - margin])
    assert over_gap[1] - over_gap[0] > 3, "the gap is wide enough to look at"
    assert page.evaluate(RED_PIXELS, over_gap) == 0
    # Where data is: the pixels between the first measured rows.
    first = next(i for i, v in enumerate(values) if v is not None)
    with_data = page.evaluate(to_x, [times[first], times[min(first + 6, len(times) - 1)]])
    assert page.evaluate(RED_PIXELS, [with_data[0], with_data[1] + 1]) > 0
    page.screenshot(path=ARTIFACTS / "participant-week.png", full_page=True)


def test_zooming_to_a_day_fetches_one_minute_rows_equal_to_the_export(store, base_url, page):
    page.goto(f"{base_url}/participants/1?start={support.FIRST_DAY}&end={support.DST_DAY}")
    wait_for_charts(page)
    assert page.evaluate("() => window.fitpipe.payloads.heart_rate.resolution") in ("1h", "1min")
    page.get_by_role("button", name="Day").click()
    wait_for_charts(page, 2)
    assert page.url.endswith(f"?start={support.DST_DAY}&end={support.DST_DAY}"), "the view is in the URL"
    payload = page.evaluate("() => window.fitpipe.payloads.heart_rate")
    request = page.evaluate("() => window.fitpipe.requests.filter(r => r.includes('/heart_rate?')).pop()")
    assert f"start={support.DST_DAY}&end={support.DST_DAY}" in request
    assert payload["resolution"] in ("raw", "1min")
    lo, hi = payload["window"]
    assert hi - lo == 23 * 3600, "spring forward: the day has 23 hours"
    exported = support.parse_export(
        support.export_csv(
            store, "heart_rate", 1, support.DST_DAY, support.DST_DAY, "--max-rows", str(payload["points"])
        )[0]
    )
    assert exported["bucket" if payload["resolution"] != "raw" else "ts"] == payload["data"][payload["time_column"]]
    assert [float(v) for v in exported["bpm"]] == payload["data"]["bpm"]
    assert [float(v) for v in exported["bpm_max"]] == payload["data"]["bpm_max"]
    # What the chart holds is what came: the mean series, less the gap and frame markers.
    drawn = page.evaluate("() => window.fitpipe.charts.heart_rate.data[3].filter(v => v !== null)")
    assert drawn == [float(v) for v in exported["bpm"]]
    page.screenshot(path=ARTIFACTS / "participant-dst-day.png", full_page=True)
    # Dragging across part of the chart zooms in further and asks again, for the days in the selection.
    box = page.locator("#chart-heart_rate .u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.40, box["y"] + 20)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.55, box["y"] + 20, steps=5)
    page.mouse.up()
    wait_for_charts(page, 3)
    scale = page.evaluate("() => window.fitpipe.charts.heart_rate.scales.x")
    assert lo < scale["min"] < scale["max"] < hi and scale["max"] - scale["min"] < 0.3 * (hi - lo)
    # The link to this view opens the same selection.
    page.goto(page.url)
    wait_for_charts(page)
    reopened = page.evaluate("() => window.fitpipe.charts.heart_rate.scales.x")
    assert abs(reopened["min"] - scale["min"]) <= 1 and abs(reopened["max"] - scale["max"]) <= 1


def test_the_hypnogram_shows_the_stages_of_sleep_stages(store, base_url, page):
    page.goto(f"{base_url}/participants/1?start={support.FIRST_DAY}&end={support.LAST_DAY}")
    wait_for_charts(page)
    drawn = page.evaluate("() => window.fitpipe.hypnogram")
    assert drawn, "the store has sleep in view"
    from fitpipe.participants import list_users

    with psycopg.connect(store) as conn:
        (user,) = list_users(conn, [1])
        # The nights the page asked for: FIRST_DAY - 1 .. LAST_DAY, each [D 12:00, D+1 12:00) local.
        lo = user.day_start(support.FIRST_DAY - dt.timedelta(days=1), 12)
        hi = user.day_start(support.LAST_DAY + dt.timedelta(days=1), 12)
        stored = conn.execute(
            "SELECT extract(epoch FROM start_ts)::float8, stage, seconds FROM sleep_stages "
            "WHERE user_id = 1 AND NOT is_short AND start_ts >= %s AND start_ts < %s ORDER BY start_ts, stage",
            (lo, hi),
        ).fetchall()
    assert sorted((s["t"], s["stage"], s["seconds"]) for s in drawn) == sorted(stored)
    page.locator("#chart-sleep").screenshot(path=ARTIFACTS / "hypnogram.png")


def test_the_pipeline_page_shows_a_failed_runs_reason(base_url, page):
    page.goto(base_url + "/pipeline")
    reasons = page.locator(".failure pre.reason")
    assert reasons.count() == 1
    text = reasons.first.inner_text()
    assert support.OUTAGE in text and f"day {support.LAST_DAY}" in text
    assert page.locator("#runs tbody tr.status-failed").count() == 1
    page.screenshot(path=ARTIFACTS / "pipeline.png", full_page=True)


def test_with_a_secret_an_unauthenticated_browser_is_refused(store, browser):
    port = support.free_port()
    server = support.start_server(store, port, "--host", "0.0.0.0", env={"FITPIPE_SERVE_TOKEN": SECRET})
    try:
        stranger = browser.new_context()
        # Headless, the browser cannot ask for the password: the navigation itself is refused.
        with pytest.raises(sync_api.Error, match="ERR_INVALID_AUTH_CREDENTIALS"):
            stranger.new_page().goto(f"http://127.0.0.1:{port}/participants/1")
        for path in ("/participants/1", "/api/v1/participants", "/static/participant.js"):
            response = stranger.request.get(f"http://127.0.0.1:{port}{path}")
            assert response.status == 401, path
            assert response.headers["www-authenticate"].startswith("Basic"), path
        stranger.close()
        coordinator = browser.new_context(http_credentials={"username": "coordinator", "password": SECRET})
        page = coordinator.new_page()
        response = page.goto(f"http://127.0.0.1:{port}/participants/1?start={support.DST_DAY}&end={support.DST_DAY}")
        assert response.status == 200
        wait_for_charts(page)
        assert page.evaluate("() => window.fitpipe.payloads.heart_rate.rows") > 0
        coordinator.close()
    finally:
        support.stop_server(server)
