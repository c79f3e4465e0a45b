// Coppice console: a single page over the daemon's REST API (no framework, no build step).
//
// Every call goes to the API itself with the session cookie; changes carry the session's CSRF
// token (from the page's <meta>) in X-CSRF-Token. A refused call shows the API's own message.
// Lists come paged and searched from the server (/console/api/*); jobs arrive live as
// server-sent events (/console/api/events).
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const PAGE = 100;
const FINAL = ["done", "failed", "cancelled", "interrupted"];
const state = {
  view: null,
  jobs: new Map(),          // id -> job record, kept live by the event stream
  watch: null,              // provision job the VMs view follows
  volumes: { q: "", offset: 0, collapse: new Set(), expand: new Set() },
  luns: { q: "", offset: 0 },
  vms: { q: "", offset: 0 },
  hours: 24,
};

// ---- helpers -------------------------------------------------------------------------------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const $ = (sel, root) => (root || document).querySelector(sel);

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0, v = Number(n);
  while (Math.abs(v) >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return (i === 0 ? v.toFixed(0) : v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)) + " " + u[i];
}
function pct(a, b) { return b ? Math.round((100 * a) / b) : 0; }
function when(t) { return t ? new Date(t * 1000).toLocaleString() : "–"; }
function secs(s) {
  if (s === null || s === undefined) return "–";
  if (s < 1) return (s * 1000).toFixed(0) + " ms";
  if (s < 120) return s.toFixed(s < 10 ? 2 : 1) + " s";
  return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
}
function pill(text, cls) { return h("span", { class: "pill " + (cls || text) }, text); }

class ApiError extends Error {
  constructor(message, body, status) { super(message); this.body = body; this.status = status; }
}

async function api(method, path, body) {
  const opts = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (method !== "GET") opts.headers["X-CSRF-Token"] = CSRF;
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  if (r.status === 401) { location.reload(); throw new ApiError("Signed out", null, 401); }
  let data = null;
  if (r.status !== 204) data = await r.json().catch(() => null);
  if (!r.ok) {
    const msg = data && data.message ? data.message : `${r.status} ${r.statusText}`;
    throw new ApiError(msg, data, r.status);
  }
  return data;
}
const seg = (s) => encodeURIComponent(s);
function qs(o) {
  return Object.entries(o).filter(([, v]) => v !== "" && v !== null && v !== undefined)
    .map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join("&");
}

function say(text, isError) {
  const box = $("#status");
  const m = h("div", { class: "msg" + (isError ? " error" : "") }, text);
  box.append(m);
  setTimeout(() => m.remove(), isError ? 12000 : 5000);
}

// ---- dialog ----------------------------------------------------------------------------------
// ask(title, fields, okLabel, run): a modal form; run(values) does the call. A refusal keeps the
// dialog open with the API's message; success closes it.
function ask(title, fields, okLabel, run, danger) {
  const dlg = $("#dialog");
  // Keyboard users go back to the button that opened the dialog, found again by its label
  // since a change redraws the view; else to the view itself.
  const opener = document.activeElement && document.activeElement.getAttribute("aria-label");
  dlg.onclose = () => {
    const again = opener && [...document.querySelectorAll("#main button")].find((b) => b.getAttribute("aria-label") === opener);
    (again || $("#main")).focus();
  };
  $("#dialog-title").textContent = title;
  const body = $("#dialog-body");
  body.replaceChildren();
  const inputs = {};
  for (const f of fields) {
    if (f.note) { body.append(h("p", {}, f.note)); continue; }
    const id = "f-" + f.name;
    if (f.type === "checkbox") {
      inputs[f.name] = h("input", { id, type: "checkbox", checked: !!f.value });
      body.append(h("div", { class: "check" }, inputs[f.name], h("label", { for: id }, f.label)));
    } else if (f.type === "select") {
      inputs[f.name] = h("select", { id }, f.options.map((o) => h("option", { value: o }, o)));
      if (f.value) inputs[f.name].value = f.value;
      body.append(h("div", { class: "field" }, h("label", { for: id }, f.label), inputs[f.name]));
    } else {
      inputs[f.name] = h("input", {
        id, type: f.type || "text", value: f.value || "", required: f.required,
        placeholder: f.placeholder, spellcheck: "false",
      });
      body.append(h("div", { class: "field" }, h("label", { for: id }, f.label), inputs[f.name]));
    }
  }
  const err = $("#dialog-error");
  err.hidden = true;
  const ok = $("#dialog-ok");
  ok.textContent = okLabel;
  ok.className = danger ? "danger" : "primary";
  ok.disabled = false;
  const form = $("#dialog-form");
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    const values = {};
    for (const [k, el] of Object.entries(inputs)) values[k] = el.type === "checkbox" ? el.checked : el.value.trim();
    ok.disabled = true;
    err.hidden = true;
    try {
      const msg = await run(values);
      dlg.close();
      if (msg) say(msg);
    } catch (e) {
      err.textContent = e.message;
      err.hidden = false;
      ok.disabled = false;
      if (!(e instanceof ApiError)) console.error(e);
    }
  };
  $("#dialog-cancel").onclick = () => dlg.close();
  dlg.showModal();
  const first = body.querySelector("input, select");
  (first || ok).focus();
}

// ---- views -----------------------------------------------------------------------------------
const VIEWS = { pool: viewPool, volumes: viewVolumes, luns: viewLuns, vms: viewVms, jobs: viewJobs };

