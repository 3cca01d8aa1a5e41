"""The Airflow UI in a real browser: what a user sees of the provider, checked and photographed.

Drives Debian's headless Chromium through Selenium and chromedriver (no browser download): signs in,
opens the ``claude_batch`` connection forms and checks our labels and extra fields are there and the
hidden fields are not, triggers the nightly DAG from its params form with the dry-run switch on, and
opens the finished runs, a deferred task's log and the "Claude batches" page (the package's plugin,
in the UI's frame). Screenshots go to ``docs/screenshots/``. The check
goes on past a broken promise to see the rest, then fails naming every one.

Used by ``python -m deploy.topology_check --ui``; needs a deployment that is up.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from airflow_claude_batch import DEFAULT_CONN_ID
from deploy.airflow_api import AirflowApi, CheckFailed
from deploy.checks import PromisedForm

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# No sandbox as root, and no background traffic to hosts outside this machine.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
WAIT_SECONDS = 60.0
RUN_TIMEOUT_SECONDS = 600.0
# The nightly DAG's params form: the titles a user must see.
PARAM_TITLES = ("Input file", "Model", "Max output tokens", "Budget (USD)", "Requeue rounds", "Dry run")
NIGHTLY_TASKS = ("classify_tickets.build", "classify_tickets.round_0.wait", "classify_tickets.report")
#: The plugin's page in Airflow's UI (``airflow_claude_batch/ui/plugin.py``).
CLAUDE_BATCHES_ROUTE = "claude-batches"


@dataclass(frozen=True)
class UiContext:
    """What the UI check needs to know about the deployment it looks at.

    :param api_url: the API server's root (the UI is served there).
    :param username: a user of the SimpleAuthManager; ``password`` is its password.
    :param dag_id: the nightly DAG.
    :param finished_run_id: a finished, successful run of it to open.
    :param emulator_url: the Base URL the default connection must show.
    :param api_key: the connection's key, which no page may show.
    :param emulator_stats: returns the emulator's counters (a dry run must create no batch).
    :param alive: raises when a process of the deployment has died.
    """

    api_url: str
    username: str
    password: str
    dag_id: str
    finished_run_id: str
    emulator_url: str
    api_key: str
    emulator_stats: Callable[[], dict[str, Any]]
    alive: Callable[[], None]


class Problems:
    """Promises the UI did not keep."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def expect(self, condition: bool, problem: str) -> None:
        if not condition:
            self.items.append(problem)


@contextmanager
def chromium(width: int = 1440, height: int = 1500) -> Iterator[WebDriver]:
    """Start headless Chromium with a fresh profile under chromedriver; quit it afterwards."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*CHROMIUM_FLAGS, f"--window-size={width},{height}", f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=ChromeService(executable_path=CHROMEDRIVER))
        try:
            yield driver
        finally:
            driver.quit()


class Browser:
    """The few things the check does with a page, with waits and failures that say what was missing."""

    def __init__(self, driver: WebDriver, base_url: str, screenshots: Path) -> None:
        self.driver = driver
        self.base_url = base_url.rstrip("/")
        self.screenshots = screenshots
        self.saved: list[str] = []

    def open(self, path: str) -> None:
        self.driver.get(f"{self.base_url}{path}")

    def wait_for(
        self, condition: Callable[[WebDriver], Any], what: str, timeout: float = WAIT_SECONDS
    ) -> Any:
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.5).until(condition)
        except TimeoutException as exc:
            shot = self.screenshot("problem-timeout")
            raise CheckFailed(
                f"UI: {what} not seen within {timeout:.0f} s at {self.driver.current_url} ({shot})"
            ) from exc

    def body_text(self) -> str:
        return self.driver.find_element(By.TAG_NAME, "body").text

    def wait_for_text(self, text: str, timeout: float = WAIT_SECONDS) -> None:
        self.wait_for(lambda driver: text in self.body_text(), f"the text {text!r}", timeout)

    def click_button(self, label: str, within: WebElement | None = None) -> None:
        """Click the visible button whose text is ``label``."""
        scope = within or self.driver

        def button(driver: WebDriver) -> WebElement | bool:
            for candidate in scope.find_elements(By.XPATH, ".//button"):
                if candidate.text.strip() == label and candidate.is_displayed():
                    return candidate
            return False

        self.wait_for(button, f"a {label!r} button").click()

    def dialog(self, title: str) -> WebElement:
        def found(driver: WebDriver) -> WebElement | bool:
            for dialog in driver.find_elements(By.XPATH, "//*[@role='dialog']"):
                if dialog.is_displayed() and title in dialog.text:
                    return dialog
            return False

        return self.wait_for(found, f"the {title!r} dialog")

    def open_section(self, dialog: WebElement, title: str) -> None:
        """Expand a closed accordion section of a dialog (``Standard Fields``, ``Extra Fields``)."""
        for button in dialog.find_elements(By.XPATH, ".//button"):
            if button.text.strip() == title:
                if button.get_attribute("aria-expanded") != "true":
                    button.click()
                self.wait_for(lambda d, b=button: b.get_attribute("aria-expanded") == "true", f"{title} open")
                time.sleep(0.5)  # the accordion's opening animation
                return
        raise CheckFailed(f"UI: the dialog has no {title!r} section")

    def screenshot(self, name: str) -> str:
        self.screenshots.mkdir(parents=True, exist_ok=True)
        path = self.screenshots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        self.saved.append(str(path))
        return str(path)


def is_gone(element: WebElement) -> bool:
    """Whether ``element`` has left the page or is hidden."""
    try:
        return not element.is_displayed()
    except StaleElementReferenceException:
        return True


def lines_of(element: WebElement) -> set[str]:
    """The element's visible text, one stripped line per entry."""
    return {line.strip() for line in element.text.splitlines() if line.strip()}


