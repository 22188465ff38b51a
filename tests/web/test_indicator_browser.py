"""The status indicator in a real headless Chromium, against the app served by uvicorn."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from crm_audit_adapters.http import BasicAuthCredentials, SignedSessionResolver, create_app
from crm_audit_transform.domain import ActivityLog, BatchResult
from crm_audit_transform.usecases import MigrationStatus, RollbackResult
from support.live_server import LiveServer, free_port

COMPANY = "company-acme"
DOCS_SCREENSHOT = Path(__file__).parents[2] / "docs" / "indicator.png"


class ScriptedStatus:
    """A status source the test steers between polls (the indicator reads nothing else).

    A fake, named as one: the browser tests pin the indicator's behaviour per status, including a
    server error, which the real use cases are not meant to produce on demand.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current: Mapping[str, Any] | Exception = {"status": "not_started"}

    def set(self, value: Mapping[str, Any] | Exception) -> None:
        with self._lock:
            self.current = value

    def status(self, company_sso_id: str) -> MigrationStatus:
        with self._lock:
            value = self.current
        if isinstance(value, Exception):
            raise value
        return MigrationStatus(company_sso_id=company_sso_id, **value)

    def migrate(self, records: Sequence[ActivityLog], *, require_binding: bool = False) -> BatchResult:
        raise NotImplementedError

    def trigger(
        self, company_sso_id: str, tenant: str | None = None, *, date_range_start: Any = None
    ) -> MigrationStatus:
        raise NotImplementedError

    def rollback(self, company_sso_id: str) -> RollbackResult:
        raise NotImplementedError


@pytest.fixture
def scripted() -> ScriptedStatus:
    return ScriptedStatus()


@pytest.fixture
def server(scripted: ScriptedStatus) -> Iterator[LiveServer]:
    sessions = SignedSessionResolver(secret=b"test-secret")
    app = create_app(
        scripted, basic_auth=BasicAuthCredentials("ops", "pw"), sessions=sessions, indicator_interval_ms=150
    )
    with LiveServer(app) as live:
        live.session_cookie = sessions.sign(COMPANY)  # type: ignore[attr-defined]
        yield live


@pytest.fixture
def page(browser: Any, server: LiveServer) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 900, "height": 560})
    context.add_cookies([{"name": "crm_session", "value": server.session_cookie, "url": server.url}])  # type: ignore[attr-defined]
    page = context.new_page()
    yield page
    context.close()


HELD_FETCHES = """
(() => {
  const realFetch = window.fetch.bind(window);
  const realSetTimeout = window.setTimeout.bind(window);
  const realJson = Response.prototype.json;
  window.__hold = false;
  window.__held = [];
  window.__pollTimers = 0;
  window.__answersRead = 0;
  window.setTimeout = (fn, ms, ...rest) => {
    if (ms === 150) window.__pollTimers++;
    return realSetTimeout(fn, ms, ...rest);
  };
  Response.prototype.json = function () {
    return realJson.call(this).finally(() => { window.__answersRead++; });
  };
  window.fetch = (...args) =>
    window.__hold ? new Promise(go => window.__held.push(() => go(realFetch(...args)))) : realFetch(...args);
  window.__release = () => window.__held.splice(0).forEach(go => go());
})();
"""
"""Held status fetches: while ``__hold`` is set each fetch waits in ``__held`` until ``__release()``;
``__pollTimers`` counts the indicator's next-poll timers (150 ms, the app's interval here) and
``__answersRead`` the answers read, so a test sees how many poll loops go on without timing them."""


def _banner(page: Any) -> Any:
    return page.locator("crm-migration-status")


