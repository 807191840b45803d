// ten dashboard: polls the instances every second, shows one instance
// with charts drawn as inline SVG and a live log tail (Server-Sent Events).
"use strict";
(function () {
  const csrf = document.body.dataset.csrf;
  const $ = (id) => document.getElementById(id);
  let current = "";      // instance shown in the detail view
  let logSource = null;
  let lastOK = 0;
  const prevCPU = new Map(); // instance -> [cpu seconds, time ms] of the last poll

  // cpuPercent turns the CPU time counter into a share of one CPU since
  // the last poll.
  function cpuPercent(i, now) {
    const prev = prevCPU.get(i.instance);
    prevCPU.set(i.instance, [i.cpu_seconds, now]);
    if (!prev || !i.cpu_seconds || i.cpu_seconds < prev[0] || now <= prev[1]) return i.cpu_seconds ? "…" : "–";
    return ((i.cpu_seconds - prev[0]) / ((now - prev[1]) / 1000) * 100).toFixed(1) + "%";
  }

  function fmtBytes(n) {
    if (!n) return "–";
    const u = ["B", "KiB", "MiB", "GiB"]; let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return n.toFixed(i ? 1 : 0) + " " + u[i];
  }
  function fmtDur(s) {
    if (!s) return "–";
    if (s < 60) return Math.round(s) + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + String(Math.round(s % 60)).padStart(2, "0") + "s";
    return Math.floor(s / 3600) + "h" + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + "m";
  }
  function td(text, cls) { const e = document.createElement("td"); e.textContent = text; if (cls) e.className = cls; return e; }
  function badge(state) { const s = document.createElement("span"); s.className = "state state-" + state; s.textContent = state; return s; }

  // inflight holds the requests under way, so signing out can wait for
  // them: a poll answered after the session ends would be a 401.
  const inflight = new Set();
  let leaving = false;
  function api(path, opts) {
    if (leaving) return Promise.reject(new Error("signing out"));
    const p = (async () => {
      const r = await fetch(path, Object.assign({ credentials: "same-origin" }, opts || {}));
      if (r.status === 401) { location.href = "/dashboard"; throw new Error("signed out"); }
      const body = await r.json();
      if (!r.ok) throw new Error(body.error || r.statusText);
      return body;
    })();
    inflight.add(p);
    const done = () => inflight.delete(p);
    p.then(done, done);
    return p;
  }
  function post(path, body) {
    return api(path, { method: "POST", headers: { "X-CSRF-Token": csrf, "Content-Type": "application/json" }, body: JSON.stringify(body || {}) });
  }

  function renderList(list) {
    const now = Date.now();
    const tb = $("instances").tBodies[0];
    tb.replaceChildren();
    for (const i of list) {
      const tr = document.createElement("tr");
      tr.dataset.instance = i.instance;
      tr.dataset.state = i.state;
      const name = document.createElement("td");
      const a = document.createElement("a");
      a.href = "#/i/" + encodeURIComponent(i.instance); a.textContent = i.instance;
      name.appendChild(a); tr.appendChild(name);
      const st = document.createElement("td"); st.appendChild(badge(i.state)); tr.appendChild(st);
      tr.appendChild(td(i.health || "–", "health-" + (i.health || "unknown")));
      tr.appendChild(td(fmtBytes(i.memory_bytes), "num"));
      const cpu = td(cpuPercent(i, now), "num");
      cpu.title = i.cpu_seconds ? i.cpu_seconds.toFixed(2) + " s in total" : "";
      tr.appendChild(cpu);
      tr.appendChild(td(i.rps.toFixed(1), "num"));
      tr.appendChild(td(String(i.wakes), "num"));
      tr.appendChild(td(i.last_wake_ms ? i.last_wake_ms.toFixed(1) + " ms" : "–", "num"));
      tr.appendChild(td(String(i.weight), "num"));
      tr.appendChild(td(fmtDur(i.uptime_seconds), "num"));
      tr.appendChild(td(fmtDur(i.idle_seconds), "num"));
      tb.appendChild(tr);
    }
    $("empty").hidden = list.length > 0;
  }

  function renderDetail(i) {
    $("d-name").textContent = i.instance;
    const f = $("d-facts"); f.replaceChildren();
    const facts = [["state", i.state + (i.detail ? " (" + i.detail + ")" : "")], ["health", i.health || "–"], ["memory", fmtBytes(i.memory_bytes)],
      ["req/s", i.rps.toFixed(1)], ["wakes", String(i.wakes)], ["weight", String(i.weight)], ["uptime", fmtDur(i.uptime_seconds)],
      ["idle", fmtDur(i.idle_seconds)], ["restarts", String(i.restarts)]];
    for (const [k, v] of facts) {
      const s = document.createElement("span"); s.append(k + " ");
      const b = document.createElement("b"); b.textContent = v; b.id = "f-" + k.replace("/", ""); s.appendChild(b); f.appendChild(s);
    }
    // Keep what the user typed: update the field only while it still shows
    // the weight last rendered (and is not being edited).
    const w = $("d-weight");
    if (document.activeElement !== w && (w.dataset.shown === undefined || w.value === w.dataset.shown)) {
      w.value = i.weight;
      w.dataset.shown = String(i.weight);
    }
    $("d-units").textContent = i.service_unit + "\n" + i.socket_unit + "\n\n" + i.commands.map((c) => "$ " + c).join("\n");
  }

  async function tick() {
    try {
      const d = await api("/dashboard/api/instances");
      lastOK = Date.now();
      renderList(d.instances);
      if (current) {
        const i = d.instances.find((x) => x.instance === current);
        if (i) renderDetail(i); else $("d-name").textContent = current + " (gone)";
      }
    } catch (e) { /* shown by the stale badge */ }
    for (const el of document.querySelectorAll(".live")) el.classList.toggle("stale", Date.now() - lastOK > 5000);
  }

  const NS = "http://www.w3.org/2000/svg";
  function chart(svg, series, opts) {
    svg.replaceChildren();
    const W = 360, H = 80;
    let max = 0;
    for (const s of series) for (const v of s.values) max = Math.max(max, v);
    if (max <= 0) max = 1;
    for (const y of [H * 0.25, H * 0.5, H * 0.75]) {
      const l = document.createElementNS(NS, "line");
      l.setAttribute("x1", 0); l.setAttribute("x2", W); l.setAttribute("y1", y); l.setAttribute("y2", y); l.setAttribute("class", "grid");
      svg.appendChild(l);
    }
    series.forEach((s, k) => {
      const n = s.values.length;
      const pts = s.values.map((v, x) => (x * W / (n - 1)).toFixed(1) + "," + (H - 2 - v / max * (H - 6)).toFixed(1));
      if (k === 0) {
        const area = document.createElementNS(NS, "polygon");
        area.setAttribute("points", "0," + H + " " + pts.join(" ") + " " + W + "," + H);
        area.setAttribute("class", "area"); svg.appendChild(area);
      }
      const p = document.createElementNS(NS, "polyline");
      p.setAttribute("points", pts.join(" ")); p.setAttribute("class", k === 0 ? "a" : "b");
      svg.appendChild(p);
    });
    const cap = svg.parentNode.querySelector("figcaption");
    cap.dataset.max = opts.fmt(max);
    let m = cap.querySelector("span");
    if (!m) { m = document.createElement("span"); cap.appendChild(m); }
    m.textContent = "max " + opts.fmt(max);
  }

  async function loadHistory() {
    if (!current) return;
    try {
      const h = await api("/dashboard/api/instances/" + encodeURIComponent(current) + "/history");
      const b = h.buckets;
      chart($("c-req"), [{ values: b.map((x) => x.requests) }], { fmt: (v) => String(Math.round(v)) });
      chart($("c-lat"), [{ values: b.map((x) => x.avg_ms) }, { values: b.map((x) => x.max_ms) }], { fmt: (v) => v.toFixed(1) + " ms" });
      chart($("c-mem"), [{ values: b.map((x) => x.memory) }], { fmt: fmtBytes });
    } catch (e) { /* next round */ }
  }

  function followLog() {
    if (logSource) { logSource.close(); logSource = null; }
    const pre = $("d-log"); pre.replaceChildren();
    if (!current) return;
    logSource = new EventSource("/dashboard/api/instances/" + encodeURIComponent(current) + "/logs");
    logSource.addEventListener("log", (ev) => {
      const l = JSON.parse(ev.data);
      const line = document.createElement("div");
      line.className = l.stream === "stderr" ? "err" : l.stream === "systemd" ? "sys" : "";
      line.textContent = new Date(l.time).toLocaleTimeString() + "  " + l.message;
      pre.appendChild(line);
      while (pre.childNodes.length > 500) pre.removeChild(pre.firstChild);
      pre.scrollTop = pre.scrollHeight;
    });
  }

  function route() {
    const m = location.hash.match(/^#\/i\/(.+)$/);
    const next = m ? decodeURIComponent(m[1]) : "";
    $("list").hidden = !!next;
    $("detail").hidden = !next;
    if (next !== current) {
      current = next;
      $("d-msg").textContent = "";
      delete $("d-weight").dataset.shown;
      followLog();
      loadHistory();
    }
    tick();
  }

  async function act(what, body) {
    $("d-msg").textContent = what + "…";
    try {
      await post("/dashboard/api/instances/" + encodeURIComponent(current) + "/" + what, body);
      $("d-msg").textContent = what + ": done";
    } catch (e) { $("d-msg").textContent = what + ": " + e.message; }
    tick();
  }
  $("d-restart").addEventListener("click", () => act("restart"));
  $("d-stop").addEventListener("click", () => { if (confirm("Stop " + current + "? It is removed until spawned again.")) act("stop"); });
  $("d-setweight").addEventListener("click", () => act("weight", { weight: Number($("d-weight").value) }));

  // Sign out only once nothing else is under way: stop polling and the
  // log tail, let the requests already sent finish, then send the form.
  const signout = document.querySelector("form.signout");
  if (signout) signout.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (leaving) return;
    leaving = true;
    if (logSource) { logSource.close(); logSource = null; }
    Promise.allSettled([...inflight]).then(() => signout.submit());
  });

  window.addEventListener("hashchange", route);
  route();
  setInterval(tick, 1000);
  setInterval(loadHistory, 5000);
})();