def run_path(dag_id: str, run_id: str) -> str:
    return f"/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}"


def sign_in(browser: Browser, username: str, password: str) -> None:
    browser.open("/auth/login")
    user = browser.wait_for(
        lambda d: next((e for e in d.find_elements(By.NAME, "username") if e.is_displayed()), False),
        "the sign-in form",
    )
    user.send_keys(username)
    browser.driver.find_element(By.NAME, "password").send_keys(password)
    browser.driver.find_element(By.CSS_SELECTOR, "button[type='submit']").click()
    browser.wait_for(lambda d: "/auth/login" not in d.current_url, "the page after signing in")


def check_connection_edit_form(browser: Browser, context: UiContext, problems: Problems) -> None:
    """The default connection's edit form: our labels, no hidden field, the Base URL, the key masked."""
    promised = PromisedForm.from_provider_info()
    browser.open("/connections")
    browser.wait_for_text(DEFAULT_CONN_ID)
    row = browser.driver.find_element(By.XPATH, f"//tr[.//*[normalize-space(text())='{DEFAULT_CONN_ID}']]")
    row.find_element(By.CSS_SELECTOR, "button[aria-label='Edit Connection']").click()
    dialog = browser.dialog("Edit Connection")
    browser.open_section(dialog, "Standard Fields")
    lines = lines_of(dialog)
    for label in promised.standard_labels:
        problems.expect(label in lines, f"the {DEFAULT_CONN_ID} edit form lacks the label {label!r}")
    for label in promised.hidden_labels:
        problems.expect(label not in lines, f"the {DEFAULT_CONN_ID} edit form shows the field {label!r}")
    values = [field.get_attribute("value") for field in dialog.find_elements(By.TAG_NAME, "input")]
    problems.expect(
        context.emulator_url in values, f"the Base URL field does not show {context.emulator_url}"
    )
    problems.expect(context.api_key not in browser.driver.page_source, "a connection page shows the API key")
    browser.screenshot("connection-edit")


