// The live view of vpcflowd: plain JavaScript over the admin API, no framework and nothing
// from another host. Views are chosen by the URL's hash (#/, #/interface/ID, #/findings);
// the event stream (/api/v1/events) redraws the view when a window closes, and the open
// windows' provisional totals are polled while any window is open.
"use strict";

const POLL_MS = 2000;
const state = { view: null, openTimer: null, findings: 0, boot: null, renders: 0, shown: null };

// ---- formatting -------------------------------------------------------------------------

function bytes(n) {
  if (n == null) return "–";
  const units = ["B", "KB", "MB", "GB", "TB", "PB"];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return (i === 0 ? String(v) : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)) + " " + units[i];
}
function count(n) { return n == null ? "–" : Number(n).toLocaleString("en-US"); }
function pct(n) { return n == null ? "–" : n.toFixed(n < 10 ? 1 : 0) + " %"; }
function when(unix) {
  const d = new Date(unix * 1000);
  return { text: d.toLocaleString(), utc: d.toISOString().replace(".000", "") };
}
function proto(p) { return { 6: "TCP", 17: "UDP", 1: "ICMP", 58: "ICMPv6" }[p] || String(p); }
function endpoint(addr, port) { return port == null ? String(addr) : addr + ":" + port; }

// ---- DOM building (text only: data never becomes markup) --------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c == null) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
function time(unix) { const t = when(unix); return h("time", { title: t.utc + " UTC", datetime: t.utc }, t.text); }
// A number cell; `raw` (the API's value) goes in data-value for tools and tests.
function num(text, cls, raw) {
  return h("td", { class: "n" + (cls ? " " + cls : ""), "data-value": raw }, h("span", { class: "num" }, text));
}
function table(headers, rows, empty) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  const head = h("tr", {}, headers.map(([t, n]) => h("th", { class: n ? "n" : null, scope: "col" }, t)));
  return h("div", { class: "scroll" }, h("table", {}, h("thead", {}, head), h("tbody", {}, rows)));
}
function shareBar(p) {
  const w = Math.max(0, Math.min(100, p || 0));
  return h("span", { class: "share", role: "img", "aria-label": pct(p) }, h("span", { style: null, "data-w": w }));
}
function svg(tag, attrs) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}
function sparkline(values) {
  const s = svg("svg", { class: "spark", viewBox: "0 0 100 20", preserveAspectRatio: "none", role: "img", "aria-label": "recent windows" });
  if (values.length < 2) return s;
  const max = Math.max(...values, 1);
  const pts = values.map((v, i) => (i * 100 / (values.length - 1)).toFixed(1) + "," + (19 - v * 18 / max).toFixed(1));
  s.append(svg("polyline", { points: pts.join(" ") }));
  return s;
}
function series(values, baseline) {
  const s = svg("svg", { class: "series", viewBox: "0 0 100 40", preserveAspectRatio: "none", role: "img", "aria-label": "bytes per pane" });
  const max = Math.max(...values, baseline || 0, 1);
  const w = 100 / Math.max(values.length, 1);
  values.forEach((v, i) => s.append(svg("rect", { x: (i * w + w * 0.1).toFixed(2), width: (w * 0.8).toFixed(2), y: (40 - v * 38 / max).toFixed(2), height: (v * 38 / max).toFixed(2) })));
  if (baseline) {
    // The baseline is per window; per pane it is the window's mean over its panes.
    const y = (40 - (baseline / Math.max(values.length, 1)) * 38 / max).toFixed(2);
    s.append(svg("line", { x1: 0, x2: 100, y1: y, y2: y }));
  }
  return s;
}
// Share bars get their width after insertion: the policy forbids inline style attributes.
function sizeBars(root) {
  for (const bar of root.querySelectorAll("[data-w]")) bar.style.width = bar.dataset.w + "%";
}

// ---- data -------------------------------------------------------------------------------