async function show(view, keepFocus) {
  if (!VIEWS[view]) view = "pool";
  state.view = view;
  for (const a of document.querySelectorAll("header nav a")) {
    if (a.id === "nav-" + view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const main = $("#main");
  try {
    const content = await VIEWS[view]();
    if (state.view !== view) return;
    // a redraw (live job events, a change) must not throw keyboard focus back to the top
    const had = document.activeElement;
    const key = keepFocus && had && main.contains(had) ? had.id || had.getAttribute("aria-label") : null;
    main.replaceChildren(...content);
    main.dataset.view = view;
    if (!keepFocus) main.focus();
    else if (key) {
      const el = document.getElementById(key) || [...main.querySelectorAll("button, input, select, a")].find((b) => b.getAttribute("aria-label") === key);
      (el || main).focus();
    }
  } catch (e) {
    main.replaceChildren(h("p", { class: "error", role: "alert" }, e.message));
  }
}
function refresh() { return show(state.view, true).then(() => {}); }

function pager(st, total, onMove, what) {
  const from = total ? st.offset + 1 : 0, to = Math.min(total, st.offset + PAGE);
  return h("div", { class: "pager" },
    h("button", { type: "button", class: "small", disabled: st.offset === 0, "aria-label": `Previous page of ${what}`,
      onclick: () => { st.offset = Math.max(0, st.offset - PAGE); onMove(); } }, "‹ Prev"),
    h("span", { "aria-live": "polite" }, `${from}–${to} of ${total}`),
    h("button", { type: "button", class: "small", disabled: to >= total, "aria-label": `Next page of ${what}`,
      onclick: () => { st.offset += PAGE; onMove(); } }, "Next ›"));
}
function search(st, label, id) {
  const input = h("input", { type: "search", id, value: st.q, placeholder: "name contains…" });
  let timer = null;
  const go = () => { st.q = input.value; st.offset = 0; refresh().then(() => { const i = $("#" + id); if (i) { i.focus(); i.setSelectionRange(i.value.length, i.value.length); } }); };
  input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(go, 300); });
  input.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); clearTimeout(timer); go(); } });
  return [h("label", { for: id }, label), input];
}

// ---- pool ------------------------------------------------------------------------------------
async function viewPool() {
  const [ov, space] = await Promise.all([
    api("GET", "/console/api/overview"),
    api("GET", "/console/api/space?" + qs({ hours: state.hours })),
  ]);
  const p = ov.pool;
  const total = p.total_bytes || p.used_bytes + p.free_bytes;
  const saved = { clones: h("dd", { id: "saved-clones" }, "computing…"), dedup: h("dd", { id: "saved-dedup" }, "computing…"),
    logical: h("dd", { id: "logical" }, "computing…") };
  api("GET", "/console/api/savings").then((s) => {
    const q = s.pool;
    $("#savings-at") && ($("#savings-at").textContent = `Savings computed ${when(s.at)}.`);
    saved.clones.replaceChildren(bytes(q.saved_clones_bytes));
    saved.dedup.replaceChildren(bytes(q.saved_dedup_bytes), " ", h("small", {}, `${(q.percent_saved_dedup || 0).toFixed(1)} %`));
    saved.logical.replaceChildren(bytes(q.logical_bytes), " ", h("small", {}, `${(q.percent_saved || 0).toFixed(1)} % saved`));
  }).catch((e) => { for (const d of Object.values(saved)) d.replaceChildren(h("span", { class: "error" }, e.message)); });
  const usedBar = h("div", { class: "bar", role: "img", "aria-label": `${pct(p.used_bytes, total)} % used` }, h("span", {}));
  usedBar.firstChild.style.width = pct(p.used_bytes, total) + "%";
  const kpi = (label, value, extra) => h("div", {}, h("dt", {}, label), value instanceof Node ? value : h("dd", {}, value, extra || ""));
  const hoursBtn = (hrs, label) => h("button", { type: "button", "aria-pressed": String(state.hours === hrs),
    onclick: () => { state.hours = hrs; refresh(); } }, label);
  return [
    h("h1", {}, "Pool ", h("span", { class: "muted mono" }, p.path)),
    h("dl", { class: "kpis", id: "pool-kpis" },
      kpi("Used (physical)", bytes(p.used_bytes), h("small", {}, ` ${pct(p.used_bytes, total)} %`)),
      kpi("Free", bytes(p.free_bytes)),
      kpi("Capacity", bytes(total)),
      kpi("Saved by clones", saved.clones),
      kpi("Saved by dedup", saved.dedup),
      kpi("Logical (written)", saved.logical),
      kpi("Metadata", bytes(p.metadata_bytes)),
      kpi("Volumes / clones", `${ov.volumes} / ${ov.clones}`),
      kpi("LUNs", String(ov.luns)),
      kpi("VMs", String(ov.vms)),
      kpi("NBD connections", ov.nbd_connections === null ? "n/a" : String(ov.nbd_connections)),
      kpi("Jobs running", String(ov.jobs_running))),
    usedBar,
    h("p", { class: "muted" }, h("span", { id: "savings-at" }, "Computing savings…"), " ",
      h("button", { type: "button", class: "small", id: "savings-fresh", onclick: async () => {
        $("#savings-at").textContent = "Computing savings…";
        try { await api("GET", "/console/api/savings?fresh=true"); await refresh(); } catch (e) { say(e.message, true); }
      } }, "Recompute")),
    h("section", { class: "card", id: "space-card" },
      h("div", { class: "toolbar" }, h("h2", { class: "grow" }, "Physical space used over time"),
        h("div", { class: "segmented", role: "group", "aria-label": "Time range" },
          hoursBtn(1, "1 h"), hoursBtn(6, "6 h"), hoursBtn(24, "24 h"), hoursBtn(72, "3 days"))),
      plot(space.samples, state.hours),
      h("p", { class: "muted" }, `One sample every ${secs(space.interval)}, kept for 3 days in the pool (space-history.bin). `
        + `${space.samples.length} sample(s) in this range`
        + (space.samples.length ? `, the first at ${when(space.samples[0].t)}.` : "."))),
  ];
}