def check_connection_add_form(browser: Browser, problems: Problems) -> None:
    """The add form with our type chosen: every label and extra field of ``get_provider_info``."""
    promised = PromisedForm.from_provider_info()
    browser.open("/connections")
    browser.wait_for_text(DEFAULT_CONN_ID)
    browser.click_button("Add Connection")
    dialog = browser.dialog("Add Connection")
    combo = dialog.find_element(By.XPATH, ".//input[@role='combobox']")
    combo.click()
    combo.send_keys(promised.type_name)
    option = browser.wait_for(
        lambda d: next(
            (
                o
                for o in d.find_elements(By.XPATH, "//*[@role='option']")
                if o.text.strip() == promised.type_name
            ),
            False,
        ),
        f"the connection type {promised.type_name!r} in the list",
    )
    option.click()
    browser.open_section(dialog, "Standard Fields")
    standard = lines_of(dialog)
    browser.open_section(dialog, "Extra Fields")
    browser.wait_for_text(promised.extra_labels[-1])
    extra = lines_of(dialog)
    for label in promised.standard_labels:
        problems.expect(label in standard, f"the new {promised.type_name} form lacks the label {label!r}")
    for label in promised.extra_labels:
        problems.expect(label in extra, f"the new {promised.type_name} form lacks the extra field {label!r}")
    for label in promised.hidden_labels:
        problems.expect(label not in standard, f"the new {promised.type_name} form shows the field {label!r}")
    browser.screenshot("connection-extra-fields")


def trigger_dry_run_from_form(
    browser: Browser, api: AirflowApi, context: UiContext, problems: Problems
) -> str | None:
    """Open the params form, check it, switch on the dry run, trigger; return the new run's id."""
    known = {run["dag_run_id"] for run in api.dag_runs(context.dag_id)}
    browser.open(f"/dags/{quote(context.dag_id)}")
    browser.click_button("Trigger")
    dialog = browser.dialog("Run Parameters")
    lines = lines_of(dialog)
    for title in PARAM_TITLES:
        problems.expect(title in lines, f"the params form lacks {title!r}")
    trigger = next(b for b in dialog.find_elements(By.XPATH, ".//button") if b.text.strip() == "Trigger")
    if trigger.get_attribute("disabled") is not None:
        empty = [
            field.get_attribute("name").removeprefix("element_")
            for field in dialog.find_elements(By.XPATH, ".//input[starts-with(@name, 'element_')]")
            if field.get_attribute("type") in ("text", "number") and not field.get_attribute("value")
        ]
        problems.expect(
            False,
            f"the params form's Trigger button is disabled with the DAG's default values; empty fields the "
            f"form then requires: {empty} (an optional Param needs type ['null', 'string'] and default None)",
        )
        browser.screenshot("problem-trigger-form-defaults")
        # Fill the input file with what an empty field stands for, to check the rest of the flow.
        dialog.find_element(By.NAME, "element_input_path").send_keys(
            str(Path(__file__).resolve().parent.parent / "dags" / "data" / "tickets" / "sample.jsonl")
        )
    switch = dialog.find_element(By.NAME, "element_dry_run")
    browser.driver.execute_script(
        "arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();", switch
    )
    browser.wait_for(lambda d: switch.is_selected(), "the dry-run switch on")
    browser.screenshot("trigger-form")
    batches_before = context.emulator_stats()["batches_created"]
    trigger.click()
    browser.wait_for(lambda d: is_gone(dialog), "the params form closing after Trigger")
    run = _wait_for_new_run(api, context, known)
    if run is None:
        problems.expect(False, "no run started after Trigger was clicked in the params form")
        return None
    problems.expect(run["state"] == "success", f"the dry run {run['dag_run_id']} ended {run['state']!r}")
    problems.expect(run.get("conf", {}).get("dry_run") is True, f"the dry run's conf is {run.get('conf')}")
    problems.expect(
        context.emulator_stats()["batches_created"] == batches_before, "the dry run created a batch"
    )
    return run["dag_run_id"]


def _wait_for_new_run(api: AirflowApi, context: UiContext, known: set[str]) -> dict[str, Any] | None:
    """Wait for a run not in ``known`` to end and return it; ``None`` if none started at all."""
    started = time.monotonic()
    while True:
        context.alive()
        new = [run for run in api.dag_runs(context.dag_id) if run["dag_run_id"] not in known]
        if new and new[0]["state"] in ("success", "failed"):
            return new[0]
        waited = time.monotonic() - started
        if not new and waited > WAIT_SECONDS:
            return None
        if waited > RUN_TIMEOUT_SECONDS:
            raise CheckFailed(f"UI: the run triggered from the params form did not end in {waited:.0f} s")
        time.sleep(2)