async function get(path) {
  const r = await fetch(path, { headers: { accept: "application/json" } });
  if (r.status === 404) return null;
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

// ---- views ------------------------------------------------------------------------------

function show(node) {
  const view = document.getElementById("view");
  view.replaceChildren(node);
  sizeBars(view);
}

// The roll-up kinds the overview shows, with their titles.
const ROLLUPS = [["region", "Regions"], ["account", "Accounts"], ["vpc", "VPCs"], ["subnet", "Subnets"]];

// The newest window's roll-ups of one kind, when the interfaces carry that value.
function rollupTable(kind, title, list) {
  if (!list || !list.length) return null;
  return h("section", { class: "rollup", "data-kind": kind },
    h("h2", {}, title),
    table([[title.replace(/s$/, "")], ["Interfaces", 1], ["Bytes", 1], ["In", 1], ["Out", 1], ["Rejected flows", 1]],
      list.map((r) => h("tr", { "data-rollup": r.id },
        h("td", {}, r.id), num(count(r.interfaces)), num(bytes(r.bytes), "bytes", r.bytes),
        num(bytes(r.ingress_bytes)), num(bytes(r.egress_bytes)), num(count(r.rejected_flows)))), ""));
}

async function overview() {
  const [closed, open, ...rolled] = await Promise.all([get("/api/v1/interfaces"), get("/api/v1/open"),
    ...ROLLUPS.map(([kind]) => get("/api/v1/rollups/" + kind))]);
  const byId = new Map();
  for (const i of closed || []) byId.set(i.interface_id, { final: i, open: null });
  for (const o of open || []) {
    const e = byId.get(o.interface_id) || { final: null, open: null };
    e.open = o;
    byId.set(o.interface_id, e);
  }
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const rows = [...byId.entries()].map(([id, e]) => {
    const known = e.final || e.open;
    // An open window carries its interface's labels too, so a name shows before any window closes.
    const name = (e.final && e.final.name) || (e.open && e.open.name) || "";
    return { id, ...e, name, bytes: known.bytes, region: known.region || "", account: known.account_id || "" };
  });
  const regions = [...new Set(rows.map((r) => r.region).filter(Boolean))].sort();
  const accounts = [...new Set(rows.map((r) => r.account).filter(Boolean))].sort();
  const text = (params.get("q") || "").toLowerCase();
  const region = params.get("region") || "";
  const account = params.get("account") || "";
  const shown = rows
    .filter((r) => !text || r.id.toLowerCase().includes(text) || r.name.toLowerCase().includes(text))
    .filter((r) => !region || r.region === region)
    .filter((r) => !account || r.account === account)
    .sort((a, b) => b.bytes - a.bytes || a.id.localeCompare(b.id));
  const setFilter = (k) => (ev) => {
    params.set(k, ev.target.value);
    if (!ev.target.value) params.delete(k);
    history.replaceState(null, "", "#/?" + params.toString());
    render();
  };
  const select = (label, key, values, value) => h("label", {}, label + " ",
    h("select", { onchange: setFilter(key), "aria-label": label }, h("option", { value: "" }, "all"),
      values.map((v) => h("option", { value: v, selected: v === value }, v))));
  const filters = h("div", { class: "filters" },
    h("input", { type: "search", placeholder: "Filter interfaces", value: text, "aria-label": "Filter interfaces", onchange: setFilter("q") }),
    select("Region", "region", regions, region), select("Account", "account", accounts, account));
  const body = shown.map((r) => interfaceRow(r));
  const latest = (closed || []).reduce((m, i) => Math.max(m, i.window_start), 0);
  return h("section", { id: "overview" },
    h("h1", {}, "Interfaces"),
    h("p", { class: "muted" }, latest ? ["Newest closed window from ", time(latest), "."] : "No window has closed yet; the numbers below are provisional."),
    filters,
    h("div", { class: "rollups" }, ROLLUPS.map(([kind, title], i) => rollupTable(kind, title, rolled[i]))),
    table([["Interface"], ["Region"], ["Bytes", 1], ["In", 1], ["Out", 1], ["Rejected flows", 1], ["Recent"], ["Findings", 1]], body,
      rows.length ? "No interface matches the filters." : h("span", { class: "waiting" }, "No traffic yet.")));
}

function interfaceRow(r) {
  const f = r.final;
  const provisional = !f;
  const o = r.open || {};
  const link = h("a", { href: "#/interface/" + encodeURIComponent(r.id) }, r.id);
  // EC2's Name tag (`[enrich.ec2]`) says what the interface is; the id stays the link.
  const named = r.name ? [" ", h("span", { class: "muted", "data-name": r.name }, r.name)] : [];
  return h("tr", { class: provisional ? "provisional" : null, "data-interface": r.id },
    h("td", {}, link, ...named),
    h("td", {}, r.region),
    num(bytes(f ? f.bytes : o.bytes), "bytes", f ? f.bytes : o.bytes),
    num(bytes(f ? f.ingress_bytes : o.ingress && o.ingress.bytes)),
    num(bytes(f ? f.egress_bytes : o.egress && o.egress.bytes)),
    num(count(f ? f.rejected_flows : o.rejected_flows), "rejected", f ? f.rejected_flows : o.rejected_flows),
    h("td", {}, sparkline(f ? f.recent.map((w) => w.bytes) : [])),
    h("td", { class: "n" }, f && f.findings ? h("span", { class: "badge", title: "findings in the newest window" }, f.findings) : ""));
}

async function interfaceView(id) {
  const [snaps, open, findings] = await Promise.all([
    get("/api/v1/interfaces/" + encodeURIComponent(id) + "/snapshots?limit=1"),
    get("/api/v1/interfaces/" + encodeURIComponent(id) + "/open"),
    get("/api/v1/findings?interface=" + encodeURIComponent(id) + "&limit=50"),
  ]);
  const s = snaps && snaps[0];
  const parts = [h("h1", {}, id)];
  if (!s && !(open && open.length)) parts.push(h("p", { class: "empty" }, "Nothing known about this interface."));
  if (s) {
    parts.push(h("p", { class: "muted" }, "Window ", time(s.window_start), " to ", time(s.window_end),
      s.region ? " · " + s.region : "", s.account_id ? " · " + s.account_id : "", s.revision ? " · corrected" : ""));
    parts.push(cards(s, false));
    parts.push(h("h2", {}, "Sources"), sourcesTable(s));
    parts.push(h("h2", {}, "Destinations"), table([["Address"], ["Share of egress"], ["Bytes", 1], ["Flows", 1], ["Rejected", 1]],
      s.destinations.map((d) => h("tr", {}, h("td", {}, d.address, d.aws_service ? h("span", { class: "aws", title: d.aws_region || "" }, " " + d.aws_service) : null), h("td", {}, shareBar(d.traffic_share_pct), pct(d.traffic_share_pct)), num(bytes(d.bytes)), num(count(d.flows)), num(count(d.rejected_flows)))), "No destinations."));
    parts.push(h("h2", {}, "Protocols"), table([["Protocol"], ["Bytes", 1], ["In", 1], ["Out", 1], ["Flows", 1], ["Rejected", 1]],
      s.protocols.map((p) => h("tr", {}, h("td", {}, proto(p.protocol)), num(bytes(p.bytes)), num(bytes(p.ingress_bytes)), num(bytes(p.egress_bytes)), num(count(p.flows)), num(count(p.rejected_flows)))), "No protocols."));
    parts.push(h("h2", {}, "Rejected sources"), table([["Source"], ["Rejected flows", 1], ["Ports", 1], ["Hosts", 1]],
      s.rejected_sources.map((r) => h("tr", {}, h("td", {}, r.address), num(count(r.rejected_flows)), num(count(r.distinct_destination_ports)), num(count(r.distinct_destination_addresses)))), "Nothing rejected."));
    parts.push(h("h2", {}, "Denied outbound"), table([["Destination"], ["Protocol"], ["Flows", 1], ["Bytes", 1], ["New"]],
      s.denied_outbound.map((d) => h("tr", {}, h("td", {}, endpoint(d.address, d.port)), h("td", {}, d.protocol == null ? "" : proto(d.protocol)), num(count(d.flows)), num(bytes(d.bytes)), h("td", {}, d.new ? "new" : ""))), "No denied outbound connections."));
  }
  if (open && open.length) {
    const o = open[open.length - 1];
    parts.push(h("section", { class: "provisional", id: "open" },
      h("h2", {}, "Open window (provisional) ", time(o.window_start), " to ", time(o.window_end)),
      cards(o, true),
      table([["Source"], ["Bytes", 1], ["Flows", 1], ["Rejected", 1]],
        o.sources.map((x) => h("tr", {}, h("td", {}, x.address), num(bytes(x.bytes)), num(count(x.flows)), num(count(x.rejected_flows)))), "No sources yet.")));
  }
  parts.push(h("h2", {}, "Findings"), findingsTable(findings || []));
  return h("section", { id: "interface" }, parts);
}

function cards(s, provisional) {
  const card = (label, value) => h("div", { class: "card" }, h("span", { class: "muted" }, label), h("b", { class: "num" }, value));
  return h("div", { class: "cards" + (provisional ? " provisional" : "") },
    card("Bytes", bytes(s.bytes)), card("In", bytes(s.ingress.bytes)), card("Out", bytes(s.egress.bytes)),
    card("Flows", count(s.flows)), card("Rejected flows", count(s.rejected_flows)));
}

function sourcesTable(s) {
  const rows = [];
  for (const src of s.sources) {
    const detail = h("tr", { class: "detail", hidden: true }, h("td", { colspan: 7 }, sourceDetail(src)));
    const toggle = h("button", { type: "button", "aria-expanded": "false", "aria-label": "Flows of " + src.address, onclick: (ev) => {
      const open = detail.hidden;
      detail.hidden = !open;
      ev.currentTarget.setAttribute("aria-expanded", String(open));
      ev.currentTarget.textContent = open ? "▾" : "▸";
      sizeBars(detail);
    } }, "▸");
    rows.push(h("tr", { "data-source": src.address },
      h("td", {}, toggle, " ", src.address, src.aws_service ? h("span", { class: "aws", title: src.aws_region || "" }, " " + src.aws_service) : null),
      h("td", {}, shareBar(src.traffic_share_pct), pct(src.traffic_share_pct)),
      num(bytes(src.bytes), "bytes", src.bytes), num(count(src.flows)), num(count(src.rejected_flows)), num(pct(src.reject_ratio_pct)),
      num(src.spike_ratio == null ? "–" : src.spike_ratio.toFixed(1) + "×")));
    rows.push(detail);
  }
  return table([["Source"], ["Share of data to it"], ["Bytes", 1], ["Flows", 1], ["Rejected", 1], ["Reject ratio", 1], ["Spike", 1]], rows, "No sources.");
}

function sourceDetail(src) {
  const flows = table([["Flow"], ["Action"], ["Bytes", 1], ["Packets", 1]],
    src.top_flows.map((f) => h("tr", { class: "flow" },
      h("td", {}, endpoint(f.srcaddr, f.srcport) + " → " + endpoint(f.dstaddr, f.dstport) + " " + (f.protocol == null ? "" : proto(f.protocol))),
      h("td", { class: f.action || "" }, f.action || "–"), num(bytes(f.bytes), "bytes", f.bytes), num(count(f.packets)))), "No flows listed.");
  const dests = table([["Destination"], ["Share", 1], ["Bytes", 1]],
    src.top_destinations.map((d) => h("tr", {}, h("td", {}, d.address), num(pct(d.share_pct)), num(bytes(d.bytes)))), "No destinations listed.");
  const steady = src.active_panes + " active panes, the largest with " + pct(src.peak_pane_share_pct) + " of its bytes";
  const base = src.baseline_bytes == null ? "no baseline yet" : "baseline " + bytes(src.baseline_bytes) + " a window";
  return h("div", { class: "grid" },
    h("div", {}, h("h3", {}, "Top flows"), flows),
    h("div", {}, h("h3", {}, "Bytes per pane"), series(src.pane_bytes || [], src.baseline_bytes), h("p", { class: "muted" }, steady + "; " + base + ".")),
    h("div", {}, h("h3", {}, "Top destinations"), dests));
}

function findingsTable(list) {
  return table([["Window"], ["Kind"], ["Interface"], ["Subject"], ["Value", 1], ["Detail"]],
    list.map((f) => h("tr", { class: "finding" },
      h("td", {}, time(f.window_start)), h("td", {}, f.kind),
      h("td", {}, h("a", { href: "#/interface/" + encodeURIComponent(f.interface_id) }, f.interface_id)),
      h("td", {}, /^[0-9a-f:.]+$/i.test(f.subject)
        ? h("a", { href: "#/interface/" + encodeURIComponent(f.interface_id) + "?source=" + encodeURIComponent(f.subject) }, f.subject)
        : f.subject),
      num(count(f.value)), h("td", {}, f.detail))), "No findings.");
}

async function findingsView() {
  const list = await get("/api/v1/findings?limit=500");
  return h("section", { id: "findings" }, h("h1", {}, "Findings"), findingsTable(list || []));
}

// ---- routing, live updates --------------------------------------------------------------

async function render() {
  // Renders overlap (navigation, events, the poll): only the newest one is shown.
  const ticket = ++state.renders;
  const hash = location.hash || "#/";
  const path = hash.split("?")[0];
  let view;
  let name = "overview";
  try {
    if (path.startsWith("#/interface/")) {
      name = "interface";
      view = await interfaceView(decodeURIComponent(path.slice("#/interface/".length)));
    } else if (path === "#/findings") {
      name = "findings";
      view = await findingsView();
    } else {
      view = await overview();
    }
  } catch (e) {
    view = h("p", { class: "empty" }, "Cannot reach vpcflowd: " + e.message);
  }
  if (ticket !== state.renders) return;
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  // Keep an expanded source open across a redraw of the same page, and open the one the
  // address names (a finding's link).
  const same = state.shown === hash;
  const expanded = same ? [...document.querySelectorAll('[data-source] button[aria-expanded="true"]')].map((b) => b.closest("tr").dataset.source) : [];
  const wanted = new URLSearchParams(hash.split("?")[1] || "").get("source");
  if (wanted && !same) expanded.push(wanted);
  state.view = name;
  state.shown = hash;
  show(view);
  for (const src of expanded) {
    const b = document.querySelector('[data-source="' + CSS.escape(src) + '"] button');
    if (b) b.click();
  }
  document.body.dataset.rendered = String(Date.now());
}

function connect() {
  const live = document.getElementById("live");
  const events = new EventSource("/api/v1/events");
  events.addEventListener("open", () => { live.textContent = "live"; live.className = "live on"; });
  events.addEventListener("error", () => { live.textContent = "reconnecting…"; live.className = "live off"; });
  events.addEventListener("hello", (e) => {
    const hello = JSON.parse(e.data);
    // A new process, or events missed: everything is fetched again.
    if (state.boot !== null && (hello.resync || hello.boot !== state.boot)) render();
    state.boot = hello.boot;
  });
  events.addEventListener("resync", () => render());
  events.addEventListener("window_closed", () => render());
  events.addEventListener("finding", () => {
    state.findings += 1;
    const badge = document.getElementById("finding-count");
    badge.textContent = String(state.findings);
    badge.hidden = false;
  });
}

function theme() {
  const saved = localStorage.getItem("vpcflowd-theme");
  if (saved) document.documentElement.dataset.theme = saved;
  document.getElementById("theme").addEventListener("click", () => {
    const dark = document.documentElement.dataset.theme === "dark" ||
      (!document.documentElement.dataset.theme && matchMedia("(prefers-color-scheme: dark)").matches);
    document.documentElement.dataset.theme = dark ? "light" : "dark";
    localStorage.setItem("vpcflowd-theme", document.documentElement.dataset.theme);
  });
}

// Provisional numbers move while windows are open: a page that shows any (or the overview
// waiting for its first traffic) is redrawn every POLL_MS, unless a source's detail is open.
function poll() {
  clearInterval(state.openTimer);
  state.openTimer = setInterval(() => {
    if (document.hidden || state.view === "findings") return;
    if (document.querySelector('[aria-expanded="true"]')) return;
    if (document.querySelector(".provisional, .waiting")) render();
  }, POLL_MS);
}

window.addEventListener("hashchange", render);
theme();
render();
connect();
poll();
