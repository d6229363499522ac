// The run report: reads the JSON in #report-data and draws the summary, a
// virtualised timeline (only the rows in view exist in the DOM, so 10,000
// tasks scroll smoothly) and a sortable, filterable, paged table.
// Text is only ever set with textContent: task names and logs are data.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const FAILED = new Set(["EXECUTOR_ERROR", "SYSTEM_ERROR", "NOT_SUBMITTED", "UNKNOWN"]);
  const FINAL = new Set(["COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "NOT_SUBMITTED", "NOT_RUN", "PREEMPTED"]);
  const ROW = 18, OVERSCAN = 10, PAGE = 100;
  const $ = (id) => document.getElementById(id);

  function colour(state) {
    if (state === "COMPLETE") return "ok";
    if (FAILED.has(state)) return "failed";
    if (state === "CANCELED" || state === "CANCELING" || state === "NOT_RUN") return "canceled";
    return "active";
  }
  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function secs(s) {
    if (s === null || s === undefined) return "";
    if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + " s";
    const m = Math.floor(s / 60), h = Math.floor(m / 60);
    return h ? `${h} h ${m % 60} min` : `${m} min ${Math.round(s % 60)} s`;
  }
  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  }

  // Each task gets its phases once: [state, from, to], plus where it ends.
  const end = data.wall;
  const tasks = data.tasks.map((t, index) => {
    const events = t.e.slice();
    if (t.g !== undefined) events.unshift(["STAGING", t.g]);
    const phases = [];
    let last = events.length ? events[events.length - 1][1] : 0;
    const finished = events.length && FINAL.has(events[events.length - 1][0]);
    for (let k = 0; k < events.length; k++) {
      const [state, at] = events[k];
      if (FINAL.has(state) && k === events.length - 1) { last = at; break; }
      const next = k + 1 < events.length ? events[k + 1][1] : end;
      phases.push([state, at, next]);
      last = next;
    }
    const start = events.length ? events[0][1] : 0;
    const spent = (name) => phases.filter((p) => p[0] === name).reduce((a, p) => a + p[2] - p[1], 0);
    return {
      index, raw: t, name: t.n, id: t.i, state: t.s, phases, start, stop: last, finished,
      exit: (t.x || []).map((c) => (c === null ? "-" : c)).join(","),
      queued: spent("QUEUED"), running: spent("RUNNING"), total: last - start,
    };
  });
  const byStart = tasks.slice().sort((a, b) => a.start - b.start || a.index - b.index);

  // -- header and summary --------------------------------------------------
  $("title").textContent = data.title;
  $("meta").textContent = `started ${data.started} UTC · wall time ${secs(data.wall)} · ${data.outcome}`;
  if (data.error) { $("run-error").hidden = false; $("run-error").textContent = data.error; }

  function card(title, lines) {
    const c = el("div", "card");
    c.appendChild(el("h3", null, title));
    for (const line of lines) {
      const d = el("div");
      if (Array.isArray(line)) {
        d.appendChild(el("span", "swatch c-" + colour(line[0])));
        d.appendChild(document.createTextNode(`${line[0]}: ${line[1]}`));
      } else d.textContent = line;
      c.appendChild(d);
    }
    return c;
  }
  const summary = $("summary");
  summary.appendChild(card(`Tasks (${tasks.length})`, Object.entries(data.states)));
  summary.appendChild(card("Time", [
    `wall ${secs(data.wall)}`,
    `queued: total ${secs(data.queued.total)}, mean ${secs(data.queued.mean)}`,
    `running: total ${secs(data.running.total)}, mean ${secs(data.running.mean)}`,
  ]));
  const tr = data.transfers;
  summary.appendChild(card("Inputs", [
    `${tr.inputs} staged, ${tr.reused} without an upload`,
    `hashed ${bytes(tr.hashed)} (${tr.filesFound} files, ${tr.filesCached} from cache)`,
    `uploaded ${bytes(tr.uploaded)} (${tr.filesUploaded} files)`,
    `already present ${bytes(tr.present)} (${tr.filesPresent})`,
    `dedup ${tr.dedup === null ? "-" : (tr.dedup * 100).toFixed(1) + " %"}`,
  ]));
  summary.appendChild(card("TES requests", data.requests
    ? [`sent ${data.requests[0]}`, `retries ${data.requests[1]}`] : ["not recorded"]));

  // -- state filter and legend ------------------------------------------------
  const filter = $("state-filter");
  for (const state of Object.keys(data.states)) filter.appendChild(el("option", null, state)).value = state;
  const legend = $("legend");
  for (const [name, cls] of [["staging + submit", "ph-STAGING"], ["queued", "ph-QUEUED"],
    ["initializing", "ph-INITIALIZING"], ["complete", "c-ok"], ["failed", "c-failed"],
    ["canceled", "c-canceled"], ["in flight", "c-active"]]) {
    const s = el("span", "legend-" + name.split(" ")[0]);
    s.appendChild(el("span", "swatch " + cls));
    s.appendChild(document.createTextNode(name));
    legend.appendChild(s);
  }

  // -- timeline ------------------------------------------------------------------
  let shown = byStart;
  const view = $("timeline"), spacer = $("tl-spacer");
  const span = Math.max(end, 1e-3);
  const pct = (t) => (100 * t / span).toFixed(3) + "%";
  function axis() {
    const ax = $("tl-axis");
    ax.textContent = "";
    for (let k = 0; k <= 5; k++) {
      const s = el("span", null, secs(span * k / 5));
      s.style.left = (20 * k) + "%";
      if (k === 5) s.style.transform = "translateX(-100%)";
      if (k === 0) s.style.transform = "none";
      ax.appendChild(s);
    }
  }
  function row(task, top) {
    const r = el("div", "tl-row");
    r.style.top = top + "px";
    r.dataset.index = task.index;
    r.dataset.state = task.state;
    r.title = `${task.name} (${task.id || "not submitted"}): ${task.state}`;
    r.appendChild(el("div", "tl-name", task.name));
    const track = el("div", "tl-track");
    for (const [state, from, to] of task.phases) {
      const cls = state === "RUNNING" ? "c-" + colour(task.state) : "ph-" + state;
      const s = el("span", "seg " + cls);
      s.style.left = pct(from);
      s.style.width = pct(Math.max(to - from, 0));
      track.appendChild(s);
    }
    if (task.finished) {
      const f = el("span", "seg final c-" + colour(task.state));
      f.style.left = pct(task.stop);
      track.appendChild(f);
    }
    r.appendChild(track);
    if (selected === task.index) r.classList.add("selected");
    return r;
  }
  let drawn = [-1, -1];
  function draw(force) {
    const first = Math.max(0, Math.floor(view.scrollTop / ROW) - OVERSCAN);
    const last = Math.min(shown.length, Math.ceil((view.scrollTop + view.clientHeight) / ROW) + OVERSCAN);
    if (!force && first === drawn[0] && last === drawn[1]) return;
    drawn = [first, last];
    const frag = document.createDocumentFragment();
    for (let k = first; k < last; k++) frag.appendChild(row(shown[k], k * ROW));
    spacer.replaceChildren(frag);
  }
  function relayout() {
    spacer.style.height = (shown.length * ROW) + "px";
    $("tl-count").textContent = `${shown.length} of ${tasks.length} tasks`;
    view.dataset.rows = shown.length;
    draw(true);
  }
  view.addEventListener("scroll", () => draw(false), { passive: true });
  window.addEventListener("resize", () => draw(true));

  // -- detail ------------------------------------------------------------------
  let selected = null;
  function show(task) {
    selected = task.index;
    const d = $("detail");
    d.hidden = false;
    $("detail-name").textContent = task.name;
    const fields = $("detail-fields");
    fields.textContent = "";
    const add = (k, v) => { fields.appendChild(el("dt", null, k)); fields.appendChild(el("dd", null, v)); };
    add("id", task.id || "(not submitted)");
    const st = el("dd", "t-" + colour(task.state), task.state + (task.raw.u ? " (run stopped before it ended)" : ""));
    fields.appendChild(el("dt", null, "state")); fields.appendChild(st);
    if (task.exit) add("exit codes", task.exit);
    add("phases", task.phases.map((p) => `${p[0].toLowerCase()} ${secs(p[2] - p[1])}`).join(" → ") || "-");
    if (task.raw.r) add("error", task.raw.r);
    const outs = $("detail-outputs");
    outs.textContent = "";
    if (task.raw.o) {
      outs.appendChild(el("h4", null, "outputs"));
      const ul = el("ul");
      for (const [name, url] of task.raw.o) ul.appendChild(el("li", null, `${name}: ${url}`));
      outs.appendChild(ul);
    }
    for (const [key, id] of [["t", "detail-stderr"], ["l", "detail-syslog"]]) {
      $(id).hidden = $(id + "-h").hidden = !task.raw[key];
      $(id).textContent = task.raw[key] || "";
    }
    draw(true);
  }
  spacer.addEventListener("click", (ev) => {
    const r = ev.target.closest(".tl-row");
    if (r) show(tasks[Number(r.dataset.index)]);
  });
  $("detail-close").addEventListener("click", () => { $("detail").hidden = true; selected = null; draw(true); });

  // -- table -----------------------------------------------------------------------
  let sortKey = "start", asc = true, page = 0, rows = [];
  function table() {
    const want = filter.value;
    rows = tasks.filter((t) => !want || t.state === want);
    const key = sortKey;
    rows.sort((a, b) => {
      const x = a[key], y = b[key];
      const c = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
      return (asc ? c : -c) || a.index - b.index;
    });
    const pages = Math.max(1, Math.ceil(rows.length / PAGE));
    page = Math.min(page, pages - 1);
    const body = document.querySelector("#tasks tbody");
    const frag = document.createDocumentFragment();
    for (const t of rows.slice(page * PAGE, (page + 1) * PAGE)) {
      const r = el("tr");
      r.dataset.index = t.index;
      r.appendChild(el("td", null, t.name));
      r.appendChild(el("td", null, t.id));
      r.appendChild(el("td", "t-" + colour(t.state), t.state));
      r.appendChild(el("td", null, t.exit));
      for (const k of ["queued", "running", "total"]) r.appendChild(el("td", "num", t[k].toFixed(2)));
      frag.appendChild(r);
    }
    body.replaceChildren(frag);
    $("table-count").textContent = `${rows.length} of ${tasks.length}`;
    $("page").textContent = `page ${page + 1} of ${pages}`;
    $("prev").disabled = page === 0;
    $("next").disabled = page >= pages - 1;
    for (const th of document.querySelectorAll("#tasks th")) {
      th.classList.toggle("sorted", th.dataset.key === sortKey);
      th.classList.toggle("asc", th.dataset.key === sortKey && asc);
    }
  }
  document.querySelector("#tasks thead").addEventListener("click", (ev) => {
    const th = ev.target.closest("th");
    if (!th) return;
    const numeric = ["queued", "running", "total"].includes(th.dataset.key);
    if (sortKey === th.dataset.key) asc = !asc; else { sortKey = th.dataset.key; asc = !numeric; }
    page = 0;
    table();
  });
  document.querySelector("#tasks tbody").addEventListener("click", (ev) => {
    const r = ev.target.closest("tr");
    if (r) show(tasks[Number(r.dataset.index)]);
  });
  $("prev").addEventListener("click", () => { page--; table(); });
  $("next").addEventListener("click", () => { page++; table(); });
  filter.addEventListener("change", () => {
    shown = filter.value ? byStart.filter((t) => t.state === filter.value) : byStart;
    view.scrollTop = 0;
    page = 0;
    relayout();
    table();
  });

  axis();
  relayout();
  table();
  document.body.dataset.ready = "1";
  document.body.dataset.renderMs = Math.round(performance.now());
  // After the first frame with everything drawn: what a person waits for.
  requestAnimationFrame(() => setTimeout(() => {
    document.body.dataset.paintMs = Math.round(performance.now());
  }, 0));
})();
