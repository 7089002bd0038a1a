// hookgate's admin page: a client of the JSON admin API, nothing more (src/admin/ui.rs serves it).
//
// Everything a sender chose (ids, headers, bodies, reasons) is put in the page as text: through
// textContent or text nodes, never parsed as HTML. The page's URLs are relative to /ui, so the API is
// `events`, `stats`, ... on the same origin; the token, if the API needs one, stays in sessionStorage
// and goes out as a Bearer header.
"use strict";

(() => {
  const TOKEN_KEY = "hookgate.admin-token";
  const OVERVIEW_EVERY_MS = 3000;
  /// The chart's span: samples older than this are dropped.
  const CHART_SPAN_MS = 5 * 60 * 1000;
  const PAGE_SIZE = 50;
  /// A replayed event is re-read this often, this many times at most, until it leaves the queue.
  const FOLLOW_EVERY_MS = 1000;
  const FOLLOW_TIMES = 60;

  const $ = (id) => document.getElementById(id);

  // === elements ===

  /// An element with attributes and children (strings become text nodes, never HTML).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === undefined || c === null) continue;
      e.append(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return e;
  }

  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v;
      else e.setAttribute(k, String(v));
    }
    return e;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function emptyRow(tbody, columns, text) {
    tbody.append(el("tr", {}, el("td", { class: "empty", colspan: columns }, text)));
  }

  /// An API time (RFC 3339 UTC) as a <time> in the browser's locale, with the exact value on hover.
  function when(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    return el("time", { datetime: iso, title: iso }, d.toLocaleString());
  }

  function stateBadge(state) {
    return el("span", { class: "badge " + state }, state);
  }

  /// A datetime-local value (the browser's local time) as the API's RFC 3339 UTC; "" stays "".
  function toApiTime(local) {
    if (!local) return "";
    const d = new Date(local);
    return Number.isNaN(d.getTime()) ? "" : d.toISOString();
  }

  /// An RFC 3339 time as a datetime-local value in the browser's local time.
  function toLocalInput(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return "";
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  // === the API ===

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message ? `${code}: ${message}` : `${code || "error"} (HTTP ${status})`);
      this.status = status;
      this.code = code;
    }
  }

  let token = sessionStorage.getItem(TOKEN_KEY) || "";

  /// `method path?params` against the admin API; the parsed JSON, or an ApiError.
  async function api(method, path, params, withToken) {
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) {
      if (v !== undefined && v !== null && v !== "") query.set(k, String(v));
    }
    const qs = query.toString();
    const headers = { Accept: "application/json" };
    const bearer = withToken === undefined ? token : withToken;
    if (bearer) headers.Authorization = "Bearer " + bearer;
    let resp;
    try {
      resp = await fetch(path + (qs ? "?" + qs : ""), { method, headers, cache: "no-store", credentials: "omit" });
    } catch (e) {
      throw new ApiError(0, "unreachable", "the gateway did not answer");
    }
    let body = null;
    try {
      body = await resp.json();
    } catch (e) {
      body = null;
    }
    if (!resp.ok) {
      const err = new ApiError(resp.status, body && body.error, body && body.message);
      if (resp.status === 401 && withToken === undefined) signedOut("The token was refused: sign in again.");
      throw err;
    }
    return body;
  }

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = !message;
  }

  /// Runs `work`, showing its failure (other than a 401, which signs out) at the top of the page.
  async function guarded(work) {
    try {
      await work();
      showError("");
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return;
      showError("The admin API failed: " + e.message);
    }
  }

  // === sign-in ===

  let tokenRequired = null;

  async function needsToken() {
    if (tokenRequired === null) {
      const resp = await fetch("ui/auth.json", { cache: "no-store", credentials: "omit" });
      const body = await resp.json();
      tokenRequired = body.token_required === true;
    }
    return tokenRequired;
  }

  function signedOut(message) {
    token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    showPage("signin");
    const err = $("signin-error");
    err.textContent = message || "";
    err.hidden = !message;
  }

  async function signIn(event) {
    event.preventDefault();
    const given = $("signin-token").value.trim();
    const err = $("signin-error");
    if (!given) return;
    try {
      await api("GET", "stats", {}, given);
    } catch (e) {
      err.textContent = e.status === 401 ? "That token was refused." : "Could not sign in: " + e.message;
      err.hidden = false;
      $("signin-token").select();
      return;
    }
    token = given;
    sessionStorage.setItem(TOKEN_KEY, given);
    $("signin-token").value = "";
    err.hidden = true;
    if (!location.hash || location.hash === "#/signin") location.hash = "#/overview";
    else route();
  }

  function signOut() {
    token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    $("signout").hidden = true;
    $("nav").hidden = true;
    signedOut("");
  }

  // === pages ===

  const PAGES = ["signin", "overview", "events", "event", "dead"];
  let current = null;
  /// Bumped on every navigation: a timer or answer of an older page sees it changed and stops.
  let generation = 0;

  function showPage(name) {
    generation += 1;
    current = name;
    $("loading").hidden = true;
    for (const p of PAGES) $("page-" + p).hidden = p !== name;
    const signedIn = name !== "signin";
    $("nav").hidden = !signedIn;
    $("signout").hidden = !(signedIn && token);
    for (const a of document.querySelectorAll("#nav a")) {
      const here = a.dataset.page === name || (name === "event" && a.dataset.page === "events");
      if (here) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    const title = $("page-" + name).querySelector("h1");
    document.title = title.textContent + " · hookgate";
    if (name !== "signin") showError("");
    return generation;
  }

  /// The page and its parameters from the hash: `#/events?source=a`, `#/event/12`.
  function parseHash() {
    const raw = location.hash.replace(/^#\/?/, "");
    const [path, qs] = raw.split("?", 2);
    const params = new URLSearchParams(qs || "");
    const parts = path.split("/").filter(Boolean);
    return { page: parts[0] || "overview", arg: parts[1], params };
  }

  async function route() {
    if ((await needsToken()) && !token) {
      signedOut("");
      $("signin-token").focus();
      return;
    }
    const { page, arg, params } = parseHash();
    switch (page) {
      case "events":
        return enter("events", (gen) => eventsPage(gen, params));
      case "event":
        return enter("event", (gen) => eventPage(gen, arg));
      case "dead":
        return enter("dead", (gen) => deadPage(gen, params));
      case "signin":
        location.hash = "#/overview";
        return;
      default:
        return enter("overview", (gen) => overviewPage(gen));
    }
  }

  function enter(name, render) {
    const gen = showPage(name);
    $("page-" + name).querySelector("h1").focus({ preventScroll: true });
    return guarded(() => render(gen));
  }

  // === source names, for the filters ===

  async function sourceNames() {
    const stats = await api("GET", "stats");
    return stats.sources.map((s) => s.name);
  }

  function fillSources(select, names, chosen) {
    const first = select.options[0];
    clear(select);
    select.append(first);
    for (const name of names) select.append(el("option", { value: name }, name));
    if (chosen && !names.includes(chosen)) select.append(el("option", { value: chosen }, chosen));
    select.value = chosen || "";
  }

  // === overview ===

  /// The totals seen at each poll, oldest first: { t, accepted, rejected }.
  const samples = [];

  async function overviewPage(gen) {
    $("overview-every").textContent = String(OVERVIEW_EVERY_MS / 1000);
    const poll = async () => {
      if (gen !== generation) return;
      await guarded(async () => {
        const stats = await api("GET", "stats");
        if (gen !== generation) return;
        renderOverview(stats.sources);
        record(stats.sources);
        drawChart();
        $("overview-updated").textContent = "; updated " + new Date().toLocaleTimeString();
      });
      if (gen === generation) setTimeout(poll, OVERVIEW_EVERY_MS);
    };
    drawChart();
    await poll();
  }

  function renderOverview(sources) {
    const tbody = $("overview-table").tBodies[0];
    clear(tbody);
    if (sources.length === 0) emptyRow(tbody, 9, "No sources are configured.");
    for (const s of sources) {
      const reasons = Object.entries(s.rejected || {});
      const rejectedTotal = reasons.reduce((n, [, c]) => n + c, 0);
      const rejected = el("td", {}, String(rejectedTotal));
      if (reasons.length) {
        rejected.append(el("ul", { class: "reasons" }, ...reasons.map(([r, c]) => el("li", {}, `${r} ${c}`))));
      }
      const dead = s.dead > 0 ? el("a", { href: "#/dead?source=" + encodeURIComponent(s.name) }, String(s.dead)) : "0";
      const events = el("a", { href: "#/events?source=" + encodeURIComponent(s.name) }, s.name);
      tbody.append(
        el(
          "tr",
          { "data-source": s.name },
          el("th", { scope: "row", class: "wrap" }, events),
          el("td", { class: "num" }, String(s.accepted)),
          el("td", { class: "num" }, String(s.duplicates)),
          rejected,
          el("td", { class: "num" }, String(s.queued)),
          el("td", { class: "num" }, dead),
          el("td", { class: "num" }, String(s.delivered)),
          el("td", {}, when(s.last_event_at)),
          el("td", {}, s.silent ? el("span", { class: "badge silent" }, "silent") : el("span", { class: "badge ok" }, "receiving")),
        ),
      );
    }
  }

  function record(sources) {
    const now = Date.now();
    let accepted = 0;
    let rejected = 0;
    for (const s of sources) {
      accepted += s.accepted;
      for (const c of Object.values(s.rejected || {})) rejected += c;
    }
    samples.push({ t: now, accepted, rejected });
    while (samples.length && samples[0].t < now - CHART_SPAN_MS) samples.shift();
  }

  /// Per interval between two polls, how many were accepted and rejected (a restart, where the
  /// counters fall, counts from zero).
  function deltas() {
    const out = [];
    for (let i = 1; i < samples.length; i++) {
      const a = samples[i - 1];
      const b = samples[i];
      const d = (x, y) => (y >= x ? y - x : y);
      out.push({ t: b.t, accepted: d(a.accepted, b.accepted), rejected: d(a.rejected, b.rejected) });
    }
    return out;
  }

  function drawChart() {
    const chart = $("chart");
    clear(chart);
    // Drawn at the element's own width, so that the text is not stretched.
    const W = Math.max(280, Math.round(chart.getBoundingClientRect().width) || 600);
    const H = 180;
    chart.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const pad = { left: 34, right: 10, top: 10, bottom: 22 };
    const points = deltas();
    const max = Math.max(1, ...points.map((p) => Math.max(p.accepted, p.rejected)));
    const now = Date.now();
    // The x axis runs from the first sample (at most 5 minutes ago, at least 30 s) to now.
    const span = Math.min(CHART_SPAN_MS, Math.max(30000, samples.length ? now - samples[0].t : 0));
    const x = (t) => pad.left + ((t - (now - span)) / span) * (W - pad.left - pad.right);
    const y = (v) => H - pad.bottom - (v / max) * (H - pad.top - pad.bottom);
    const ticks = max >= 2 ? [0, Math.round(max / 2), max] : [0, max];
    for (const v of ticks) {
      chart.append(svg("line", { class: "grid", x1: pad.left, x2: W - pad.right, y1: y(v), y2: y(v) }));
      chart.append(svg("text", { class: "axis-label", x: pad.left - 6, y: y(v) + 4, "text-anchor": "end", text: String(v) }));
    }
    const ago = Math.round(span / 1000);
    const startLabel = ago >= 60 ? `−${Math.round(ago / 60)} min` : `−${ago} s`;
    chart.append(svg("text", { class: "axis-label", x: pad.left, y: H - 6, "text-anchor": "start", text: startLabel }));
    chart.append(svg("text", { class: "axis-label", x: W - pad.right, y: H - 6, "text-anchor": "end", text: "now" }));
    for (const kind of ["accepted", "rejected"]) {
      if (points.length === 0) continue;
      // Each interval's count, drawn as a step at the poll that saw it.
      const coords = [`${x(samples[0].t).toFixed(1)},${y(0).toFixed(1)}`];
      for (const p of points) coords.push(`${x(p.t).toFixed(1)},${y(p[kind]).toFixed(1)}`);
      chart.append(svg("polyline", { class: "line " + kind, points: coords.join(" ") }));
    }
    const sum = (k) => points.reduce((n, p) => n + p[k], 0);
    $("chart-summary").textContent =
      points.length === 0
        ? "No samples yet: the chart fills while this page is open."
        : `In the last ${startLabel.slice(1)} shown: ${sum("accepted")} accepted, ${sum("rejected")} rejected.`;
  }

  // === events ===

  function pageLinks(prefix, base, events, limit) {
    const newest = $(prefix + "-newest");
    const older = $(prefix + "-older");
    const withoutBefore = new URLSearchParams(base);
    withoutBefore.delete("before");
    newest.href = `#/${prefix}` + (withoutBefore.toString() ? "?" + withoutBefore : "");
    const atNewest = !base.get("before");
    newest.setAttribute("aria-disabled", atNewest ? "true" : "false");
    if (atNewest) newest.setAttribute("tabindex", "-1");
    else newest.removeAttribute("tabindex");
    const more = events.length === limit;
    if (more) {
      const next = new URLSearchParams(base);
      next.set("before", String(events[events.length - 1].id));
      older.href = `#/${prefix}?` + next;
      older.setAttribute("aria-disabled", "false");
      older.removeAttribute("tabindex");
    } else {
      older.setAttribute("aria-disabled", "true");
      older.setAttribute("tabindex", "-1");
    }
  }

  function limitOf(params) {
    const n = Number.parseInt(params.get("limit") || "", 10);
    return n >= 1 && n <= 1000 ? n : PAGE_SIZE;
  }

  async function eventsPage(gen, params) {
    const form = $("events-filter");
    const names = await sourceNames();
    if (gen !== generation) return;
    fillSources(form.source, names, params.get("source"));
    form.state.value = params.get("state") || "";
    form.since.value = toLocalInput(params.get("since"));
    form.until.value = toLocalInput(params.get("until"));
    const limit = limitOf(params);
    const list = await api("GET", "events", {
      source: params.get("source"),
      state: params.get("state"),
      since: params.get("since"),
      until: params.get("until"),
      before: params.get("before"),
      limit,
    });
    if (gen !== generation) return;
    const tbody = $("events-table").tBodies[0];
    clear(tbody);
    if (list.events.length === 0) emptyRow(tbody, 7, "No events match.");
    for (const e of list.events) {
      const outcome = e.state === "dead" ? e.dead_reason : e.last_error || (e.last_status ? `status ${e.last_status}` : "–");
      tbody.append(
        el(
          "tr",
          { "data-id": e.id },
          el("td", { class: "num" }, el("a", { href: "#/event/" + e.id, "aria-label": "Event " + e.id }, String(e.id))),
          el("td", { class: "wrap" }, e.source),
          el("td", { class: "mono" }, e.event_id),
          el("td", {}, stateBadge(e.state)),
          el("td", {}, when(e.received_at)),
          el("td", { class: "num" }, String(e.attempts)),
          el("td", { class: "wrap" }, outcome || "–"),
        ),
      );
    }
    const n = list.events.length;
    $("events-count").textContent = `${n} event${n === 1 ? "" : "s"} shown, newest first` + (params.get("before") ? ` (below id ${params.get("before")})` : "") + ".";
    pageLinks("events", params, list.events, limit);
  }

  function applyEventsFilter(event) {
    event.preventDefault();
    const form = $("events-filter");
    const params = new URLSearchParams();
    if (form.source.value) params.set("source", form.source.value);
    if (form.state.value) params.set("state", form.state.value);
    const since = toApiTime(form.since.value);
    const until = toApiTime(form.until.value);
    if (since) params.set("since", since);
    if (until) params.set("until", until);
    const limit = parseHash().params.get("limit");
    if (limit) params.set("limit", limit);
    go("#/events" + (params.toString() ? "?" + params : ""));
  }

  /// Navigates to `hash`; the same hash again reloads the page's data.
  function go(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  }

  // === one event ===

  async function eventPage(gen, arg) {
    const id = Number.parseInt(arg || "", 10);
    if (!Number.isSafeInteger(id) || String(id) !== arg) {
      $("event-title").textContent = "No such event";
      showError(`"${arg || ""}" is not an event id.`);
      return;
    }
    $("event-title").textContent = "Event " + id;
    $("event-status").textContent = "";
    // Nothing of the event shown before stays while this one loads.
    shown = null;
    clear($("event-facts"));
    for (const t of ["event-attempts", "event-headers"]) clear($(t).tBodies[0]);
    $("event-body").textContent = "";
    $("event-body-note").textContent = "";
    await loadEvent(gen, id);
  }

  let shown = null;

  async function loadEvent(gen, id) {
    let answer;
    try {
      answer = await api("GET", "events/" + id, { include: "body" });
    } catch (e) {
      if (e.status === 404) {
        if (gen !== generation) return;
        shown = null;
        clear($("event-facts"));
        for (const t of ["event-attempts", "event-headers"]) clear($(t).tBodies[0]);
        $("event-body").textContent = "";
        $("event-body-note").textContent = "";
        $("event-replay").disabled = true;
        $("event-delete").disabled = true;
        $("event-status").textContent = `Event ${id} is not stored (deleted, or purged after its retention).`;
        return;
      }
      throw e;
    }
    if (gen !== generation) return;
    renderEvent(answer.event);
  }

  function renderEvent(e) {
    shown = e;
    $("event-replay").disabled = false;
    $("event-delete").disabled = false;
    const facts = $("event-facts");
    clear(facts);
    const fact = (name, value) => facts.append(el("dt", {}, name), el("dd", {}, value));
    fact("Source", e.source);
    fact("Event id", el("code", {}, e.event_id));
    fact("State", stateBadge(e.state));
    fact("Received", when(e.received_at));
    fact("Attempts", String(e.attempts));
    if (e.next_attempt_at) fact("Next attempt", when(e.next_attempt_at));
    if (e.delivered_at) fact("Delivered", when(e.delivered_at));
    if (e.dead_reason) fact("Dead because", e.dead_reason);
    if (e.last_error && e.state !== "delivered") fact("Last error", e.last_error);

    const attempts = $("event-attempts").tBodies[0];
    clear(attempts);
    const history = e.history || [];
    if (history.length === 0) emptyRow(attempts, 4, "No attempt yet.");
    history.forEach((a, i) => {
      attempts.append(
        el(
          "tr",
          {},
          el("td", { class: "num" }, String(i + 1)),
          el("td", {}, when(a.at)),
          el("td", { class: "num" }, a.status === null || a.status === undefined ? "–" : String(a.status)),
          el("td", { class: "wrap" }, a.outcome),
        ),
      );
    });

    const headers = $("event-headers").tBodies[0];
    clear(headers);
    for (const [name, value] of e.headers || []) {
      headers.append(el("tr", {}, el("th", { scope: "row", class: "mono" }, name), el("td", { class: "mono" }, value)));
    }
    if (!(e.headers || []).length) emptyRow(headers, 2, "No headers stored.");

    const body = $("event-body");
    const note = $("event-body-note");
    if (typeof e.body === "string") {
      let pretty = null;
      try {
        pretty = JSON.stringify(JSON.parse(e.body), null, 2);
      } catch (err) {
        pretty = null;
      }
      body.textContent = pretty === null ? e.body : pretty;
      note.textContent = pretty === null ? `Text, ${e.body.length} characters.` : "JSON, pretty-printed.";
      if (e.body.length === 0) note.textContent = "Empty.";
    } else if (typeof e.body_base64 === "string") {
      body.textContent = e.body_base64;
      note.textContent = "Not UTF-8: shown in base64.";
    } else {
      body.textContent = "";
      note.textContent = "No body stored.";
    }
  }

  /// Re-reads the event until it leaves the queue (delivered or dead), a bounded number of times.
  function follow(gen, id, left) {
    if (gen !== generation || left <= 0) return;
    setTimeout(async () => {
      if (gen !== generation) return;
      await guarded(() => loadEvent(gen, id));
      if (shown && shown.id === id && shown.state === "queued") follow(gen, id, left - 1);
      else if (shown && shown.id === id) $("event-status").textContent = `Replayed: now ${shown.state}.`;
    }, FOLLOW_EVERY_MS);
  }

  async function replayShown() {
    if (!shown) return;
    const id = shown.id;
    const gen = generation;
    await guarded(async () => {
      await api("POST", `events/${id}/replay`);
      $("event-status").textContent = "Replayed: queued for delivery now.";
      await loadEvent(gen, id);
      if (shown && shown.id === id && shown.state !== "queued") $("event-status").textContent = `Replayed: now ${shown.state}.`;
      else follow(gen, id, FOLLOW_TIMES);
    });
  }

  async function deleteShown() {
    if (!shown) return;
    const id = shown.id;
    if (!(await confirmAction(`Delete event ${id} (${shown.source}, ${shown.event_id}) for good? A sender's retry of it is still a duplicate.`, "Delete"))) return;
    await guarded(async () => {
      await api("DELETE", `events/${id}`);
      location.hash = "#/events";
    });
  }

  // === dead letters ===

  async function deadPage(gen, params) {
    const names = await sourceNames();
    if (gen !== generation) return;
    fillSources($("dead-source"), names, params.get("source"));
    fillSources($("window-source"), names, $("window-source").value || params.get("source"));
    await loadDead(gen, params);
  }

  async function loadDead(gen, params) {
    const limit = limitOf(params);
    const list = await api("GET", "events", {
      state: "dead",
      source: params.get("source"),
      before: params.get("before"),
      limit,
    });
    if (gen !== generation) return;
    const tbody = $("dead-table").tBodies[0];
    clear(tbody);
    $("dead-all").checked = false;
    if (list.events.length === 0) emptyRow(tbody, 7, "No dead letters.");
    for (const e of list.events) {
      const box = el("input", { type: "checkbox", class: "pick", value: e.id, "aria-label": `Select event ${e.id} (${e.source})` });
      tbody.append(
        el(
          "tr",
          { "data-id": e.id },
          el("td", {}, box),
          el("td", { class: "num" }, el("a", { href: "#/event/" + e.id, "aria-label": "Event " + e.id }, String(e.id))),
          el("td", { class: "wrap" }, e.source),
          el("td", { class: "mono" }, e.event_id),
          el("td", {}, when(e.received_at)),
          el("td", { class: "num" }, String(e.attempts)),
          el("td", { class: "wrap" }, e.dead_reason || "–"),
        ),
      );
    }
    pageLinks("dead", params, list.events, limit);
    updateDeadButtons();
  }

  function picked() {
    return [...document.querySelectorAll("#dead-table input.pick:checked")].map((b) => Number(b.value));
  }

  function updateDeadButtons() {
    const n = picked().length;
    $("dead-replay").disabled = n === 0;
    $("dead-delete").disabled = n === 0;
    $("dead-replay").textContent = n ? `Replay ${n} selected…` : "Replay selected…";
    $("dead-delete").textContent = n ? `Delete ${n} selected…` : "Delete selected…";
  }

  async function onSelected(kind) {
    const ids = picked();
    if (ids.length === 0) return;
    const noun = ids.length === 1 ? "dead letter" : "dead letters";
    const text =
      kind === "replay"
        ? `Replay ${ids.length} ${noun} (${ids.join(", ")})? Each is queued for delivery now.`
        : `Delete ${ids.length} ${noun} (${ids.join(", ")}) for good?`;
    if (!(await confirmAction(text, kind === "replay" ? "Replay" : "Delete"))) return;
    const gen = generation;
    await guarded(async () => {
      let done = 0;
      let gone = 0;
      for (const id of ids) {
        try {
          await api(kind === "replay" ? "POST" : "DELETE", kind === "replay" ? `events/${id}/replay` : `events/${id}`);
          done += 1;
        } catch (e) {
          if (e.status !== 404) throw e;
          gone += 1;
        }
      }
      $("dead-status").textContent =
        (kind === "replay" ? `Replayed ${done}.` : `Deleted ${done}.`) + (gone ? ` ${gone} were no longer stored.` : "");
      await loadDead(gen, parseHash().params);
    });
  }

  async function replayWindow(event) {
    event.preventDefault();
    const form = $("window-form");
    const source = form.source.value;
    if (!source) {
      form.source.focus();
      return;
    }
    const since = toApiTime(form.since.value);
    const until = toApiTime(form.until.value);
    const gen = generation;
    await guarded(async () => {
      const matching = await api("GET", "events", { state: "dead", source, since, until, limit: 1000 });
      const n = matching.events.length;
      const span = [since ? "from " + new Date(since).toLocaleString() : "", until ? "before " + new Date(until).toLocaleString() : ""]
        .filter(Boolean)
        .join(" and ");
      if (n === 0) {
        $("dead-status").textContent = `No dead letters of ${source}${span ? " received " + span : ""}.`;
        return;
      }
      const count = n === 1000 ? "at least 1000" : String(n);
      const text = `Replay ${count} dead letter${n === 1 ? "" : "s"} of ${source}${span ? " received " + span : ""}?`;
      if (!(await confirmAction(text, "Replay"))) return;
      const answer = await api("POST", "replay", { source, since, until });
      $("dead-status").textContent = `Replayed ${answer.replayed} of ${source}.`;
      if (gen === generation) await loadDead(gen, parseHash().params);
    });
  }

  // === confirmation ===

  /// Asks in a modal dialog (focus stays in it; Escape cancels); true if confirmed.
  function confirmAction(text, verb) {
    const dialog = $("confirm");
    $("confirm-text").textContent = text;
    $("confirm-ok").textContent = verb;
    $("confirm-title").textContent = verb + "?";
    dialog.returnValue = "cancel";
    return new Promise((resolve) => {
      const opener = document.activeElement;
      dialog.addEventListener(
        "close",
        () => {
          resolve(dialog.returnValue === "ok");
          if (opener && opener.focus) opener.focus();
        },
        { once: true },
      );
      dialog.showModal();
      $("confirm-cancel").focus();
    });
  }

  // === start ===

  function start() {
    $("signin-form").addEventListener("submit", signIn);
    $("signout").addEventListener("click", signOut);
    $("events-filter").addEventListener("submit", applyEventsFilter);
    $("events-clear").addEventListener("click", () => go("#/events"));
    $("dead-filter").addEventListener("submit", (event) => {
      event.preventDefault();
      const source = $("dead-source").value;
      go("#/dead" + (source ? "?source=" + encodeURIComponent(source) : ""));
    });
    $("dead-table").addEventListener("change", (event) => {
      if (event.target.id === "dead-all") {
        for (const b of document.querySelectorAll("#dead-table input.pick")) b.checked = event.target.checked;
      }
      updateDeadButtons();
    });
    $("dead-replay").addEventListener("click", () => onSelected("replay"));
    $("dead-delete").addEventListener("click", () => onSelected("delete"));
    $("window-form").addEventListener("submit", replayWindow);
    $("event-replay").addEventListener("click", replayShown);
    $("event-delete").addEventListener("click", deleteShown);
    window.addEventListener("hashchange", () => route());
    route().catch((e) => showError("The page could not start: " + e.message));
  }

  start();
})();
