// netcortex status page (issue 9). One ES module, no build step, no framework.
//
// Data: GET /api/v1/status (every 5 s), /api/v1/incidents?state=open and
// /api/v1/outcomes (once per connection), then /api/v1/stream (Server-Sent
// Events, read with fetch() so the bearer token goes in a header and a
// reconnect sends Last-Event-ID). When the engine serves no stream (404) the
// page polls the outcome and incident lists instead.
// Rendering: every update marks a list dirty; one requestAnimationFrame redraws
// what changed. At most MAX_OUTCOMES outcome rows and one page of incidents are
// in the DOM. Data only ever reaches the DOM through textContent/attributes.

const API = "/api/v1";
const TOKEN_KEY = "netcortex.api_token";
const SEVERITIES = ["info", "warn", "high", "critical"];
const MAX_OUTCOMES = 500;
const INCIDENT_PAGE = 50;
const MAX_INCIDENT_PAGES = 20; // x 1,000 per request
const STATUS_EVERY_MS = 5000;
const POLL_OUTCOMES_MS = 2000;
const POLL_INCIDENTS_MS = 5000;
const MAX_RETRY_MS = 30000;

const $ = (id) => document.getElementById(id);

const state = {
  token: null,
  filters: { site: "", device: "", severity: "" },
  gen: 0, // bumped on every (re)start: stale loops and answers see a newer gen and stop
  abort: null,
  lastEventId: null,
  retryMs: 2000,
  outcomes: [], // newest first, at most MAX_OUTCOMES
  outcomeIds: new Set(),
  pending: [], // outcomes not yet drawn
  fullOutcomeRedraw: true,
  incidents: new Map(), // id -> incident (open only)
  incidentsDirty: true,
  incidentsAvailable: true,
  incPage: 0,
  expanded: new Set(),
  frame: 0,
  firstView: false,
  listsLoaded: false,
};

// -------------------------------------------------------------- small helpers

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function sevRank(severity) {
  const i = SEVERITIES.indexOf(severity);
  return i < 0 ? 0 : i;
}

function sevClass(severity) {
  return SEVERITIES.includes(severity) ? `sev-${severity}` : "sev-info";
}

function fmtAge(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  let s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  s %= 60;
  if (m < 60) return `${m}m${String(s).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, "0")}h`;
}

function ageOf(iso) {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : (Date.now() - t) / 1000;
}

function fmtTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso ?? "");
  const pad = (n) => String(n).padStart(2, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function fmtRate(x) {
  if (typeof x !== "number" || !Number.isFinite(x)) return "–";
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ----------------------------------------------------------------- URL state

function readFragment() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  const token = params.get("token");
  if (token) {
    localStorage.setItem(TOKEN_KEY, token);
    params.delete("token");
    // Never leave the token in the address bar (or in the history).
    const rest = params.toString();
    history.replaceState(null, "", `${location.pathname}${location.search}${rest ? `#${rest}` : ""}`);
  }
  const severity = params.get("severity") ?? "";
  return {
    site: (params.get("site") ?? "").trim(),
    device: (params.get("device") ?? "").trim(),
    severity: SEVERITIES.includes(severity) ? severity : "",
  };
}

function writeFragment(filters) {
  const params = new URLSearchParams();
  for (const key of ["site", "device", "severity"]) if (filters[key]) params.set(key, filters[key]);
  const frag = params.toString();
  const url = `${location.pathname}${location.search}${frag ? `#${frag}` : ""}`;
  if (url !== `${location.pathname}${location.search}${location.hash}`) history.replaceState(null, "", url);
}

function sameFilters(a, b) {
  return a.site === b.site && a.device === b.device && a.severity === b.severity;
}

// --------------------------------------------------------------- connection

function setConn(kind, text) {
  const node = $("conn");
  node.dataset.state = kind;
  node.textContent = text ?? kind;
}

class AuthError extends Error {}
class NotServed extends Error {}

async function api(path, params, gen) {
  const url = params && [...params].length ? `${API}${path}?${params}` : `${API}${path}`;
  const resp = await fetch(url, {
    headers: { Authorization: `Bearer ${state.token}`, Accept: "application/json" },
    signal: state.abort?.signal,
    cache: "no-store",
  });
  if (gen !== state.gen) throw new DOMException("stale", "AbortError");
  if (resp.status === 401 || resp.status === 403) throw new AuthError(String(resp.status));
  if (resp.status === 404) throw new NotServed(path);
  if (!resp.ok) throw new Error(`${path}: HTTP ${resp.status}`);
  return resp.json();
}

function needToken(message) {
  state.gen += 1;
  state.abort?.abort();
  setConn("token", "token needed");
  $("token-panel").hidden = false;
  $("token-error").textContent = message ?? "";
  $("token-input").focus();
}

function handleError(err, gen) {
  if (gen !== state.gen || err?.name === "AbortError") return true;
  if (err instanceof AuthError) {
    needToken(state.token ? "The engine refused this token." : "");
    return true;
  }
  return false;
}

// ------------------------------------------------------------------ queries

function filterParams() {
  const p = new URLSearchParams();
  if (state.filters.site) p.set("site", state.filters.site);
  if (state.filters.device) p.set("device", state.filters.device);
  return p;
}

function outcomeParams(limit) {
  const p = filterParams();
  if (state.filters.severity) {
    p.set("severity", SEVERITIES.slice(sevRank(state.filters.severity)).join(","));
  }
  p.set("limit", String(limit));
  return p;
}

function streamParams() {
  const p = filterParams();
  if (state.filters.severity) p.set("severity", state.filters.severity);
  return p;
}

// ----------------------------------------------------------------- outcomes

function outcomeMatches(o) {
  const f = state.filters;
  if (f.severity && sevRank(o.severity) < sevRank(f.severity)) return false;
  if (f.site && o.site !== f.site) return false;
  if (f.device && o.device !== f.device) return false;
  return true;
}

function outcomeKey(o) {
  return `${o.recorded_at ?? ""}\u0000${o.outcome_id ?? ""}`;
}

function addOutcomes(list) {
  for (const o of list) {
    if (!o || typeof o !== "object" || !o.outcome_id) continue;
    if (state.outcomeIds.has(o.outcome_id) || !outcomeMatches(o)) continue;
    state.outcomeIds.add(o.outcome_id);
    state.pending.push(o);
  }
  if (state.pending.length) schedule();
}

function outcomeRow(o) {
  const li = el("li", `out ${sevClass(o.severity)}`);
  li.dataset.id = o.outcome_id;
  li.dataset.severity = o.severity;
  li.title = `${o.recorded_at} · ${o.subject ?? ""}`;
  li.append(
    el("time", "when", fmtTime(o.recorded_at)),
    el("span", "sev", o.severity),
    el("span", "what", `${o.handler_id} · ${o.kind}`),
    el("span", "where", o.target || o.device || ""),
    el("span", "summary", o.summary ?? ""),
  );
  return li;
}

function drawOutcomes() {
  if (!state.pending.length && !state.fullOutcomeRedraw) return;
  const list = $("outcomes");
  const fresh = state.pending.sort((a, b) => (outcomeKey(a) < outcomeKey(b) ? 1 : -1));
  state.pending = [];
  const top = state.outcomes[0];
  const newerThanTop = !top || (fresh.length && outcomeKey(fresh[fresh.length - 1]) > outcomeKey(top));
  if (!state.fullOutcomeRedraw && newerThanTop) {
    // The common case, live outcomes: put the new rows on top, drop the oldest.
    state.outcomes = fresh.concat(state.outcomes);
    const frag = document.createDocumentFragment();
    for (const o of fresh.slice(0, MAX_OUTCOMES)) frag.append(outcomeRow(o));
    list.prepend(frag);
  } else {
    state.outcomes = fresh.concat(state.outcomes);
    state.outcomes.sort((a, b) => (outcomeKey(a) < outcomeKey(b) ? 1 : -1));
    state.fullOutcomeRedraw = true;
  }
  if (state.outcomes.length > MAX_OUTCOMES) {
    for (const gone of state.outcomes.splice(MAX_OUTCOMES)) state.outcomeIds.delete(gone.outcome_id);
  }
  if (state.fullOutcomeRedraw) {
    const frag = document.createDocumentFragment();
    for (const o of state.outcomes) frag.append(outcomeRow(o));
    list.replaceChildren(frag);
    state.fullOutcomeRedraw = false;
  } else {
    while (list.childElementCount > MAX_OUTCOMES) list.lastElementChild.remove();
  }
  $("outcomes-count").textContent = String(state.outcomes.length);
  $("outcomes-empty").hidden = state.outcomes.length > 0;
}

// ---------------------------------------------------------------- incidents

function incidentId(i) {
  return i.id ?? i.incident_id;
}

function deviceOf(member) {
  const bar = String(member).indexOf("|");
  return bar < 0 ? String(member) : String(member).slice(0, bar);
}

function incidentMatches(i) {
  const f = state.filters;
  if (i.state && i.state !== "open") return false;
  if (f.severity && sevRank(i.severity) < sevRank(f.severity)) return false;
  if (f.site && i.site !== f.site) return false;
  if (f.device) {
    // members are "device" or "device|interface"; the root is a typed key
    // ("device:sw1", "interface:sw1|Gi1", "cable:sw1|Gi1~sw2|Gi1", "site:north").
    const root = String(i.root ?? "");
    const rootParts = root.startsWith("site:") ? [] : root.slice(root.indexOf(":") + 1).split("~");
    const devices = [...rootParts, ...(i.members ?? [])].filter(Boolean).map(deviceOf);
    if (!devices.includes(f.device)) return false;
  }
  return true;
}

function upsertIncident(incident, transition) {
  if (!incident || typeof incident !== "object") return;
  const id = incidentId(incident);
  if (!id) return;
  const known = state.incidents.get(id);
  if (known && (known.version ?? 0) > (incident.version ?? 0)) return;
  if (transition === "resolved" || incident.state === "resolved" || !incidentMatches(incident)) {
    if (!known) return;
    state.incidents.delete(id);
    state.expanded.delete(id);
  } else {
    state.incidents.set(id, { ...incident, id });
  }
  state.incidentsDirty = true;
  schedule();
}

function incidentRow(i) {
  const li = el("li", `inc ${sevClass(i.severity)}`);
  li.dataset.id = i.id;
  li.dataset.severity = i.severity;
  const head = el("button", "inc-row");
  head.type = "button";
  head.setAttribute("aria-expanded", String(state.expanded.has(i.id)));
  head.title = i.summary ?? "";
  head.append(
    el("span", "sev", i.severity),
    el("span", "rule", i.rule),
    el("span", "root", i.root ?? "–"),
    el("span", "members", (i.members ?? []).length),
    el("span", "evidence", (i.evidence ?? []).length),
    el("span", "age", fmtAge(ageOf(i.opened_at))),
  );
  li.append(head);
  if (state.expanded.has(i.id)) li.append(incidentDetails(i));
  return li;
}

function incidentDetails(i) {
  const box = el("div", "inc-details");
  if (i.summary) box.append(el("p", "summary", i.summary));
  box.append(el("h4", null, "Members"));
  const members = el("ul", "member-list");
  for (const m of i.members ?? []) members.append(el("li", null, m));
  box.append(members);
  box.append(el("h4", null, "Evidence"));
  const evidence = el("ul", "evidence-list");
  const byId = new Map(state.outcomes.map((o) => [o.outcome_id, o]));
  for (const id of i.evidence ?? []) {
    const o = byId.get(id);
    evidence.append(el("li", null, o ? `${fmtTime(o.recorded_at)} ${o.summary} (${id})` : id));
  }
  box.append(evidence);
  const meta = [`root ${i.root ?? "–"}`, `opened ${i.opened_at}`, `updated ${i.updated_at}`];
  if (i.site) meta.push(`site ${i.site}`);
  if (i.flapping) meta.push("flapping");
  box.append(el("p", "meta", meta.join(" · ")));
  return box;
}

function drawIncidents() {
  if (!state.incidentsDirty) return;
  state.incidentsDirty = false;
  const all = [...state.incidents.values()].filter(incidentMatches);
  all.sort((a, b) => (a.updated_at < b.updated_at ? 1 : a.updated_at > b.updated_at ? -1 : 0));
  const pages = Math.max(1, Math.ceil(all.length / INCIDENT_PAGE));
  state.incPage = Math.min(state.incPage, pages - 1);
  const start = state.incPage * INCIDENT_PAGE;
  const frag = document.createDocumentFragment();
  for (const i of all.slice(start, start + INCIDENT_PAGE)) frag.append(incidentRow(i));
  $("incidents").replaceChildren(frag);
  $("incidents-count").textContent = String(all.length);
  $("incidents-empty").hidden = all.length > 0;
  $("incidents-empty").textContent = state.incidentsAvailable
    ? "No open incidents."
    : "This engine does not correlate outcomes into incidents.";
  $("inc-page").textContent = `${state.incPage + 1} / ${pages}`;
  $("inc-prev").disabled = state.incPage === 0;
  $("inc-next").disabled = state.incPage >= pages - 1;
}

// ------------------------------------------------------------------ drawing

function schedule() {
  if (!state.frame) state.frame = requestAnimationFrame(draw);
}

function draw() {
  state.frame = 0;
  drawOutcomes();
  drawIncidents();
  if (!state.firstView && state.listsLoaded) {
    state.firstView = true;
    performance.mark("netcortex:first-view");
    document.body.dataset.ready = "true";
  }
}

// ------------------------------------------------------------------- status

function kv(target, rows) {
  const frag = document.createDocumentFragment();
  for (const [k, v] of rows) frag.append(el("dt", null, k), el("dd", null, v));
  $(target).replaceChildren(frag);
}

function windowText(w) {
  const where = w.scope && w.target ? `${w.scope} ${w.target}` : w.scope ?? "";
  return `${w.id ?? "?"} · ${where}: ${w.start} → ${w.end}${w.reason ? ` (${w.reason})` : ""}`;
}

function drawStatus(s) {
  kv("engine", [
    ["version", s.version ?? "–"],
    ["uptime", fmtAge(s.uptime_s)],
    ["outcomes", `${s.outcomes?.total ?? "–"} (${fmtRate(s.outcomes?.per_s)}/s)`],
    ["open incidents", s.incidents ? String(s.incidents.open) : "correlation off"],
  ]);
  const sources = document.createDocumentFragment();
  for (const src of s.sources ?? []) {
    const li = el("li", "src-row");
    li.dataset.source = src.source;
    const reasons = Object.entries(src.rejected_by_reason ?? {})
      .map(([k, v]) => `${k}: ${v}`)
      .join(", ");
    li.title = reasons;
    li.append(
      el("span", "name", src.source),
      el("span", null, fmtRate(src.received_per_s)),
      el("span", src.rejected_per_s > 0 ? "bad" : null, fmtRate(src.rejected_per_s)),
      el("span", null, src.received),
      el("span", src.rejected > 0 ? "bad" : null, src.rejected),
    );
    sources.append(li);
  }
  $("sources").replaceChildren(sources);
  const ob = s.outbox;
  kv(
    "outbox",
    ob
      ? [
          ["pending", ob.pending],
          ["oldest pending", fmtAge(ob.oldest_pending_age_s)],
          ["dead", ob.dead],
          ["delivered", ob.delivered],
        ]
      : [["journal", "off"]],
  );
  const inv = s.inventory ?? {};
  kv("inventory", [
    ["backend", inv.backend ?? "–"],
    ["devices", inv.devices ?? "–"],
    ["age", fmtAge(inv.age_s)],
  ]);
  const active = document.createDocumentFragment();
  for (const w of s.maintenance?.active ?? []) active.append(el("li", "maint", `now · ${windowText(w)}`));
  if (!active.childElementCount) active.append(el("li", "maint none", "no window active now"));
  $("maint-active").replaceChildren(active);
  const next = s.maintenance?.next;
  kv("maint-next", [["next", next ? windowText(next) : "none scheduled"]]);
  $("status-error").textContent = "";
}

async function statusLoop(gen) {
  while (gen === state.gen) {
    try {
      drawStatus(await api("/status", null, gen));
    } catch (err) {
      if (handleError(err, gen)) return;
      $("status-error").textContent =
        err instanceof NotServed ? "This engine does not serve /api/v1/status." : String(err.message);
    }
    await delay(STATUS_EVERY_MS);
  }
}

// -------------------------------------------------------------------- lists

async function loadOutcomes(gen) {
  const page = await api("/outcomes", outcomeParams(MAX_OUTCOMES), gen);
  addOutcomes(page.items ?? []);
}

async function loadIncidents(gen, replace) {
  const found = new Map();
  const params = filterParams();
  params.set("state", "open");
  params.set("limit", "1000");
  try {
    for (let n = 0; n < MAX_INCIDENT_PAGES; n += 1) {
      const page = await api("/incidents", params, gen);
      for (const i of page.items ?? []) found.set(incidentId(i), { ...i, id: incidentId(i) });
      if (!page.next_cursor) break;
      params.set("cursor", page.next_cursor);
    }
    state.incidentsAvailable = true;
  } catch (err) {
    if (!(err instanceof NotServed)) throw err;
    state.incidentsAvailable = false;
  }
  if (replace) state.incidents.clear();
  for (const [id, i] of found) {
    const known = state.incidents.get(id);
    if (!known || (known.version ?? 0) <= (i.version ?? 0)) state.incidents.set(id, i);
  }
  state.incidentsDirty = true;
  schedule();
}

async function loadLists(gen, replaceIncidents) {
  try {
    await Promise.all([loadOutcomes(gen), loadIncidents(gen, replaceIncidents)]);
    state.listsLoaded = true;
    schedule();
  } catch (err) {
    if (!handleError(err, gen)) $("status-error").textContent = String(err.message);
  }
}

async function pollLoop(gen) {
  // The engine serves no /api/v1/stream: poll the lists instead.
  setConn("polling", "polling");
  let lastIncidents = Date.now();
  while (gen === state.gen) {
    await delay(POLL_OUTCOMES_MS);
    try {
      const page = await api("/outcomes", outcomeParams(100), gen);
      addOutcomes(page.items ?? []);
      if (Date.now() - lastIncidents >= POLL_INCIDENTS_MS) {
        lastIncidents = Date.now();
        await loadIncidents(gen, true);
      }
      setConn("polling", "polling");
    } catch (err) {
      if (handleError(err, gen)) return;
      setConn("reconnecting", "reconnecting");
    }
  }
}

// ------------------------------------------------------------------- stream

function onMessage(type, data) {
  let body;
  try {
    body = data ? JSON.parse(data) : {};
  } catch {
    return;
  }
  if (type === "outcome") addOutcomes([body.outcome]);
  else if (type === "incident") upsertIncident(body.incident, body.transition);
  else if (type === "ready") setConn("live", "live");
  else if (type === "gap") $("status-error").textContent = `stream skipped ${body.skipped} old messages`;
  else if (type === "overflow") setConn("reconnecting", "reconnecting (too slow)");
}

async function readStream(body, gen) {
  // A Server-Sent Events parser (the WHATWG rules: fields, comments, blank line = dispatch).
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let type = "";
  let data = [];
  let id = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done || gen !== state.gen) return;
    buffer += value;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop() ?? "";
    for (const line of lines) {
      if (line === "") {
        if (id !== null) state.lastEventId = id;
        if (data.length) onMessage(type || "message", data.join("\n"));
        type = "";
        data = [];
        id = null;
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let val = colon < 0 ? "" : line.slice(colon + 1);
      if (val.startsWith(" ")) val = val.slice(1);
      if (field === "event") type = val;
      else if (field === "data") data.push(val);
      else if (field === "id" && !val.includes("\u0000")) id = val;
      else if (field === "retry" && /^\d+$/.test(val)) state.retryMs = Number(val);
    }
  }
}

async function streamLoop(gen) {
  let failures = 0;
  let first = true;
  while (gen === state.gen) {
    const headers = { Authorization: `Bearer ${state.token}`, Accept: "text/event-stream" };
    if (state.lastEventId) headers["Last-Event-ID"] = state.lastEventId;
    try {
      const resp = await fetch(`${API}/stream?${streamParams()}`, {
        headers,
        signal: state.abort.signal,
        cache: "no-store",
      });
      if (gen !== state.gen) return;
      if (resp.status === 401 || resp.status === 403) throw new AuthError(String(resp.status));
      if (resp.status === 404 || resp.status === 405) {
        if (first) loadLists(gen, false);
        pollLoop(gen);
        return;
      }
      if (resp.status === 400 && state.lastEventId) {
        state.lastEventId = null; // an unusable resume token: start afresh
        continue;
      }
      if (!resp.ok || !resp.body) throw new Error(`stream: HTTP ${resp.status}`);
      // Subscribed: now read the lists, so nothing falls between them and the stream.
      // A reconnect without a resume position (nothing received yet) reads them again.
      if (first || !headers["Last-Event-ID"]) loadLists(gen, !first);
      first = false;
      failures = 0;
      setConn("live", "live");
      await readStream(resp.body, gen);
    } catch (err) {
      if (handleError(err, gen)) return;
    }
    if (gen !== state.gen) return;
    failures += 1;
    setConn("reconnecting", "reconnecting");
    await delay(Math.min(MAX_RETRY_MS, state.retryMs * 2 ** Math.min(failures - 1, 4)));
  }
}

// -------------------------------------------------------------------- start

function start() {
  state.gen += 1;
  state.abort?.abort();
  state.abort = new AbortController();
  const gen = state.gen;
  state.lastEventId = null;
  state.outcomes = [];
  state.outcomeIds.clear();
  state.pending = [];
  state.fullOutcomeRedraw = true;
  state.incidents.clear();
  state.incidentsDirty = true;
  state.incPage = 0;
  state.listsLoaded = false;
  schedule();
  if (!state.token) {
    needToken("");
    return;
  }
  $("token-panel").hidden = true;
  setConn("connecting", "connecting");
  streamLoop(gen);
  statusLoop(gen);
}

function formFilters() {
  return {
    site: $("f-site").value.trim(),
    device: $("f-device").value.trim(),
    severity: $("f-severity").value,
  };
}

function showFilters(f) {
  $("f-site").value = f.site;
  $("f-device").value = f.device;
  $("f-severity").value = f.severity;
}

function applyFilters(filters) {
  if (sameFilters(filters, state.filters)) return;
  state.filters = filters;
  writeFragment(filters);
  showFilters(filters);
  start();
}

function wire() {
  let typing = 0;
  const form = $("filters");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    applyFilters(formFilters());
  });
  form.addEventListener("change", () => applyFilters(formFilters()));
  form.addEventListener("input", (e) => {
    if (e.target.tagName !== "INPUT") return;
    clearTimeout(typing);
    typing = setTimeout(() => applyFilters(formFilters()), 400);
  });
  window.addEventListener("hashchange", () => {
    const filters = readFragment();
    const token = localStorage.getItem(TOKEN_KEY);
    if (token !== state.token) {
      state.token = token;
      state.filters = filters;
      showFilters(filters);
      start();
    } else {
      applyFilters(filters);
    }
  });
  $("token-change").addEventListener("click", () => needToken(""));
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("token-input").value.trim();
    if (!token) return;
    localStorage.setItem(TOKEN_KEY, token);
    state.token = token;
    $("token-input").value = "";
    $("token-error").textContent = "";
    start();
  });
  $("incidents").addEventListener("click", (e) => {
    const head = e.target.closest("button.inc-row");
    if (!head) return;
    const id = head.parentElement.dataset.id;
    if (state.expanded.has(id)) state.expanded.delete(id);
    else state.expanded.add(id);
    state.incidentsDirty = true;
    schedule();
  });
  $("inc-prev").addEventListener("click", () => {
    state.incPage = Math.max(0, state.incPage - 1);
    state.incidentsDirty = true;
    schedule();
  });
  $("inc-next").addEventListener("click", () => {
    state.incPage += 1;
    state.incidentsDirty = true;
    schedule();
  });
  // Ages move on even when nothing happens.
  setInterval(() => {
    state.incidentsDirty = true;
    schedule();
  }, 15000);
}

function main() {
  state.filters = readFragment();
  showFilters(state.filters);
  state.token = localStorage.getItem(TOKEN_KEY);
  wire();
  start();
}

main();
