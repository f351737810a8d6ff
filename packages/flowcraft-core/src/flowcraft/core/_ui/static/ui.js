// flowcraft ui: draws the run's diagram with Mermaid and refreshes the run page while the run
// is live. Everything inserted as HTML was escaped by the server (flowcraft.core._ui.pages);
// the Mermaid text is handed to mermaid.render (securityLevel "strict"), never to innerHTML.
"use strict";

(function () {
  const run = document.getElementById("run");
  if (run === null) {
    return;
  }
  const api = run.dataset.api;
  const diagram = document.getElementById("diagram");
  const POLL_MS = 1000;
  let drawn = null;
  let serial = 0;
  let status = null;

  if (window.mermaid !== undefined) {
    window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "default" });
  }

  async function draw(text) {
    if (diagram === null || text === null || text === drawn) {
      return;
    }
    serial += 1;
    const { svg } = await window.mermaid.render("diagram-svg-" + serial, text);
    diagram.innerHTML = svg;
    diagram.setAttribute("aria-busy", "false");
    diagram.dataset.rendered = String(serial);
    drawn = text;
  }

  function update(data) {
    for (const part of ["summary", "nodes"]) {
      document.getElementById(part).innerHTML = data.html[part];
    }
    if (data.status !== status) { // forms being filled in are left alone until the status moves
      document.getElementById("actions").innerHTML = data.html.actions;
      status = data.status;
    }
    run.dataset.live = String(data.live);
    run.dataset.status = data.status;
  }

  async function refresh() {
    const response = await fetch(api, { headers: { Accept: "application/json" } });
    if (!response.ok) {
      throw new Error("flowcraft ui: " + api + " answered " + response.status);
    }
    const data = await response.json();
    update(data);
    await draw(data.mermaid);
    return data.live;
  }

  async function loop() {
    let live = true;
    try {
      live = await refresh();
    } catch (error) {
      run.dataset.error = String(error);
    }
    run.dataset.polls = String(Number(run.dataset.polls || "0") + 1);
    if (live) {
      window.setTimeout(loop, POLL_MS);
    }
  }

  status = null;
  loop();
})();
