// Ancho's web site: the few things a server-rendered page cannot do alone.
// - times in the reader's own time zone
// - the run list and a run's page follow progress live (REST API, event stream)
// - the new-run form says it is busy (the form itself, its parameters and errors, are the server's)
// Reads use the session cookie; the forms that change something carry the session's CSRF token.
"use strict";

(function () {
  function fmtNum(v) {
    if (v === null || v === undefined) return "–";
    if (Number.isInteger(v)) return v.toLocaleString("en-US");
    const a = Math.abs(v);
    if (a >= 1e6 || (a > 0 && a < 1e-3)) return v.toExponential(3);
    return v.toLocaleString("en-US", { maximumSignificantDigits: 4 });
  }

  function fmtDuration(s) {
    s = Math.max(0, Math.round(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    const pad = (x) => String(x).padStart(2, "0");
    return h ? `${h}h ${pad(m)}m` : m ? `${m}m ${pad(r)}s` : `${r}s`;
  }

  function localTimes(root) {
    root.querySelectorAll("time[data-ts]").forEach((t) => {
      const d = new Date(parseFloat(t.dataset.ts) * 1000);
      t.title = t.textContent;
      t.textContent = d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
    });
  }

  function setProgress(el, done, total, status) {
    const bar = el.querySelector("[data-progress]");
    if (!bar) return;
    const pct = total ? (100 * done) / total : status === "succeeded" ? 100 : 0;
    bar.setAttribute("aria-valuenow", pct.toFixed(1));
    const inner = bar.querySelector(".bar");
    inner.style.width = pct.toFixed(1) + "%";
    inner.className = "bar status-" + status;
  }

  function setBadge(el, status) {
    const badge = el.querySelector("[data-status]");
    if (badge) {
      badge.textContent = status;
      badge.className = "badge status-" + status;
    }
  }

  // -- the run list: refresh rows of runs still queued or running -----------------------
  function liveList(table) {
    const active = () => [...table.querySelectorAll("tr[data-run]")].filter((r) => ["queued", "running"].includes(r.dataset.statusValue));
    async function tick() {
      if (!active().length) return;
      try {
        const q = new URLSearchParams({ limit: table.dataset.liveList });
        const resp = await fetch("/api/v1/runs?" + q, { headers: { Accept: "application/json" }, credentials: "same-origin" });
        if (resp.ok) {
          const byId = new Map((await resp.json()).map((r) => [r.id, r]));
          for (const row of active()) {
            const r = byId.get(row.dataset.run);
            if (!r) continue;
            row.dataset.statusValue = r.status;
            setBadge(row, r.status);
            setProgress(row, r.progress.done, r.progress.total, r.status);
            row.querySelector("[data-count]").textContent = `${fmtNum(r.progress.done)} / ${fmtNum(r.progress.total)}`;
            const end = r.finished || (r.status === "running" ? Date.now() / 1000 : null);
            row.querySelector("[data-duration]").textContent = r.started && end ? fmtDuration(end - r.started) : "–";
            if (r.finished) {
              const cell = row.querySelector("[data-finished]");
              cell.innerHTML = "";
              const t = document.createElement("time");
              t.dataset.ts = r.finished;
              cell.appendChild(t);
              t.textContent = "";
              localTimes(cell);
            }
          }
        }
      } catch (e) { /* the server may be restarting: try again next time */ }
      setTimeout(tick, 2000);
    }
    setTimeout(tick, 1500);
  }

  // -- a run's page: follow its event stream --------------------------------------------
  const SUMMARISING = "every sequence is done; summarising the results…";
  function liveRun(section) {
    const id = section.dataset.runLive;
    const count = section.querySelector("[data-count]");
    const rate = section.querySelector("[data-rate]");
    const eta = section.querySelector("[data-eta]");
    const failures = section.querySelector("[data-failures]");
    let first = null; // {t, done}: rates are measured from this page's first event
    let ended = false;
    const source = new EventSource(`/api/v1/runs/${encodeURIComponent(id)}/events`);
    const note = section.querySelector("[data-live-note]");
    const noteText = note ? note.textContent : "";
    const announce = document.getElementById("status-announce");
    let lastStatus = null;
    source.addEventListener("progress", (ev) => {
      const s = JSON.parse(ev.data);
      if (note) note.textContent = noteText; // connected (again)
      if (announce && lastStatus !== null && s.status !== lastStatus) announce.textContent = `The run is ${s.status}.`;
      lastStatus = s.status;
      const now = performance.now() / 1000;
      setProgress(section, s.done, s.total, s.status);
      setBadge(document.querySelector(".heading"), s.status);
      count.textContent = `${fmtNum(s.done)} of ${fmtNum(s.total)} sequences`;
      failures.textContent = s.failures ? `${fmtNum(s.failures)} failed` : "";
      if (s.status !== "running") { rate.textContent = ""; eta.textContent = ""; first = null; return; }
      if (s.total && s.done >= s.total) { eta.textContent = SUMMARISING; return; } // (the run ends with its summary)
      if (!first || s.done < first.done) { first = { t: now, done: s.done }; return; }
      const dt = now - first.t;
      if (dt > 0.5 && s.done > first.done) {
        const r = (s.done - first.done) / dt;
        rate.textContent = `${fmtNum(Math.round(r))} sequences/s`;
        eta.textContent = s.total > s.done ? `about ${fmtDuration((s.total - s.done) / r)} left` : "";
      }
    });
    source.addEventListener("end", (ev) => {
      ended = true;
      if (announce) announce.textContent = `The run is ${JSON.parse(ev.data).status}; loading its results.`;
      source.close();
      // the results (summary, plots, downloads) are drawn by the server: show the finished page
      setTimeout(() => window.location.reload(), 300);
    });
    source.onerror = () => {
      if (ended) return;
      if (note) note.textContent = "Lost the connection to the server; retrying…";
    };
  }

  // -- the new-run form: the server does the work (it posts itself); this says it is busy and stops double posts --
  function newRun(form) {
    let sent = false;
    form.addEventListener("submit", (ev) => {
      if (sent) { ev.preventDefault(); return; }
      sent = true;
      const busy = ev.submitter && document.getElementById(ev.submitter.dataset.busy || "submit-busy");
      if (busy) busy.hidden = false;
    });
    window.addEventListener("pageshow", () => { sent = false; }); // back from another page: the form works again
  }

  document.addEventListener("DOMContentLoaded", () => {
    localTimes(document);
    const list = document.querySelector("[data-live-list]");
    if (list) liveList(list);
    const live = document.querySelector("[data-run-live]");
    if (live && live.dataset.runLive) liveRun(live);
    const form = document.getElementById("new-run") || document.getElementById("new-study");
    if (form) newRun(form);
  });
})();
