// The tesengine serve dashboard. Everything it shows comes from this server's
// own TES API (/ga4gh/tes/v1); it keeps nothing but the filter in the URL and,
// when the API asks for them, credentials in this tab's sessionStorage.
// Text from tasks is only ever set with textContent.
"use strict";
(function () {
  const API = "/ga4gh/tes/v1";
  const REFRESH_MS = 3000;
  const FINAL = new Set(["COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED"]);
  const $ = (id) => document.getElementById(id);
  let timer = null;

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function cells(row, values) {
    for (const v of values) row.appendChild(v instanceof Node ? wrap(v) : el("td", null, v));
    return row;
  }
  function wrap(node) { const td = el("td"); td.appendChild(node); return td; }
  function stateNode(state) { return el("span", "state s-" + state, state); }

  // -- the API, with the credentials the user gave ------------------------------
  class Unauthorized extends Error {}
  async function api(path) {
    const auth = sessionStorage.getItem("tesengine-auth");
    // The marker header asks the server not to answer 401 with a challenge,
    // which would park the request behind the browser's own password dialog.
    const headers = { "X-Tesengine-Dashboard": "1" };
    if (auth) headers.Authorization = auth;
    const resp = await fetch(API + path, { headers, credentials: "same-origin" });
    if (resp.status === 401) throw new Unauthorized("the API needs credentials");
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(`${resp.status}: ${body.error || resp.statusText}`);
    return body;
  }
  function showError(err) {
    if (err instanceof Unauthorized) {
      $("signin").hidden = false;
      $("list-view").hidden = $("task-view").hidden = true;
      $("error").hidden = !sessionStorage.getItem("tesengine-auth");
      $("error").textContent = "Those credentials were refused.";
      return;
    }
    $("error").hidden = false;
    $("error").textContent = String(err.message || err);
  }
  function ok() {
    $("error").hidden = true;
    $("signin").hidden = true;
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  }
  $("signin").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = $("token").value;
    const auth = token ? "Bearer " + token : "Basic " + btoa($("user").value + ":" + $("password").value);
    sessionStorage.setItem("tesengine-auth", auth);
    $("password").value = $("token").value = "";
    route();
  });

  // -- task list -------------------------------------------------------------------
  // Page tokens of the pages before this one, so "newer" can go back.
  const listState = { tokens: [], token: "", drawn: "" };
  function filters() {
    const q = new URLSearchParams(location.search);
    return {
      state: q.get("state") || "", tagKey: q.get("tag_key") || "", tagValue: q.get("tag_value") || "",
      namePrefix: q.get("name_prefix") || "", pageSize: q.get("page_size") || "50",
    };
  }
  function syncControls(f) {
    $("state").value = f.state;
    $("tag-key").value = f.tagKey;
    $("tag-value").value = f.tagValue;
    $("name-prefix").value = f.namePrefix;
    $("page-size").value = f.pageSize;
  }
  function applyControls() {
    const q = new URLSearchParams();
    const put = (k, v) => { if (v) q.set(k, v); };
    put("state", $("state").value);
    put("tag_key", $("tag-key").value.trim());
    put("tag_value", $("tag-key").value.trim() ? $("tag-value").value : "");
    put("name_prefix", $("name-prefix").value);
    if ($("page-size").value !== "50") q.set("page_size", $("page-size").value);
    history.replaceState(null, "", "/ui/" + (q.toString() ? "?" + q : ""));
    listState.tokens = [];
    listState.token = "";
    loadList();
  }
  for (const id of ["state", "page-size"]) $(id).addEventListener("change", applyControls);
  $("apply").addEventListener("click", applyControls);
  for (const id of ["tag-key", "tag-value", "name-prefix"]) {
    $(id).addEventListener("keydown", (ev) => { if (ev.key === "Enter") applyControls(); });
  }
  $("next").addEventListener("click", () => {
    listState.tokens.push(listState.token);
    listState.token = $("next").dataset.token;
    loadList();
  });
  $("prev").addEventListener("click", () => {
    listState.token = listState.tokens.pop() || "";
    loadList();
  });

  async function loadList() {
    const f = filters();
    const q = new URLSearchParams({ view: "BASIC", page_size: f.pageSize });
    if (f.state) q.set("state", f.state);
    if (f.tagKey) { q.set("tag_key", f.tagKey); if (f.tagValue) q.set("tag_value", f.tagValue); }
    if (f.namePrefix) q.set("name_prefix", f.namePrefix);
    if (listState.token) q.set("page_token", listState.token);
    let body;
    try { body = await api("/tasks?" + q); } catch (err) { showError(err); return; }
    ok();
    $("list-view").hidden = false;
    // Redraw only what changed: a refresh must not take a row from under the pointer.
    const key = q.toString() + JSON.stringify(body);
    if (key === listState.drawn) return;
    listState.drawn = key;
    const tbody = document.querySelector("#tasks tbody");
    const frag = document.createDocumentFragment();
    for (const t of body.tasks || []) {
      const link = el("a", null, t.name || "(no name)");
      link.href = "/ui/tasks/" + encodeURIComponent(t.id);
      const tags = el("span");
      for (const [k, v] of Object.entries(t.tags || {})) {
        const tag = tags.appendChild(el("span", "tag", v ? `${k}=${v}` : k));
        tag.title = tag.textContent;
      }
      const row = cells(el("tr"), [link, t.id, stateNode(t.state), t.creation_time || "", tags]);
      row.dataset.state = t.state;
      row.children[1].className = "id";
      frag.appendChild(row);
    }
    tbody.replaceChildren(frag);
    $("empty").hidden = (body.tasks || []).length > 0;
    $("next").disabled = !body.next_page_token;
    $("next").dataset.token = body.next_page_token || "";
    $("prev").disabled = listState.tokens.length === 0 && !listState.token;
    $("page").textContent = `page ${listState.tokens.length + 1}`;
  }

  // -- one task --------------------------------------------------------------------
  const seen = [];  // state changes observed while this page is open
  async function loadTask(id) {
    let t;
    try { t = await api("/tasks/" + encodeURIComponent(id) + "?view=FULL"); } catch (err) { showError(err); return; }
    ok();
    $("task-view").hidden = false;
    document.title = `${t.name || t.id} · tesengine`;
    $("task-name").textContent = t.name || "(no name)";
    $("task-state").textContent = t.state;
    $("task-state").className = "state s-" + t.state;
    if (!seen.length || seen[seen.length - 1][1] !== t.state) seen.push([new Date().toISOString(), t.state]);
    const fields = $("task-fields");
    fields.textContent = "";
    const add = (k, v) => { if (v) { fields.appendChild(el("dt", null, k)); fields.appendChild(el("dd", null, v)); } };
    add("id", t.id);
    add("description", t.description);
    add("created", t.creation_time);
    const r = t.resources || {};
    add("resources", [r.cpu_cores && `${r.cpu_cores} cores`, r.ram_gb && `${r.ram_gb} GB RAM`,
      r.disk_gb && `${r.disk_gb} GB disk`, r.preemptible && "preemptible"].filter(Boolean).join(", "));
    add("tags", Object.entries(t.tags || {}).map(([k, v]) => (v ? `${k}=${v}` : k)).join(", "));
    add("volumes", (t.volumes || []).join(", "));
    stateHistory(t);
    const lastLogs = (t.logs || []).length ? t.logs[t.logs.length - 1].logs || [] : [];
    fill("executors", (t.executors || []).map((e, i) => [
      i, e.image, code((e.command || []).join(" ")), e.workdir || "",
      lastLogs[i] && lastLogs[i].exit_code !== undefined && lastLogs[i].exit_code !== null ? lastLogs[i].exit_code : "",
    ]));
    fill("inputs", (t.inputs || []).map((i) => [
      i.name || "", i.path, i.url || (i.content !== undefined ? `inline content (${i.content.length} chars)` : ""), i.type || "FILE",
    ]));
    fill("outputs", (t.outputs || []).map((o) => [o.name || "", o.path, o.url, o.type || "FILE"]));
    logs(t);
    clearTimeout(timer);
    if (!FINAL.has(t.state) && $("auto").checked) timer = setTimeout(() => loadTask(id), REFRESH_MS);
  }
  function code(text) { return el("code", null, text); }
  function fill(id, rows) {
    const tbody = document.querySelector(`#${id} tbody`);
    tbody.replaceChildren(...rows.map((values) => cells(el("tr"), values)));
    if (!rows.length) tbody.appendChild(cells(el("tr", "muted"), ["none"]));
  }
  function stateHistory(t) {
    // TES keeps times, not a state log: creation, each attempt's and executor's
    // start and end, then the states this page has watched it pass through.
    const rows = [];
    if (t.creation_time) rows.push([t.creation_time, "created (QUEUED)"]);
    (t.logs || []).forEach((attempt, a) => {
      if (attempt.start_time) rows.push([attempt.start_time, `attempt ${a + 1} started`]);
      (attempt.logs || []).forEach((e, i) => {
        if (e.start_time) rows.push([e.start_time, `executor ${i} started`]);
        if (e.end_time) rows.push([e.end_time, `executor ${i} ended, exit code ${e.exit_code}`]);
      });
      if (attempt.end_time) rows.push([attempt.end_time, `attempt ${a + 1} ended`]);
    });
    for (const [when, state] of seen) rows.push([when, `seen ${state} (this page)`]);
    fill("history", rows);
  }
  function logs(t) {
    const box = $("logs");
    box.textContent = "";
    const attempts = t.logs || [];
    if (!attempts.length) box.appendChild(el("p", "muted", "No logs yet."));
    attempts.forEach((attempt, a) => {
      box.appendChild(el("h3", null, `attempt ${a + 1}`));
      (attempt.logs || []).forEach((e, i) => {
        box.appendChild(el("h4", null, `executor ${i}: exit code ${e.exit_code ?? "-"}`));
        for (const stream of ["stdout", "stderr"]) {
          if (!e[stream]) continue;
          box.appendChild(el("div", "muted", `${stream} (tail)`));
          const pre = el("pre", "log-" + stream, e[stream]);
          pre.dataset.executor = i;
          box.appendChild(pre);
        }
      });
      if ((attempt.system_logs || []).length) {
        box.appendChild(el("div", "muted", "system logs"));
        box.appendChild(el("pre", "log-system", attempt.system_logs.join("\n")));
      }
      if ((attempt.outputs || []).length) {
        box.appendChild(el("div", "muted", "output files"));
        const ul = el("ul");
        for (const o of attempt.outputs) ul.appendChild(el("li", null, `${o.path}: ${o.url} (${o.size_bytes} bytes)`));
        box.appendChild(ul);
      }
    });
  }

  // -- routing and refresh ---------------------------------------------------------
  function taskId() {
    const m = location.pathname.match(/^\/ui\/tasks\/([^/]+)$/);
    return m ? decodeURIComponent(m[1]) : null;
  }
  function route() {
    const id = taskId();
    if (id) { loadTask(id); return; }
    syncControls(filters());
    loadList();
  }
  setInterval(() => {
    if ($("auto").checked && !taskId() && $("signin").hidden) loadList();
  }, REFRESH_MS);
  $("auto").addEventListener("change", () => { if ($("auto").checked && taskId()) loadTask(taskId()); });
  api("/service-info").then((info) => { $("service").textContent = info.description || ""; }).catch(() => {});
  route();
})();
