// A study's page: follow its progress over the REST API's event stream, and reload the page when the study ends
// (the server draws the points table and pictures). Without JavaScript the page shows the state when it was loaded.
"use strict";
(() => {
  const fmt = (n) => Number(n).toLocaleString("en-US");
  function follow(section) {
    const id = section.dataset.studyLive;
    const bar = section.querySelector("[data-progress]");
    const note = section.querySelector("[data-live-note]");
    const announce = document.getElementById("status-announce");
    let ended = false;
    const source = new EventSource(`/api/v1/studies/${encodeURIComponent(id)}/events`);
    source.addEventListener("progress", (ev) => {
      const s = JSON.parse(ev.data);
      const percent = s.total ? (100 * s.done) / s.total : 0;
      bar.setAttribute("aria-valuenow", percent.toFixed(1));
      bar.firstElementChild.style.width = `${percent.toFixed(1)}%`;
      bar.firstElementChild.className = `bar status-${s.status}`;
      section.querySelector("[data-points]").textContent = `${fmt(s.points_finished)} of ${fmt(s.points)} points ended`;
      section.querySelector("[data-count]").textContent = `${fmt(s.done)} of ${fmt(s.total)} sequences`;
      const badge = document.querySelector(".heading [data-status]");
      if (badge && badge.textContent !== s.status) {
        badge.textContent = s.status;
        badge.className = `badge status-${s.status}`;
      }
    });
    source.addEventListener("end", (ev) => {
      ended = true;
      if (announce) announce.textContent = `The study is ${JSON.parse(ev.data).status}; loading its results.`;
      source.close();
      setTimeout(() => window.location.reload(), 300);
    });
    source.onerror = () => { if (!ended && note) note.textContent = "Lost the connection to the server; retrying…"; };
  }
  document.addEventListener("DOMContentLoaded", () => {
    const live = document.querySelector("[data-study-live]");
    if (live && live.dataset.studyLive) follow(live);
  });
})();