class TestIndicator:
    def test_shows_progress_while_in_progress_then_hides_and_stops_when_completed(
        self, page: Any, server: LiveServer, scripted: ScriptedStatus, tmp_path: Path
    ) -> None:
        """In progress shows a polite banner with the percentage; completion hides it and ends polling."""
        scripted.set({"status": "in_progress", "progress_pct": 42.5})
        page.goto(f"{server.url}/demo/contact")
        banner = _banner(page)
        banner.wait_for(state="visible", timeout=5000)
        assert banner.get_attribute("role") == "status"
        assert banner.get_attribute("aria-live") == "polite"
        assert "42.5% done" in banner.inner_text()
        shot = page.screenshot(path=str(tmp_path / "indicator.png"))
        assert shot.startswith(b"\x89PNG")
        if os.environ.get("CRM_AUDIT_UPDATE_SCREENSHOT"):
            DOCS_SCREENSHOT.write_bytes(shot)

        scripted.set({"status": "in_progress", "progress_pct": 80})
        page.wait_for_function(
            "document.querySelector('crm-migration-status').innerText.includes('80% done')"
        )

        scripted.set({"status": "completed", "progress_pct": 100})
        banner.wait_for(state="hidden", timeout=5000)
        page.wait_for_function("document.querySelector('crm-migration-status').dataset.polling === 'stopped'")
        polls = banner.get_attribute("data-polls")
        page.wait_for_timeout(600)
        assert banner.get_attribute("data-polls") == polls

    def test_stays_hidden_and_stops_when_not_started(
        self, page: Any, server: LiveServer, scripted: ScriptedStatus
    ) -> None:
        """An account with no job never shows the banner, and the element stops polling."""
        scripted.set({"status": "not_started"})
        page.goto(f"{server.url}/demo/contact")
        page.wait_for_function("document.querySelector('crm-migration-status').dataset.polling === 'stopped'")
        assert _banner(page).is_hidden()

    def test_hides_on_server_error_and_keeps_the_page_working(
        self, page: Any, server: LiveServer, scripted: ScriptedStatus
    ) -> None:
        """A 500 from the status route hides the banner; the contact page still renders."""
        scripted.set({"status": "in_progress", "progress_pct": 10})
        page.goto(f"{server.url}/demo/contact")
        _banner(page).wait_for(state="visible", timeout=5000)
        scripted.set(RuntimeError("boom"))
        _banner(page).wait_for(state="hidden", timeout=5000)
        assert _banner(page).get_attribute("data-state") == "error"
        assert page.locator("h1").inner_text() == "Mary Lim"

    def test_hides_on_network_error(self, page: Any, server: LiveServer) -> None:
        """A status URL nobody answers (a closed port) leaves the banner hidden."""
        dead = f"http://127.0.0.1:{free_port()}/status"
        page.goto(f"{server.url}/demo/contact")
        page.evaluate(
            """dead => {
                const old = document.querySelector('crm-migration-status');
                const el = document.createElement('crm-migration-status');
                el.setAttribute('src', dead);
                el.setAttribute('interval-ms', '100');
                el.id = 'probe';
                old.replaceWith(el);
            }""",
            dead,
        )
        page.wait_for_function("Number(document.querySelector('#probe').dataset.polls) >= 2")
        probe = page.locator("#probe")
        assert probe.is_hidden()
        assert probe.get_attribute("data-state") == "error"

    def test_moved_while_its_status_is_fetched_it_still_polls_once_an_interval(
        self, page: Any, server: LiveServer, scripted: ScriptedStatus
    ) -> None:
        """Moved in the page (disconnected, connected again) mid-fetch, it keeps one poll loop, not two."""
        scripted.set({"status": "in_progress", "progress_pct": 10})
        page.add_init_script(HELD_FETCHES)
        page.goto(f"{server.url}/demo/contact")
        _banner(page).wait_for(state="visible", timeout=5000)
        page.evaluate("() => { window.__hold = true; }")
        page.wait_for_function("window.__held.length === 1")  # a poll waits for its answer
        page.evaluate("() => document.body.append(document.querySelector('crm-migration-status'))")
        page.wait_for_function("window.__held.length === 2")  # connected again: it polls at once
        scheduled, read = page.evaluate("[window.__pollTimers, window.__answersRead]")
        page.evaluate("window.__release()")
        page.wait_for_function(f"window.__answersRead === {read + 2}")  # both polls went on from there
        assert page.evaluate("window.__pollTimers") - scheduled == 1
