// <crm-migration-status>: a polite "importing CRM history…" banner for a contact page.
// It polls the tenant-scoped status route (the session cookie names the tenant; the page sends no
// company id), shows the progress while the migration is in progress, and hides itself on
// not_started, completed and on any error, so the page around it never depends on it.
// Attributes: src (status URL, default /iag/v1/crm_migration/status), interval-ms (default 15000).
(() => {
  "use strict";
  const FINISHED = new Set(["completed", "not_started"]);

  class CrmMigrationStatus extends HTMLElement {
    connectedCallback() {
      this.hidden = true;
      this.setAttribute("role", "status");
      this.setAttribute("aria-live", "polite");
      this._stopped = false;
      this._poll(this._startLoop());
    }

    disconnectedCallback() {
      this._stop();
    }

    get src() {
      return this.getAttribute("src") || "/iag/v1/crm_migration/status";
    }

    get intervalMs() {
      const value = Number.parseInt(this.getAttribute("interval-ms") || "", 10);
      return Number.isFinite(value) && value > 0 ? value : 15000;
    }

    // Each start (connected, or connected again after a move) and each stop opens a new loop; a
    // poll of an older one that was waiting for its answer then ends there instead of polling on
    // beside the new loop (a move mid-fetch made two loops, each move one more).
    _startLoop() {
      this._loop = (this._loop || 0) + 1;
      return this._loop;
    }

    _stop() {
      this._stopped = true;
      this._startLoop();
      clearTimeout(this._timer);
      this.dataset.polling = "stopped";
    }

    async _poll(loop) {
      if (this._stopped || loop !== this._loop) return;
      this.dataset.polling = "active";
      this.dataset.polls = String(Number(this.dataset.polls || 0) + 1);
      let status = null;
      try {
        const response = await fetch(this.src, { credentials: "same-origin", headers: { Accept: "application/json" } });
        if (response.ok) status = await response.json();
      } catch (_error) {
        status = null; // network error: stay hidden, try again next tick
      }
      if (loop !== this._loop) return; // stopped, or moved and polling in a newer loop, meanwhile
      this._render(status);
      if (status && FINISHED.has(status.status)) {
        this._stop();
        return;
      }
      this._timer = setTimeout(() => this._poll(loop), this.intervalMs);
    }

    _render(status) {
      const inProgress = status !== null && status.status === "in_progress";
      this.dataset.state = status === null ? "error" : String(status.status);
      if (!inProgress) {
        this.hidden = true;
        this.textContent = "";
        return;
      }
      const pct = Math.max(0, Math.min(100, Number(status.progress_pct) || 0));
      const label = pct.toFixed(pct % 1 === 0 ? 0 : 1);
      this.innerHTML = "";
      const title = document.createElement("strong");
      title.textContent = "Importing CRM activity history";
      const detail = document.createElement("span");
      detail.className = "crm-migration-status__progress";
      detail.textContent = ` — ${label}% done. Older activities appear here as they are imported.`;
      const bar = document.createElement("progress");
      bar.max = 100;
      bar.value = pct;
      bar.setAttribute("aria-label", "CRM history import progress");
      this.append(title, detail, bar);
      this.hidden = false;
    }
  }

  if (!customElements.get("crm-migration-status")) {
    customElements.define("crm-migration-status", CrmMigrationStatus);
  }
})();
