"""The dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`, driven
by selenium, a fresh profile, nothing that reaches outside the machine): sign in, every page,
a job's curves growing while it trains and its buttons, an upload with its progress bar and a
refused line, escaping of what users supplied, the Content-Security-Policy, and the playground
against the session's vLLM server. Each page's screenshot is saved under `.cache/` for review.

Also the API additions the dashboard reads: job list filters and the usage endpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from tests.conftest import BIN, Server, Stack, make_stack
from tests.support import chat_jsonl, qa_jsonl, wait_for_job

CHROMIUM = os.environ.get("FTSERVE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FTSERVE_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
SCREENSHOTS = Path(__file__).resolve().parent.parent / ".cache" / "dashboard-screenshots"
"""Where each page's screenshot is saved for a reviewer (`.cache/` is ignored by git)."""
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
]


@contextmanager
def chromium() -> Iterator[WebDriver]:
    with tempfile.TemporaryDirectory(prefix="ftserve-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in [*FLAGS, f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
        try:
            yield driver
        finally:
            driver.quit()


def wait_until(condition: Callable[[], Any], timeout_s: float = 60.0, what: str = "condition") -> Any:
    """Poll `condition` (exceptions count as false) until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # an element replaced while read, not there yet…
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{what} not met within {timeout_s}s (last error: {last!r})")


def find(driver: WebDriver, css: str, timeout_s: float = 30.0) -> WebElement:
    return wait_until(lambda: driver.find_element(By.CSS_SELECTOR, css), timeout_s, f"element {css}")


def sign_in(driver: WebDriver, origin: str, key: str) -> None:
    driver.get(origin + "/dashboard/")
    driver.execute_script("sessionStorage.clear()")  # signed out, whatever an earlier test left
    driver.refresh()
    find(driver, "#api-key").send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "#sign-in button").click()
    wait_until(lambda: driver.find_element(By.ID, "nav").is_displayed(), 30, "signed in")


def screenshot(driver: WebDriver, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def console_errors(driver: WebDriver) -> list[str]:
    """Errors the page logged: script failures and Content-Security-Policy refusals (an API
    error answer the page expected, such as a refused upload, is logged too and left out)."""
    logged = driver.get_log("browser")
    return [e["message"] for e in logged if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]]


def origin(server: Server) -> str:
    return server.base_url.removesuffix("/v1")


@pytest.fixture(scope="module", name="stack")
def fx_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # The service's own body limits (the shared test servers lower them): the dashboard sends
    # files over 4 MiB through /v1/uploads in 4 MiB parts.
    stack = make_stack(request, "sqlite-local", tmp_path_factory.mktemp("dashboard"),
                       FTSERVE_MAX_FILE_BYTES=str(64 << 20), FTSERVE_MAX_PART_BYTES=str(16 << 20),
                       FTSERVE_WEBHOOK_ALLOW_PRIVATE="1")  # fmt: skip
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module", name="dash")
def fx_dash(stack: Stack) -> Server:
    return stack.start_api("--no-inference")


@pytest.fixture(scope="module", name="browser")
def fx_browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


def test_pages_carry_a_strict_content_security_policy(dash: Server) -> None:
    for path in ("/dashboard/", "/dashboard/static/app.js", "/dashboard/static/app.css"):
        response = httpx.get(origin(dash) + path)
        assert response.status_code == 200, path
        policy = response.headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        assert directives["script-src"] == "'self'" and directives["default-src"] == "'none'"
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"
    page = httpx.get(origin(dash) + "/dashboard/").text
    assert "<script>" not in page and " on" not in page.split("<body>")[1]  # no inline script or handlers
    assert httpx.get(origin(dash) + "/dashboard/static/..%2Fcontrollers.py").status_code == 404
    assert httpx.get(origin(dash) + "/", follow_redirects=False).headers["location"] == "/dashboard/"


def test_sign_in_refuses_a_wrong_key_and_keeps_the_key_in_session_storage(dash: Server, browser: WebDriver) -> None:
    browser.get(origin(dash) + "/dashboard/")
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()
    find(browser, "#api-key").send_keys("sk-ft-not-a-key")
    browser.find_element(By.CSS_SELECTOR, "#sign-in button").click()
    assert "Incorrect API key" in find(browser, "#main .error").text
    sign_in(browser, origin(dash), dash.key)
    assert browser.execute_script("return sessionStorage.getItem('ftserve.key')") == dash.key
    assert browser.execute_script("return localStorage.length") == 0
    assert find(browser, "#main h1").text == "Fine-tuning jobs"


def test_upload_shows_progress_and_the_refused_line_and_escapes_names_and_contents(
    dash: Server, browser: WebDriver, tmp_path: Path
) -> None:
    sign_in(browser, origin(dash), dash.key)
    # Over 4 MiB: sent through /v1/uploads in parts; the bad line is near the end.
    good = chat_jsonl(30000)
    bad_line = good.count(b"\n") + 1
    robot = {"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "beep"}]}
    big = tmp_path / "big.jsonl"
    big.write_bytes(good + json.dumps(robot).encode() + b"\n")
    assert big.stat().st_size > 4 << 20
    browser.get(origin(dash) + "/dashboard/#/files")
    find(browser, "#upload-file").send_keys(str(big))
    browser.find_element(By.CSS_SELECTOR, "#upload-form button").click()
    error = wait_until(lambda: browser.find_element(By.CSS_SELECTOR, "#upload-message .error"), 120, "refusal")
    assert f"line {bad_line}" in error.text and "robot" in error.text
    assert browser.find_element(By.ID, "upload-progress").get_attribute("value") == "100"
    size = f"{big.stat().st_size:,}"
    assert browser.find_element(By.ID, "upload-label").text == f"{size} / {size} bytes"
    screenshot(browser, "files-refused")
    uploads = dash.client().files.list().data
    assert not [f for f in uploads if f.filename == "big.jsonl"]

    # A name and a first line that are markup: shown as text, never run.
    name = '<script>window.__ran=1</script><img src=x onerror="window.__ran=2">.jsonl'
    first = json.dumps({"messages": [{"role": "user", "content": "<b>bold</b><script>window.__ran=3</script>"},
                                     {"role": "assistant", "content": "ok"}]})  # fmt: skip
    odd = tmp_path / "odd.jsonl"
    odd.write_text(first + "\n" + chat_jsonl(12).decode())
    stored = dash.client().files.create(file=(name, odd.read_bytes()), purpose="fine-tune")
    browser.refresh()  # the same URL: a reload, not a fragment change
    row = find(browser, f'tr[data-file="{stored.id}"]')
    assert name in row.text
    browser.get(origin(dash) + f"/dashboard/#/files/{stored.id}")
    preview = wait_until(lambda: browser.find_element(By.ID, "file-preview").text, 30, "preview")
    assert preview.splitlines()[0].strip() == "1  " + first
    assert browser.execute_script("return window.__ran === undefined && !document.querySelector('main img')")
    assert name in browser.find_element(By.CSS_SELECTOR, "#main table").text
    screenshot(browser, "file")
    assert not console_errors(browser)


def points(driver: WebDriver, series: str) -> int:
    g = driver.find_element(By.CSS_SELECTOR, f'#charts g[data-series="{series}"]')
    return int(g.get_attribute("data-points") or 0)


def current_status(driver: WebDriver) -> str:
    return driver.find_element(By.CSS_SELECTOR, "#timeline li.current").text


def test_job_page_curve_grows_while_training_and_its_buttons_pause_resume_and_cancel(
    dash: Server, browser: WebDriver
) -> None:
    client = dash.client()
    # 5,000 steps: minutes of training, cancelled long before the end.
    training = client.files.create(file=("train.jsonl", chat_jsonl(100)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=training.id, suffix="watch.me",
                                         hyperparameters={"n_epochs": 50, "batch_size": 1})  # fmt: skip
    sign_in(browser, origin(dash), dash.key)
    browser.get(origin(dash) + f"/dashboard/#/jobs/{job.id}")
    find(browser, "#charts")
    first = wait_until(lambda: points(browser, "train_loss") >= 2 and points(browser, "train_loss"), 120, "points")
    # The page follows the job by itself: more points arrive without a reload.
    grown = wait_until(lambda: points(browser, "train_loss") >= first + 3 and points(browser, "train_loss"), 120,
                       "the curve to grow")  # fmt: skip
    assert grown > first
    assert current_status(browser) == "running"
    assert "Step " in browser.find_element(By.ID, "event-log").text
    assert "n_epochs" in browser.find_element(By.CSS_SELECTOR, "#main table").text
    screenshot(browser, "job-running")

    browser.find_element(By.ID, "job-pause").click()
    wait_until(lambda: current_status(browser) == "paused", 60, "paused")
    retrieved = httpx.get(f"{dash.base_url}/fine_tuning/jobs/{job.id}", headers={"authorization": f"Bearer {dash.key}"})
    assert retrieved.json()["status"] == "paused"  # (the SDK's strict types lack `paused`)
    assert browser.find_element(By.ID, "job-resume").is_enabled()
    browser.find_element(By.ID, "job-resume").click()
    wait_until(lambda: current_status(browser) in ("queued", "running"), 60, "resumed")
    at_resume = points(browser, "train_loss")
    wait_until(lambda: points(browser, "train_loss") > at_resume, 120, "training again after the resume")

    browser.find_element(By.ID, "job-cancel").click()
    wait_until(lambda: current_status(browser) == "cancelled", 60, "cancelled")
    assert wait_for_job(client, job.id, timeout_s=30).status == "cancelled"
    assert browser.find_element(By.ID, "job-cancel").get_attribute("disabled") is not None
    screenshot(browser, "job-cancelled")

    # The jobs list, filtered by status through the page's own form.
    browser.get(origin(dash) + "/dashboard/#/jobs")
    Select(find(browser, "#filter-status")).select_by_value("cancelled")
    browser.find_element(By.CSS_SELECTOR, "form.filters button").click()
    row = find(browser, f'tr[data-job="{job.id}"]')
    assert "cancelled" in row.text and "watch.me" in row.text and "tiny-chat" in row.text
    assert "status=cancelled" in browser.current_url
    screenshot(browser, "jobs")
    assert not console_errors(browser)


def test_job_list_filters_by_status_and_model(dash: Server) -> None:
    client = dash.client()
    training = client.files.create(file=("t.jsonl", chat_jsonl(12)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=training.id)
    client.fine_tuning.jobs.cancel(job.id)
    headers = {"authorization": f"Bearer {dash.key}"}

    def ids(**params: str) -> list[str]:
        response = httpx.get(dash.base_url + "/fine_tuning/jobs", params={"limit": 100, **params}, headers=headers)
        assert response.status_code == 200, response.text
        return [j["id"] for j in response.json()["data"]]

    assert job.id in ids(status="cancelled") and job.id in ids(model="tiny-chat")
    assert job.id not in ids(status="running") and job.id not in ids(model="other-model")
    for listed in ids(status="cancelled"):
        assert client.fine_tuning.jobs.retrieve(listed).status == "cancelled"
    other = httpx.get(dash.base_url + "/fine_tuning/jobs", params={"status": "cancelled"},
                      headers={"authorization": f"Bearer {dash.other_key}"})  # fmt: skip
    assert other.json()["data"] == []
    refused = httpx.get(dash.base_url + "/fine_tuning/jobs", params={"status": "done"}, headers=headers)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "status"


def test_webhooks_page_shows_endpoints_and_deliveries_to_admin_keys_only(
    dash: Server, stack: Stack, browser: WebDriver
) -> None:
    def run(*args: str) -> str:
        return subprocess.run([str(BIN / "ftserve"), *args], env=stack.env, capture_output=True, text=True,
                              check=True).stdout  # fmt: skip

    admin_key = run("keys", "create", "--org", "acme", "--admin").strip().splitlines()[-1]
    # Nothing listens there: the delivery stays pending with its error, which is what the page shows.
    run("webhooks", "add", "--org", "acme", "--url", "http://127.0.0.1:9/hook?a=<b>")
    client = dash.client()
    training = client.files.create(file=("w.jsonl", chat_jsonl(12)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=training.id)
    client.fine_tuning.jobs.cancel(job.id)

    sign_in(browser, origin(dash), dash.key)
    browser.get(origin(dash) + "/dashboard/#/webhooks")
    assert "admin key" in find(browser, "#main .error").text  # a plain key: the API's 403, as it is

    sign_in(browser, origin(dash), admin_key)
    browser.get(origin(dash) + "/dashboard/#/webhooks")
    endpoint = find(browser, "tr[data-endpoint]")
    assert "http://127.0.0.1:9/hook?a=<b>" in endpoint.text

    def cancelled_rows() -> list[WebElement]:
        rows = [r for r in browser.find_elements(By.CSS_SELECTOR, "tbody tr") if "fine_tuning.job.cancelled" in r.text]
        if not rows:
            browser.refresh()
        return rows

    row = wait_until(cancelled_rows, 60, "the delivery listed")
    assert "pending" in row[0].text or "failed" in row[0].text
    screenshot(browser, "webhooks")
    browser.execute_script("sessionStorage.clear()")


def served_usage(server: Server, key: str | None = None) -> dict[str, dict[str, int]]:
    """Today's usage per model, summed over the buckets of the usage endpoint."""
    response = httpx.get(server.base_url + "/organization/usage/completions",
                         params={"start_time": int(time.time()) // 86400 * 86400 - 86400, "bucket_width": "1h",
                                 "limit": 48, "group_by": "model"},
                         headers={"authorization": f"Bearer {key or server.key}"})  # fmt: skip
    assert response.status_code == 200, response.text
    page = response.json()
    # Hourly buckets from yesterday's midnight up to now (no `end_time`): 25 to 48 of them, one page.
    assert page["object"] == "page" and 24 < len(page["data"]) <= 48 and page["has_more"] is False
    totals: dict[str, dict[str, int]] = {}
    for bucket in page["data"]:
        assert bucket["object"] == "bucket" and bucket["end_time"] - bucket["start_time"] <= 3600
        for result in bucket["results"]:
            assert result["object"] == "organization.usage.completions.result"
            t = totals.setdefault(result["model"], {"input": 0, "output": 0, "requests": 0})
            t["input"] += result["input_tokens"]
            t["output"] += result["output_tokens"]
            t["requests"] += result["num_model_requests"]
    return totals


def test_usage_counts_every_answer_and_the_playground_streams_two_models(
    inference_api: Server, browser: WebDriver
) -> None:
    client = inference_api.client()
    training = client.files.create(file=("qa.jsonl", qa_jsonl()), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=training.id, suffix="dash",
                                         hyperparameters={"n_epochs": 2, "batch_size": 4})  # fmt: skip
    tuned = wait_for_job(client, job.id, timeout_s=300).fine_tuned_model
    assert tuned

    before = served_usage(inference_api).get(tuned, {"input": 0, "output": 0, "requests": 0})
    question = [{"role": "user", "content": "What is the code of item 3?"}]
    plain = client.chat.completions.create(model=tuned, messages=question, max_tokens=8, temperature=0)
    streamed_usage = None
    for chunk in client.chat.completions.create(model=tuned, messages=question, max_tokens=8, temperature=0,
                                                stream=True, stream_options={"include_usage": True}):  # fmt: skip
        streamed_usage = chunk.usage or streamed_usage
    assert plain.usage and streamed_usage
    # Usage is counted in memory and written every 2 s (`service/usage.py`): wait for both answers.
    deadline = time.monotonic() + 20
    while (after := served_usage(inference_api).get(tuned, before))["requests"] < before["requests"] + 2:
        assert time.monotonic() < deadline, "usage of two answers not recorded"
        time.sleep(0.5)
    assert after["requests"] == before["requests"] + 2
    assert after["input"] - before["input"] == plain.usage.prompt_tokens + streamed_usage.prompt_tokens
    assert after["output"] - before["output"] == plain.usage.completion_tokens + streamed_usage.completion_tokens
    assert tuned not in served_usage(inference_api, inference_api.other_key)  # another organisation's

    sign_in(browser, origin(inference_api), inference_api.key)
    browser.get(origin(inference_api) + "/dashboard/#/playground")
    Select(find(browser, "#model-a")).select_by_value("tiny-chat")
    Select(find(browser, "#model-b")).select_by_value(tuned)
    find(browser, "#prompt").send_keys("What is the code of item 3?")
    browser.find_element(By.CSS_SELECTOR, "#playground-form button").click()
    for pane in ("#answer-a", "#answer-b"):
        wait_until(lambda p=pane: browser.find_element(By.CSS_SELECTOR, p).get_attribute("data-state") == "done",
                   120, f"{pane} answered")  # fmt: skip
        assert browser.find_element(By.CSS_SELECTOR, f"{pane} .answer").text.strip()
        assert not browser.find_elements(By.CSS_SELECTOR, f"{pane} .error")
    screenshot(browser, "playground")

    browser.get(origin(inference_api) + "/dashboard/#/usage")
    row = find(browser, f'tr[data-model="{tuned}"]')
    assert row.find_elements(By.CSS_SELECTOR, "td")[1].text == str(served_usage(inference_api)[tuned]["requests"])
    assert "tiny-chat" in browser.find_element(By.ID, "main").text  # tokens trained per base model
    screenshot(browser, "usage")

    browser.get(origin(inference_api) + "/dashboard/#/models")
    row = find(browser, f'tr[data-model="{tuned}"]')
    screenshot(browser, "models")
    row.find_element(By.CSS_SELECTOR, "button.danger").click()
    browser.switch_to.alert.accept()
    wait_until(lambda: "Deleted" in browser.find_element(By.ID, "models-message").text, 30, "deleted")
    assert not browser.find_elements(By.CSS_SELECTOR, f'tr[data-model="{tuned}"]')
    assert tuned not in [m.id for m in client.models.list()]
    for page in ("evals", "webhooks"):
        browser.get(origin(inference_api) + f"/dashboard/#/{page}")
        find(browser, "#main h1")
        screenshot(browser, page)
    assert not console_errors(browser)


def test_usage_endpoint_answers_mistakes_with_the_error_envelope(dash: Server) -> None:
    url = dash.base_url + "/organization/usage/completions"
    headers = {"authorization": f"Bearer {dash.key}"}
    now = int(time.time())
    cases = [
        ({"start_time": now, "group_by": "project_id"}, "group_by"),
        ({"start_time": now, "bucket_width": "1d", "limit": 32}, "limit"),
        ({"start_time": now, "page": "nonsense"}, "page"),
        ({"start_time": now, "end_time": now - 10}, "end_time"),
        ({"start_time": now, "bucket_width": "2h"}, "bucket_width"),
        ({}, "start_time"),
    ]
    for params, param in cases:
        response = httpx.get(url, params=params, headers=headers)
        assert response.status_code == 400, (params, response.text)
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and param in (error["param"] or error["message"]), error
    assert httpx.get(url, params={"start_time": now}).status_code == 401
    # Pages: two daily buckets per page over five days, followed by `next_page`.
    start = now // 86400 * 86400 - 4 * 86400
    seen, page = [], None
    while True:
        body = httpx.get(url, params={"start_time": start, "limit": 2, **({"page": page} if page else {})},
                         headers=headers).json()  # fmt: skip
        seen += [b["start_time"] for b in body["data"]]
        if not body["has_more"]:
            break
        page = body["next_page"]
    assert seen == [start + i * 86400 for i in range(5)]