def check_run_pages(
    browser: Browser, api: AirflowApi, context: UiContext, dry_run_id: str | None, problems: Problems
) -> None:
    """The finished runs' pages show success and the pipeline's tasks; the wait log shows the deferral."""
    runs = [("run", context.finished_run_id)] + ([("dry-run", dry_run_id)] if dry_run_id else [])
    for name, run_id in runs:
        browser.open(run_path(context.dag_id, run_id))
        browser.wait_for_text(NIGHTLY_TASKS[-1])
        text = browser.body_text()
        problems.expect(
            run_id in text and "Success" in text, f"the page of run {run_id} does not show Success"
        )
        for task_id in NIGHTLY_TASKS:
            problems.expect(task_id in text, f"the page of run {run_id} does not list {task_id}")
        browser.screenshot(name)
    browser.open(f"{run_path(context.dag_id, context.finished_run_id)}/tasks/{NIGHTLY_TASKS[1]}/mapped/0")
    browser.wait_for_text("Trigger fired event")
    text = browser.body_text()
    problems.expect("Deferring" in text, "the wait task's log does not show it deferring")
    browser.screenshot("wait-task-log")


def check_claude_batches_page(browser: Browser, context: UiContext, problems: Problems) -> None:
    """The plugin's page inside Airflow's UI: the finished run listed with its figures, both charts."""
    browser.open(f"/plugin/{CLAUDE_BATCHES_ROUTE}")
    frame = browser.wait_for(
        lambda d: next((f for f in d.find_elements(By.TAG_NAME, "iframe") if f.is_displayed()), False),
        "the Claude batches page's frame in the UI",
    )
    browser.driver.switch_to.frame(frame)
    try:
        browser.wait_for_text(context.finished_run_id)
        text = browser.body_text()
        for heading in ("Claude batches", "Cost and savings per night", "Outcomes per run"):
            problems.expect(heading in text, f"the Claude batches page lacks {heading!r}")
        row = browser.driver.find_element(By.CSS_SELECTOR, f"tr[data-run='{context.finished_run_id}']")
        cells = [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        problems.expect(context.dag_id in cells, f"the page's row of the run does not name {context.dag_id}")
        problems.expect(any(c.startswith("$") for c in cells), "the page's row of the run shows no cost")
        links = {a.text: a.get_attribute("href") for a in row.find_elements(By.TAG_NAME, "a")}
        problems.expect("report" in links, "the page's row of the run has no link to its report.html")
        problems.expect(
            run_path(context.dag_id, context.finished_run_id) in (links.get("DAG run") or ""),
            f"the page's DAG run link is {links.get('DAG run')!r}",
        )
        problems.expect(
            len(browser.driver.find_elements(By.TAG_NAME, "svg")) >= 2, "the page draws fewer than 2 charts"
        )
        problems.expect(context.api_key not in browser.driver.page_source, "the page shows the API key")
    finally:
        browser.driver.switch_to.default_content()
    browser.screenshot("claude-batches")


def run_ui_check(context: UiContext, api: AirflowApi, screenshots: Path) -> dict[str, Any]:
    """Sign in, check the connection forms, trigger a dry run from the params form, open the runs.

    :return: the screenshots taken and the dry run's id.
    :raises CheckFailed: naming every promise the UI did not keep.
    """
    problems = Problems()
    # Screenshots of problems are named problem-*.png; those of an earlier run must not outlive a fix.
    for stale in screenshots.glob("problem-*.png"):
        stale.unlink()
    with chromium() as driver:
        browser = Browser(driver, context.api_url, screenshots)
        sign_in(browser, context.username, context.password)
        check_connection_edit_form(browser, context, problems)
        check_connection_add_form(browser, problems)
        dry_run_id = trigger_dry_run_from_form(browser, api, context, problems)
        check_run_pages(browser, api, context, dry_run_id, problems)
        check_claude_batches_page(browser, context, problems)
    if problems.items:
        raise CheckFailed("UI: " + "; ".join(problems.items) + f" (screenshots in {screenshots})")
    return {"screenshots": browser.saved, "dry_run_id": dry_run_id}
