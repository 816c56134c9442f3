// Ancho's web site: the few things a server-rendered page cannot do alone.
// - times in the reader's own time zone
// - the run list and a run's page follow progress live (REST API, event stream)
// - the new-run form: upload, read the model's parameters, submit, show errors next to their fields
// State-changing requests carry the session's CSRF token (X-CSRF-Token); reads use the session cookie.
"use strict";

(function () {
  const csrf = document.body.dataset.csrf || "";

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

  // -- the new-run form ------------------------------------------------------------------
  function newRun(form) {
    const $ = (id) => document.getElementById(id);
    let uploaded = null; // {file: File, id} of the last upload, so resubmitting does not upload again
    let inspected = null; // the source the parameter form was built for

    const kind = () => form.querySelector("input[name=kind]:checked").value;
    form.querySelectorAll("input[name=kind]").forEach((r) => r.addEventListener("change", () => {
      form.querySelectorAll("[data-kind]").forEach((el) => { el.hidden = el.dataset.kind !== kind(); });
      clearErrors();
    }));

    function clearErrors() {
      form.querySelectorAll(".error").forEach((e) => { e.hidden = true; e.textContent = ""; });
      form.querySelectorAll("[aria-invalid]").forEach((e) => e.removeAttribute("aria-invalid"));
      form.querySelectorAll(".field.invalid").forEach((e) => e.classList.remove("invalid"));
    }

    function showError(id, message, focus) {
      const box = $(id + "-error") || $("form-error");
      box.textContent = message;
      box.hidden = false;
      const input = $(id);
      if (input) {
        input.setAttribute("aria-invalid", "true");
        const field = input.closest(".field");
        if (field) field.classList.add("invalid");
        if (focus) input.focus();
      } else if (focus) {
        box.setAttribute("tabindex", "-1");
        box.focus();
      }
    }

    const clean = (msg) => String(msg).replace(/^Value error, /, "");

    // Map an error body to the fields it names: {"detail": "text"} or [{"loc": [...], "msg"}].
    function showDetail(detail, fallback) {
      const items = Array.isArray(detail) ? detail : [{ loc: [], msg: detail }];
      let focused = false;
      for (const item of items) {
        const loc = (item.loc || []).filter((p) => p !== "body");
        const msg = clean(item.msg || detail);
        let id = fallback;
        if (loc[0] === "model") {
          const part = loc[1];
          id = part === "upload" ? (kind() === "previous" ? "upload" : "file") : ["url", "git", "ref", "entry"].includes(part) ? part : "model";
        } else if (loc[0] === "params") {
          const m = /parameter '([^']+)'/.exec(msg);
          id = m && $("param-" + m[1]) ? "param-" + m[1] : "params";
        } else if (loc[0] === "targets") {
          id = "targets";
        } else if (["sequences", "seed", "until", "max_sequences", "executor"].includes(loc[0])) {
          id = loc[0];
        }
        showError(id, loc[0] === "targets" && loc.length > 1 ? `line ${loc[1] + 1}: ${msg}` : msg, !focused);
        focused = true;
      }
    }

    async function post(url, body, isForm) {
      const headers = { "X-CSRF-Token": csrf, Accept: "application/json" };
      if (!isForm) headers["Content-Type"] = "application/json";
      let resp;
      try {
        resp = await fetch(url, { method: "POST", headers, body: isForm ? body : JSON.stringify(body), credentials: "same-origin" });
      } catch (e) {
        return { ok: false, status: 0, detail: "Could not reach the server; check your connection and try again." };
      }
      let data = null;
      try { data = await resp.json(); } catch (e) { /* not JSON */ }
      if (resp.status === 401) {
        return { ok: false, status: 401, detail: "You are signed out (the session expired or the token was revoked). Sign in again in another tab, then retry." };
      }
      return { ok: resp.ok, status: resp.status, data, detail: data && data.detail !== undefined ? data.detail : `The server answered ${resp.status}.` };
    }

    // The source as the API takes it; uploads the chosen file first (once per file).
    async function source() {
      const model = {};
      const k = kind();
      if (k === "upload") {
        const file = $("file").files[0];
        if (!file) { showError("file", "Choose an archive (.tar.gz, .tar or .zip) of your model's folder.", true); return null; }
        if (!uploaded || uploaded.file !== file) {
          const body = new FormData();
          body.append("file", file);
          const r = await post("/site/models", body, true);
          if (!r.ok) { showError("file", typeof r.detail === "string" ? r.detail : clean(r.detail[0].msg), true); return null; }
          uploaded = { file, id: r.data.id };
        }
        model.upload = uploaded.id;
      } else if (k === "previous") {
        model.upload = $("upload").value;
      } else if (k === "url") {
        const url = $("url").value.trim();
        if (!url) { showError("url", "Enter the URL of an archive (https:// or s3://).", true); return null; }
        model.url = url;
      } else {
        const git = $("git").value.trim();
        if (!git) { showError("git", "Enter the URL of a git repository.", true); return null; }
        model.git = git;
        if ($("ref").value.trim()) model.ref = $("ref").value.trim();
      }
      if ($("entry").value.trim()) model.entry = $("entry").value.trim();
      return model;
    }

    function paramInput(p) {
      const field = document.createElement("div");
      field.className = "field";
      const id = "param-" + p.name;
      const label = document.createElement("label");
      label.htmlFor = id;
      label.innerHTML = "";
      label.append(p.name + " ");
      const type = document.createElement("span");
      type.className = "type";
      type.textContent = p.type + (p.required ? ", required" : "");
      label.append(type);
      let input;
      const literal = /^Literal\[(.*)\]$/.exec(p.type);
      const choices = literal ? [...literal[1].matchAll(/'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"|([^,\s][^,]*)/g)].map((m) => (m[1] ?? m[2] ?? m[3]).trim()) : [];
      if (choices.length) { // a fixed set of values: a menu of them
        input = document.createElement("select");
        for (const v of choices) {
          const o = document.createElement("option");
          o.value = o.textContent = v;
          input.appendChild(o);
        }
        input.value = p.default === null || p.default === undefined ? choices[0] : String(p.default);
      } else if (p.type === "bool") {
        input = document.createElement("select");
        for (const v of ["true", "false"]) {
          const o = document.createElement("option");
          o.value = o.textContent = v;
          input.appendChild(o);
        }
        input.value = p.default ? "true" : "false";
      } else {
        input = document.createElement("input");
        input.type = "text";
        if (p.type === "int" || p.type === "float") input.inputMode = p.type === "int" ? "numeric" : "decimal";
        input.spellcheck = false;
        if (p.default !== null && p.default !== undefined) input.value = typeof p.default === "string" ? p.default : JSON.stringify(p.default);
        if (p.required) input.required = true;
      }
      input.id = id;
      input.name = id;
      input.dataset.param = p.name;
      input.dataset.type = p.type;
      input.dataset.initial = input.value;
      input.setAttribute("aria-describedby", `${id}-help ${id}-error`);
      const help = document.createElement("p");
      help.className = "help";
      help.id = id + "-help";
      help.textContent = p.required ? "No default: give a value." : `Default: ${p.default === null ? "none" : typeof p.default === "string" ? p.default : JSON.stringify(p.default)}`;
      const error = document.createElement("p");
      error.className = "error";
      error.id = id + "-error";
      error.hidden = true;
      field.append(label, input, help, error);
      return field;
    }

    async function inspect() {
      clearErrors();
      const model = await source();
      if (!model) return false;
      $("inspect-busy").hidden = false;
      $("inspect").disabled = true;
      try {
        const r = await post("/site/inspect", { model });
        if (!r.ok) { showDetail(r.detail, "model"); return false; }
        $("model-name").textContent = r.data.name;
        $("model-doc").textContent = r.data.doc || "";
        const box = $("params");
        box.innerHTML = "";
        if (!r.data.parameters.length) {
          const p = document.createElement("p");
          p.className = "muted";
          p.textContent = "This model has no parameters.";
          box.appendChild(p);
        }
        r.data.parameters.forEach((p) => box.appendChild(paramInput(p)));
        $("params-set").hidden = false;
        inspected = JSON.stringify(model);
        const firstParam = box.querySelector("input, select");
        if (firstParam) firstParam.focus();
        return true;
      } finally {
        $("inspect-busy").hidden = true;
        $("inspect").disabled = false;
      }
    }

    function whole(id, label, min) {
      const input = $(id);
      if (input.validity && input.validity.badInput) { showError(id, `${label}: enter a whole number.`, true); return undefined; }
      const text = input.value.trim();
      if (!text) return null;
      const v = Number(text);
      if (!Number.isInteger(v) || v < min) { showError(id, `${label}: enter a whole number of at least ${min}.`, true); return undefined; }
      return v;
    }

    $("inspect").addEventListener("click", inspect);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearErrors();
      $("submit").disabled = true;
      $("submit-busy").hidden = false;
      try {
        const model = await source();
        if (!model) return;
        if (!$("params-set").hidden && inspected !== JSON.stringify(model)) {
          // another model than the one whose parameters are shown: show its own, let the person check them
          if (await inspect()) showError("form", "The model changed since its parameters were read: check them, then start the run again.", false);
          return;
        }
        const body = { model, params: {} };
        if (!$("params-set").hidden) {
          $("params").querySelectorAll("[data-param]").forEach((input) => {
            if (input.dataset.type === "str") {
              // a text as typed; emptied, it is the empty text (left empty without a default, it is missing)
              if (input.value !== "" || input.dataset.initial !== "") body.params[input.dataset.param] = input.value;
              return;
            }
            const v = input.value.trim();
            if (v !== "") body.params[input.dataset.param] = v;
          });
        }
        const sequences = whole("sequences", "Sequences", 1);
        const seed = whole("seed", "Seed", 0);
        const max = whole("max_sequences", "At most", 1);
        if (sequences === undefined || seed === undefined || max === undefined) return;
        if (sequences !== null) body.sequences = sequences;
        if (seed !== null) body.seed = seed;
        if (max !== null) body.max_sequences = max;
        body.targets = $("targets").value.split("\n").map((t) => t.trim()).filter(Boolean);
        if ($("until").value.trim()) body.until = $("until").value.trim();
        if ($("executor")) body.executor = $("executor").value;
        const r = await post("/site/runs", body);
        if (!r.ok) { showDetail(r.detail, "form"); return; }
        window.location.assign(r.data.url);
      } finally {
        $("submit").disabled = false;
        $("submit-busy").hidden = true;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    localTimes(document);
    const list = document.querySelector("[data-live-list]");
    if (list) liveList(list);
    const live = document.querySelector("[data-run-live]");
    if (live && live.dataset.runLive) liveRun(live);
    const form = document.getElementById("new-run");
    if (form) newRun(form);
  });
})();