// An SVG area plot of physical bytes used; axes in local time and binary units.
function plot(samples, hours) {
  const W = 900, H = 260, L = 70, R = 15, T = 12, B = 28;
  const NS = "http://www.w3.org/2000/svg";
  const s = (tag, attrs, text) => {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    return el;
  };
  const now = Date.now() / 1000;
  const since = now - hours * 3600;
  const pts = samples.filter((p) => p.t >= since);
  // A daemon younger than the range would squeeze its samples into the right edge: the axis
  // starts at the first sample instead (the caption says what the range holds).
  const t0 = pts.length > 1 ? Math.max(since, pts[0].t) : since, t1 = Math.max(now, t0 + 1);
  const span = t1 - t0;
  const maxUsed = Math.max(1, ...pts.map((p) => p.used));
  const step = niceStep(maxUsed / 4);
  const yMax = Math.max(step * 4, step * Math.ceil(maxUsed / step));
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - v / yMax) * (H - T - B);
  const first = pts.length ? pts[0] : null, last = pts.length ? pts[pts.length - 1] : null;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "plot", id: "space-plot", role: "img",
    "aria-label": pts.length ? `Physical space used, last ${hours} h: from ${bytes(first.used)} to ${bytes(last.used)}, peak ${bytes(maxUsed)}, `
      + `samples from ${new Date(pts[0].t * 1000).toLocaleString()}` : "No samples yet" });
  svg.append(s("title", {}, "Physical space used over time"));
  const axis = s("g", { class: "axis" });
  for (let v = 0; v <= yMax + 1; v += step) {
    axis.append(s("line", { class: "gridline", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    axis.append(s("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, bytes(v)));
  }
  const ticks = 6;
  for (let i = 0; i <= ticks; i++) {
    const t = t0 + (i * (t1 - t0)) / ticks;
    const d = new Date(t * 1000);
    const hm = { hour: "2-digit", minute: "2-digit" };
    const label = span > 86400 ? d.toLocaleDateString([], { weekday: "short" }) + " " + d.toLocaleTimeString([], hm)
      : span < 900 ? d.toLocaleTimeString([], { ...hm, second: "2-digit" }) : d.toLocaleTimeString([], hm);
    axis.append(s("text", { x: x(t), y: H - 8, "text-anchor": i === 0 ? "start" : i === ticks ? "end" : "middle" }, label));
  }
  svg.append(axis);
  if (pts.length) {
    const line = pts.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.used).toFixed(1)}`).join(" ");
    const area = `${line} L${x(last.t).toFixed(1)},${y(0)} L${x(first.t).toFixed(1)},${y(0)} Z`;
    svg.append(s("path", { class: "area", d: area }), s("path", { class: "line", d: line }));
    for (const p of pts.length < 60 ? pts : [last]) svg.append(s("circle", { cx: x(p.t), cy: y(p.used), r: 2.5, fill: "#2f6b3a" }));
  }
  return svg;
}
function niceStep(raw) {
  if (raw <= 0) return 1;
  const pow = Math.pow(1024, Math.floor(Math.log(raw) / Math.log(1024)));
  const m = raw / pow;
  const nice = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024].find((n) => n >= m) || 1024;
  return nice * pow;
}

// ---- volumes ---------------------------------------------------------------------------------
async function viewVolumes() {
  const st = state.volumes;
  const folds = [...st.collapse].map((k) => "&collapse=" + encodeURIComponent(k))
    .concat([...st.expand].map((k) => "&expand=" + encodeURIComponent(k))).join("");
  const page = await api("GET", "/console/api/tree?" + qs({ q: st.q, offset: st.offset, limit: PAGE }) + folds);
  const rows = page.rows.map(treeRow);
  return [
    h("h1", {}, "Volumes, snapshots and clones"),
    h("div", { class: "toolbar" }, ...search(st, "Search", "vol-search"),
      h("button", { type: "button", id: "vol-create", onclick: createVolume }, "Create volume…"),
      h("span", { class: "grow" }), pager(st, page.total, refresh, "volumes")),
    h("table", { class: "grid", id: "tree" },
      h("caption", { class: "muted" }, "Parent volume → snapshot → clones. Shared: blocks a clone still shares with its parent snapshot."),
      h("thead", {}, h("tr", {}, ["Name", "Kind", "Size", "Used", "Shared with parent", "Split", "State", "Actions"].map(
        (c, i) => h("th", { scope: "col", class: i >= 2 && i <= 4 ? "num" : null }, c)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 8, class: "muted" }, st.q ? "Nothing matches." : "No volumes yet.")))),
  ];
}

function toggleFold(key, collapsed) {
  const st = state.volumes;
  if (collapsed) { st.collapse.delete(key); st.expand.add(key); }
  else { st.expand.delete(key); st.collapse.add(key); }
  refresh();
}

function treeRow(r) {
  const key = `${r.volume}@${r.name}`;
  const indent = r.kind === "snapshot" && r.collapsed !== undefined
    ? h("button", { type: "button", class: "fold", "aria-expanded": String(!r.collapsed),
      "aria-label": `${r.collapsed ? "Show" : "Hide"} the ${r.held_by_count} clone(s) of ${key}`,
      onclick: () => toggleFold(key, r.collapsed) }, r.collapsed ? "▸" : "▾")
    : h("span", { class: "glyph" }, r.kind === "snapshot" ? "◆" : r.clone ? "↳" : "▣");
  const name = h("td", { class: "name" }, indent, r.name,
    r.collapsed ? h("span", { class: "muted" }, ` (${r.held_by_count} clones hidden)`) : null);
  name.style.paddingLeft = 0.6 + r.depth * 1.4 + "em";
  const tr = h("tr", { class: r.kind + (r.match ? " match" : ""), "data-kind": r.kind, "data-name": r.name,
    "data-volume": r.kind === "snapshot" ? r.volume : r.name, "aria-level": r.depth + 1 });
  if (r.kind === "volume") {
    const split = r.split ? pill(`${r.split.state}${r.split.total ? " " + pct(r.split.done, r.split.total) + " %" : ""}`, r.split.state)
      : r.clone ? pill("not split", "queued") : "–";
    tr.append(name, h("td", { title: r.clone ? `clone of ${r.parent_volume}@${r.parent_snapshot}` : null }, r.clone ? "clone" : "volume"),
      h("td", { class: "num" }, bytes(r.size)), h("td", { class: "num" }, bytes(r.used)),
      h("td", { class: "num" }, r.clone ? bytes(r.shared) : "–"), h("td", {}, split),
      h("td", {}, `${r.luns} LUN(s), ${r.snapshots} snapshot(s)`),
      h("td", { class: "actions" },
        h("button", { type: "button", class: "small", "data-action": "snapshot", "aria-label": `Snapshot volume ${r.name}`, onclick: () => snapshotVolume(r.name) }, "Snapshot"),
        h("button", { type: "button", class: "small", "data-action": "dedup", "aria-label": `Deduplication of volume ${r.name}`, onclick: () => dedupVolume(r.name) }, "Dedup"),
        r.clone ? h("button", { type: "button", class: "small", "data-action": "split", "aria-label": `Split clone ${r.name}`, onclick: () => splitClone(r.name) }, "Split") : null,
        h("button", { type: "button", class: "small danger", "data-action": "delete", "aria-label": `Delete volume ${r.name}`, onclick: () => deleteVolume(r.name) }, "Delete")));
  } else {
    tr.append(name, h("td", {}, "snapshot"), h("td", { class: "num" }, "–"),
      h("td", { class: "num", title: "blocks only this snapshot holds" }, r.unique === null || r.unique === undefined ? "–" : bytes(r.unique)),
      h("td", { class: "num" }, "–"), h("td", {}, "–"),
      h("td", {}, r.busy ? h("span", {}, pill("busy", "busy"), " held by ", r.held_by.join(", "),
        r.held_by_count > r.held_by.length ? ` and ${r.held_by_count - r.held_by.length} more clone(s)` : "") : when(r.created)),
      h("td", { class: "actions" },
        h("button", { type: "button", class: "small", "data-action": "clone", "aria-label": `Clone snapshot ${r.name} of ${r.volume}`, onclick: () => cloneSnapshot(r.volume, r.name) }, "Clone"),
        h("button", { type: "button", class: "small danger", "data-action": "delete", "aria-label": `Delete snapshot ${r.name} of ${r.volume}`, onclick: () => deleteSnapshot(r.volume, r.name) }, "Delete")));
  }
  return tr;
}

function createVolume() {
  ask("Create a volume", [
    { name: "name", label: "Name", required: true },
    { name: "size", label: "Size (e.g. 20g)", required: true, value: "20g" },
    { name: "guarantee", label: "Space guarantee", type: "select", options: ["none", "volume"], value: "none" },
  ], "Create", async (v) => {
    await api("POST", "/volumes", { name: v.name, size: v.size, guarantee: v.guarantee });
    await refresh();
    return `Volume ${v.name} created.`;
  });
}
function snapshotVolume(vol) {
  ask(`Snapshot volume ${vol}`, [{ name: "name", label: "Snapshot name", required: true }], "Create snapshot", async (v) => {
    await api("POST", `/volumes/${seg(vol)}/snapshots`, { name: v.name });
    await refresh();
    return `Snapshot ${v.name} of volume ${vol} created.`;
  });
}
function cloneSnapshot(vol, snap) {
  ask(`Clone ${vol}@${snap}`, [
    { note: "A FlexClone: a writable volume rooted at this snapshot, made in O(1)." },
    { name: "new", label: "Clone volume name", required: true },
    { name: "remap", label: "Remap: map the clone's LUNs with the lowest free IDs and bring them online (--remap)", type: "checkbox" },
    { name: "schedule", label: "Snapshot schedule for the clone (--sched, default none)", placeholder: "e.g. 0 2 6@8,12,16,20" },
  ], "Create clone", async (v) => {
    const body = { new: v.new, parent: vol, snap, remap: v.remap };
    if (v.schedule) body.schedule = v.schedule;
    const r = await api("POST", "/clones", body);
    await refresh();
    const notes = (r && r.messages) || [];
    return `Clone ${v.new} of ${vol}@${snap} created.` + (notes.length ? " " + notes.join(" ") : "");
  });
}
function splitClone(vol) {
  api("GET", `/clones/${seg(vol)}/split/estimate`).then((est) => {
    const need = est && (est.bytes ?? est.needed_bytes ?? est.shared_bytes);
    ask(`Split clone ${vol}`, [
      { note: `Copies the blocks ${vol} still shares with its parent snapshot, so it no longer depends on it.` + (need !== undefined ? ` Needs about ${bytes(need)}.` : "") },
    ], "Start split", async () => {
      const job = await api("POST", `/clones/${seg(vol)}/split`);
      onJob(job);
      return `Split of ${vol} started (job ${job.id}); see Jobs.`;
    });
  }).catch((e) => say(e.message, true));
}
function dedupVolume(vol) {
  api("GET", `/dedup/volumes/${seg(vol)}`).then((cfg) => {
    ask(`Deduplication of volume ${vol}`, [
      { name: "enabled", label: "Post-process deduplication on (sis on)", type: "checkbox", value: cfg.enabled },
      { name: "inline", label: "Inline deduplication: share duplicate blocks as they are written", type: "checkbox", value: cfg.inline },
      { name: "schedule", label: "Scan schedule (day_list[@hour_list], - for none)", value: cfg.schedule || "-" },
      { name: "scan", label: "Scan this volume now (a job; progress in Jobs)", type: "checkbox" },
    ], "Apply", async (v) => {
      await api("PUT", `/dedup/volumes/${seg(vol)}`, { enabled: v.enabled, inline: v.inline, schedule: v.schedule || "-" });
      if (!v.scan) return `Deduplication settings of ${vol} saved.`;
      const job = await api("POST", "/dedup/scans", { volumes: [vol] });
      onJob(job);
      return `Deduplication settings of ${vol} saved; scan started (job ${job.id}).`;
    });
  }).catch((e) => say(e.message, true));
}
function deleteVolume(vol) {
  ask(`Delete volume ${vol}`, [
    { note: `Destroys ${vol}, its snapshots and LUNs. Refused while clones depend on it.` },
    { name: "force", label: "Force: also when LUNs are mapped (-f)", type: "checkbox" },
    { name: "children", label: "With force: destroy dependent clones too (--children)", type: "checkbox" },
  ], "Delete", async (v) => {
    const r = await api("DELETE", `/volumes/${seg(vol)}?` + qs({ force: v.force, children: v.children }));
    await refresh();
    return `Destroyed: ${(r && r.destroyed || [vol]).join(", ")}.`;
  }, true);
}
function deleteSnapshot(vol, snap) {
  ask(`Delete snapshot ${vol}@${snap}`, [{ note: `Frees the blocks only ${snap} holds. Refused while a clone depends on it.` }],
    "Delete", async () => {
      await api("DELETE", `/volumes/${seg(vol)}/snapshots/${seg(snap)}`);
      await refresh();
      return `Snapshot ${snap} of volume ${vol} deleted.`;
    }, true);
}

// ---- LUNs and igroups ------------------------------------------------------------------------
async function viewLuns() {
  const st = state.luns;
  const [page, igroups] = await Promise.all([
    api("GET", "/console/api/luns?" + qs({ q: st.q, offset: st.offset, limit: PAGE })),
    api("GET", "/igroups"),
  ]);
  const rows = page.rows.map((l) => h("tr", { "data-path": l.path },
    h("th", { scope: "row", class: "mono" }, l.path),
    h("td", { class: "num" }, bytes(l.size)), h("td", { class: "num" }, bytes(l.used)),
    h("td", {}, pill(l.state, l.online ? "online" : "offline"), l.offline_reason ? h("div", { class: "muted" }, l.offline_reason) : null),
    h("td", {}, l.maps.length ? l.maps.map((m) => `${m.igroup} = LUN ${m.lun_id}`).join(", ") : h("span", { class: "muted" }, "unmapped")),
    h("td", { class: "num", title: l.nbd_clients.length ? "connected: " + l.nbd_clients.join(", ") : null },
      page.nbd_available ? String(l.nbd_connections) : "n/a",
      l.nbd_clients.length ? h("div", { class: "muted" }, l.nbd_clients.join(", ")) : null),
    h("td", {}, l.ostype), h("td", { class: "mono" }, l.serial),
    h("td", { class: "actions" }, l.online
      ? h("button", { type: "button", class: "small", "aria-label": `Take LUN ${l.path} offline`, onclick: () => lunPower(l.path, "offline") }, "Offline")
      : h("button", { type: "button", class: "small", "aria-label": `Bring LUN ${l.path} online`, onclick: () => lunPower(l.path, "online") }, "Online"))));
  const igRows = igroups.map((g) => h("tr", { "data-igroup": g.name },
    h("th", { scope: "row" }, g.name), h("td", {}, `${g.protocol} / ${g.ostype}`),
    h("td", { class: "mono" }, g.initiators.join(", ") || "–"),
    h("td", {}, g.luns.length ? g.luns.slice(0, 8).map((m) => `LUN ${m.lun_id} → ${m.path}`).join("; ")
      + (g.luns.length > 8 ? `; and ${g.luns.length - 8} more (the LUN list above shows each LUN's maps)` : "")
      : h("span", { class: "muted" }, "sees nothing"))));
  return [
    h("h1", {}, "LUNs, igroups and maps"),
    h("div", { class: "toolbar" }, ...search(st, "Search", "lun-search"), h("span", { class: "grow" }), pager(st, page.total, refresh, "LUNs")),
    h("table", { class: "grid", id: "luns" },
      h("thead", {}, h("tr", {}, ["LUN", "Size", "Used", "State", "Maps (igroup = LUN ID)", "NBD connections", "OS type", "Serial", "Actions"].map(
        (c, i) => h("th", { scope: "col", class: i === 1 || i === 2 || i === 5 ? "num" : null }, c)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 9, class: "muted" }, "No LUNs.")))),
    h("h2", {}, "Initiator groups: who sees what"),
    h("table", { class: "grid", id: "igroups" },
      h("thead", {}, h("tr", {}, ["igroup", "Protocol / OS", "Initiators", "LUNs it sees"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, igRows.length ? igRows : h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No igroups.")))),
  ];
}
async function lunPower(path, how) {
  try {
    await api("POST", `/luns/${how}`, { path });
    say(`LUN ${path} is ${how}.`);
    await refresh();
  } catch (e) { say(e.message, true); }
}

// ---- VMs, templates, custspecs, provisioning ---------------------------------------------------
async function viewVms() {
  const st = state.vms;
  const [page, templates, specs] = await Promise.all([
    api("GET", "/console/api/vms?" + qs({ q: st.q, offset: st.offset, limit: PAGE })),
    api("GET", "/templates"), api("GET", "/custspecs"),
  ]);
  const rows = page.rows.map((v) => h("tr", { "data-vm": v.name },
    h("th", { scope: "row" }, v.name), h("td", {}, pill(v.state, v.state === "running" ? "running" : v.state === "unknown" ? "failed" : "x")),
    h("td", {}, v.template || "–"), h("td", {}, v.base_snapshot || "–"), h("td", { class: "mono" }, v.clone || "–"),
    h("td", { class: "mono" }, v.uri || "–"),
    h("td", { class: "actions" },
      h("button", { type: "button", class: "small", "aria-label": `Start VM ${v.name}`, onclick: () => vmAction(v.name, "start") }, "Start"),
      h("button", { type: "button", class: "small", "aria-label": `Shut down VM ${v.name}`, onclick: () => vmAction(v.name, "shutdown") }, "Shut down"),
      h("button", { type: "button", class: "small", "aria-label": `Power off VM ${v.name}`, onclick: () => vmAction(v.name, "poweroff") }, "Power off"),
      h("button", { type: "button", class: "small", "aria-label": `Refresh VM ${v.name}`, onclick: () => vmRefresh(v.name) }, "Refresh"),
      h("button", { type: "button", class: "small", "aria-label": `Recompose VM ${v.name}`, onclick: () => vmRecompose(v.name, v.template) }, "Recompose"),
      h("button", { type: "button", class: "small danger", "aria-label": `Destroy VM ${v.name}`, onclick: () => vmDestroy(v.name) }, "Destroy"))));
  return [
    h("h1", {}, "Templates, customization specs and VMs"),
    h("div", { class: "cols" },
      h("section", { class: "card" }, h("h2", {}, "Provision VMs"), provisionForm(templates, specs, page.hypervisors || []), h("div", { id: "provision-job" }, provisionPanel())),
      h("section", { class: "card" },
        h("h2", {}, "Templates"),
        h("table", { class: "grid", id: "templates" },
          h("thead", {}, h("tr", {}, ["Template", "Volume", "Snapshots", "Generalized", "VMs"].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, templates.length ? templates.map((t) => h("tr", { "data-template": t.name }, h("th", { scope: "row" }, t.name),
            h("td", { class: "mono" }, t.volume || "–"), h("td", {}, (t.snapshots || [t.base_snapshot]).filter(Boolean).join(", ") || "–"),
            h("td", { title: t.generalized && t.generalized.why ? t.generalized.why : null }, t.is_generalized ? "yes" : "no"),
            h("td", { class: "num" }, String(Array.isArray(t.vms) ? t.vms.length : t.vms ?? "–"))))
            : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No templates: coppice template import NAME --image DISK")))),
        h("h2", {}, "Customization specs"),
        h("table", { class: "grid", id: "custspecs" },
          h("thead", {}, h("tr", {}, ["Spec", "Hostname", "User", "SSH keys", "Network", "Run once"].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, specs.length ? specs.map((c) => h("tr", { "data-custspec": c.name }, h("th", { scope: "row" }, c.name), h("td", {}, c.hostname || "–"),
            h("td", {}, c.user || "–"), h("td", { class: "num" }, String(c.ssh_keys ?? 0)), h("td", {}, c.network || "–"),
            h("td", {}, (c.runcmd || []).length ? `${c.runcmd.length} command(s)` : "–")))
            : h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No customization specs.")))))),
    h("h2", {}, "VMs"),
    h("div", { class: "toolbar" }, ...search(st, "Search", "vm-search"), h("span", { class: "grow" }), pager(st, page.total, refresh, "VMs")),
    h("table", { class: "grid", id: "vms" },
      h("thead", {}, h("tr", {}, ["VM", "State", "Template", "Snapshot", "Clone volume", "Host", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 7, class: "muted" }, st.q ? "Nothing matches." : "No VMs yet.")))),
  ];
}

function provisionForm(templates, specs, uris) {
  const field = (id, label, input) => [h("label", { for: id }, label), input];
  const last = state.provision || {};  // the last batch's choices survive the view's redraws
  const f = h("form", { class: "grid-form", id: "provision-form" },
    ...field("pv-template", "Template", h("select", { id: "pv-template", name: "template", required: true },
      templates.map((t) => h("option", { value: t.name }, t.name)))),
    ...field("pv-count", "Count", h("input", { id: "pv-count", name: "count", type: "number", min: 1, max: 4096, value: last.count || 1, required: true })),
    ...field("pv-name", "Name pattern", h("input", { id: "pv-name", name: "name", type: "text", value: last.name || "vm{n:03}", required: true, spellcheck: "false" })),
    ...field("pv-custspec", "Customization spec", h("select", { id: "pv-custspec", name: "customize" },
      h("option", { value: "" }, "(none)"), specs.map((c) => h("option", { value: c.name }, c.name)))),
    ...field("pv-connect", "Hypervisor (libvirt URI)", h("select", { id: "pv-connect", name: "connect", required: true },
      uris.map((u) => h("option", { value: u }, u)))),
    ...field("pv-parallel", "Parallel workers", h("input", { id: "pv-parallel", name: "parallel", type: "number", min: 1, max: 64, value: last.parallel || 1 })),
    h("span", {}), h("div", { class: "check" }, h("input", { id: "pv-start", name: "start", type: "checkbox", checked: !!last.start }), h("label", { for: "pv-start" }, " Start the VMs")),
    h("p", { id: "provision-error", class: "error full", role: "alert", hidden: true }),
    h("div", { class: "full" }, h("button", { type: "submit", class: "primary", id: "pv-submit", disabled: !templates.length }, "Provision")));
  for (const [id, v] of [["pv-template", last.template], ["pv-custspec", last.customize], ["pv-connect", last.connect]]) {
    const sel = f.querySelector("#" + id);
    if (v && [...sel.options].some((o) => o.value === v)) sel.value = v;
  }
  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const err = $("#provision-error");
    err.hidden = true;
    const body = {
      template: $("#pv-template").value, count: Number($("#pv-count").value), name: $("#pv-name").value.trim(),
      connect: $("#pv-connect").value, start: $("#pv-start").checked, parallel: Number($("#pv-parallel").value || 1),
    };
    if ($("#pv-custspec").value) body.customize = $("#pv-custspec").value;
    state.provision = body;
    try {
      const job = await api("POST", "/vms", body);
      state.watch = job.id;
      onJob(job);
      say(`Provisioning ${body.count} VM(s) from ${body.template} (job ${job.id}).`);
    } catch (e) { err.textContent = e.message; err.hidden = false; }
  });
  return f;
}

function provisionPanel() {
  const job = state.watch && state.jobs.get(state.watch);
  if (!job) return h("p", { class: "muted" }, "Progress of the batch appears here as it runs.");
  const total = job.total || (job.params && job.params.count) || 0;
  const done = job.state === "done" ? total : job.done || 0;
  const frac = job.state === "done" ? 1 : job.fraction || 0;
  const res = job.result;
  return h("div", { class: "job", "data-job": job.id, "data-state": job.state },
    h("p", {}, pill(job.state), " ",
      h("progress", { id: "provision-progress", max: 100, value: Math.round(frac * 100), "aria-label": "Provisioning progress" }),
      " ", h("strong", { id: "provision-percent" }, `${Math.round(frac * 100)} %`), ` — ${done} of ${total} VM(s)`),
    stages(job),
    job.error ? h("p", { class: "error" }, job.error) : null,
    res && res.failed && res.failed.length ? h("div", { class: "error" }, h("strong", {}, "Failed:"),
      h("ul", {}, res.failed.map((f) => h("li", {}, `${f.vm} (stage ${f.stage}): ${f.error}`)))) : null,
    res && res.vms ? h("div", {}, h("p", {}, `${res.created} of ${res.requested} made in ${secs(res.seconds)}`
      + (res.per_vm_seconds ? ` (${secs(res.per_vm_seconds)} per VM)` : "") + ":"),
      h("ul", { class: "vmlist", id: "provisioned" }, res.vms.map((v) => h("li", { "data-vm": v.name }, v.ok ? "✓ " : "✗ ", v.name)))) : null);
}

function stages(job) {
  const st = job.stage_totals || (job.result && job.result.stage_seconds);
  if (st && Object.keys(st).length) {
    return h("p", { class: "stages" }, "Stage time (all VMs): ", Object.entries(st).map(([k, v]) => `${k} ${secs(v)}`).join(" · "));
  }
  const ph = job.phases;
  if (ph && Object.keys(ph).length) {
    return h("p", { class: "stages" }, "Phases: ", Object.entries(ph).map(([k, v]) =>
      `${k} ${v.done ?? "?"}${v.total ? "/" + v.total : ""}`).join(" · "));
  }
  return null;
}

async function vmAction(name, action) {
  try {
    const r = await api("POST", `/console/api/vms/${seg(name)}/${action}`);
    say(`VM ${name}: ${r.state}.`);
    await refresh();
  } catch (e) { say(e.message, true); }
}
function vmRefresh(name) {
  ask(`Refresh VM ${name}`, [{ note: "Discards the VM's changes: a new clone of its base snapshot, same identity." },
    { name: "force", label: "Force: power off a running VM", type: "checkbox" }], "Refresh", async (v) => {
    const r = await api("POST", `/vms/${seg(name)}/refresh`, { force: v.force });
    await refresh();
    return `VM ${name} refreshed from ${r.template}@${r.base_snapshot}.`;
  });
}
function vmRecompose(name, template) {
  ask(`Recompose VM ${name}`, [{ note: `Moves the VM to another snapshot of template ${template}, keeping its identity.` },
    { name: "snapshot", label: "Snapshot", required: true },
    { name: "force", label: "Force: power off a running VM", type: "checkbox" }], "Recompose", async (v) => {
    const r = await api("POST", `/vms/${seg(name)}/recompose`, { snapshot: v.snapshot, force: v.force });
    await refresh();
    return `VM ${name} recomposed onto ${r.template}@${r.base_snapshot}.`;
  });
}
function vmDestroy(name) {
  ask(`Destroy VM ${name}`, [{ note: "Undefines the VM, unmaps its LUNs and destroys its clone." },
    { name: "force", label: "Force: also when it runs", type: "checkbox" }], "Destroy", async (v) => {
    await api("DELETE", `/vms/${seg(name)}?` + qs({ force: v.force }));
    await refresh();
    return `VM ${name} destroyed.`;
  }, true);
}

// ---- jobs ------------------------------------------------------------------------------------
async function viewJobs() {
  const list = await api("GET", "/jobs");
  for (const j of list) state.jobs.set(j.id, { ...state.jobs.get(j.id), ...j });
  return [
    h("h1", {}, "Jobs"),
    h("div", { class: "toolbar" },
      h("p", { class: "muted grow" }, "Provisioning, clone splits, dedup scans and scrubs, live as they run."),
      h("button", { type: "button", id: "dedup-scan", onclick: startScan }, "Start dedup scan"),
      h("button", { type: "button", id: "scrub", onclick: startScrub }, "Start scrub")),
    h("table", { class: "grid", id: "jobs" },
      h("thead", {}, h("tr", {}, ["Job", "Kind", "Of", "State", "Progress", "Stages / phases", "Started", "Took", "Error", ""].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", { id: "jobs-body" }, jobRows())),
  ];
}
function jobTarget(j) {
  const p = j.params || {};
  if (j.kind === "provision") return `${p.count} × ${p.name} from ${p.template}`;
  if (j.kind === "clone_split") return p.volume;
  if (j.kind === "dedup_scan") return (p.volumes || ["all sis volumes"]).join(", ") + (p.full ? " (full)" : "");
  return "";
}
function jobRows() {
  const jobs = [...state.jobs.values()].sort((a, b) => (b.created || 0) - (a.created || 0));
  if (!jobs.length) return [h("tr", {}, h("td", { colspan: 10, class: "muted" }, "No jobs yet."))];
  return jobs.map((j) => {
    const frac = j.state === "done" ? 1 : j.fraction;
    const took = j.started ? ((j.finished || Date.now() / 1000) - j.started) : null;
    return h("tr", { "data-job": j.id, "data-state": j.state },
      h("td", { class: "mono" }, j.id), h("td", {}, j.kind), h("td", {}, jobTarget(j)), h("td", {}, pill(j.state)),
      h("td", {}, frac === null || frac === undefined ? (j.state === "running" ? h("progress", { "aria-label": `job ${j.id} progress` }) : "–")
        : h("span", {}, h("progress", { max: 100, value: Math.round(frac * 100), "aria-label": `job ${j.id} progress` }), ` ${Math.round(frac * 100)} %`),
        j.phase ? h("div", { class: "muted" }, `${j.phase}${j.total ? ` ${j.done ?? 0}/${j.total}` : ""}`) : null),
      h("td", {}, stages(j)), h("td", {}, when(j.started)), h("td", {}, secs(took)),
      h("td", {}, j.error ? h("span", { class: "error" }, j.error) : j.message || ""),
      h("td", {}, j.state === "running" || j.state === "queued"
        ? h("button", { type: "button", class: "small danger", "aria-label": `Stop job ${j.id}`, onclick: () => stopJob(j.id) }, "Stop") : null));
  });
}
async function startScan() {
  try { const j = await api("POST", "/dedup/scans", {}); onJob(j); say(`Dedup scan started (job ${j.id}).`); }
  catch (e) { say(e.message, true); }
}
async function startScrub() {
  try { const j = await api("POST", "/pool/scrub"); onJob(j); say(`Scrub started (job ${j.id}).`); }
  catch (e) { say(e.message, true); }
}
async function stopJob(id) {
  try { await api("DELETE", `/jobs/${seg(id)}`); say(`Stopping job ${id}.`); }
  catch (e) { say(e.message, true); }
}

// ---- live job events -------------------------------------------------------------------------
let reloadTimer = null;
function onJob(job) {
  const before = state.jobs.get(job.id);
  state.jobs.set(job.id, job);
  const active = [...state.jobs.values()].filter((j) => j.state === "running" || j.state === "queued").length;
  const badge = $("#jobs-badge");
  badge.textContent = String(active);
  badge.hidden = active === 0;
  if (state.view === "jobs") $("#jobs-body") && $("#jobs-body").replaceChildren(...jobRows());
  if (state.view === "vms" && job.id === state.watch) $("#provision-job") && $("#provision-job").replaceChildren(provisionPanel());
  const finished = FINAL.includes(job.state) && before && !FINAL.includes(before.state);
  if (finished && (state.view === "vms" || state.view === "volumes" || state.view === "pool")) {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(refresh, 200);
  }
  if (finished && job.state === "failed") say(`Job ${job.id} (${job.kind}) failed: ${job.error}`, true);
}
function listen() {
  const live = $("#live");
  const es = new EventSource("/console/api/events");
  es.addEventListener("open", () => { live.textContent = "● live"; live.classList.add("on"); });
  es.addEventListener("error", () => { live.textContent = "○ reconnecting"; live.classList.remove("on"); });
  es.addEventListener("job", (ev) => onJob(JSON.parse(ev.data)));
}

// ---- start -----------------------------------------------------------------------------------
$("#signout").addEventListener("click", async () => {
  try { await api("DELETE", "/console/session"); } catch (e) { /* signed out either way */ }
  location.replace("/");
});
window.addEventListener("hashchange", () => show(location.hash.slice(1)));
listen();
show(location.hash.slice(1) || "pool", true);
