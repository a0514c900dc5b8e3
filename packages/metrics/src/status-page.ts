/**
 * The built-in status page served at `/` on the metrics port: one self-contained HTML file
 * (inline CSS, JS and SVG; no external URL, the host may be offline) polling `api/status`
 * every second. It is for the one-machine default where no Grafana runs. Data strings are
 * written with textContent only; SVG markup is built from numbers and fixed names.
 */
/** Where the server writes the status and cluster JSON the first paint renders (see statusPageHtml). */
const STATUS_PAGE_INITIAL = '/*FTVM_INITIAL*/null';

/** The page with `initial` ({ status, cluster }) written in, `<` escaped so it cannot end the script. */
export function statusPageHtml(initial: unknown): string {
  const json = JSON.stringify(initial, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v)) ?? 'null';
  return STATUS_PAGE_HTML.replace(STATUS_PAGE_INITIAL, () => json.replace(/</g, '\\u003c'));
}

export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ftvm status</title>
<style>
  :root { --bg:#0f1419; --panel:#182028; --fg:#e6e6e6; --dim:#8a96a3; --ok:#2fbf71; --bad:#e5484d; --warn:#f5a524; --a:#4ea1ff; --b:#f5a524; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.4 system-ui, sans-serif; background:var(--bg); color:var(--fg); }
  header { display:flex; flex-wrap:wrap; gap:16px; align-items:center; padding:12px 20px; border-bottom:1px solid #263241; }
  h1 { font-size:18px; margin:0; }
  .badge { padding:6px 12px; border-radius:6px; font-weight:700; letter-spacing:.04em; }
  .ok { background:var(--ok); color:#06220f; } .bad { background:var(--bad); color:#2a0506; } .warn { background:var(--warn); color:#2a1a00; }
  .dim { color:var(--dim); }
  main { padding:16px 20px; display:grid; gap:16px; grid-template-columns:repeat(auto-fill, minmax(420px, 1fr)); }
  .tiles { grid-column:1/-1; display:grid; gap:12px; grid-template-columns:repeat(auto-fill, minmax(150px, 1fr)); }
  .tile, .chart { background:var(--panel); border-radius:8px; padding:10px 12px; }
  .tile .v { font-size:22px; font-weight:600; font-variant-numeric:tabular-nums; }
  .tile .k, .chart h2 { font-size:12px; color:var(--dim); text-transform:uppercase; letter-spacing:.05em; margin:0 0 4px; font-weight:600; }
  .legend { font-size:12px; color:var(--dim); display:flex; gap:14px; font-variant-numeric:tabular-nums; }
  .legend i { display:inline-block; width:10px; height:3px; vertical-align:middle; margin-right:4px; }
  svg { width:100%; height:140px; display:block; }
  .progress { grid-column:1/-1; }
  .nodes { grid-column:1/-1; display:grid; gap:12px; grid-template-columns:repeat(auto-fill, minmax(260px, 1fr)); }
  .node { background:var(--panel); border-radius:8px; padding:10px 12px; display:flex; flex-wrap:wrap; gap:8px; align-items:center; }
  .node b { font-size:16px; } .node .badge { padding:3px 8px; font-size:12px; }
  .bar { height:10px; background:#263241; border-radius:5px; overflow:hidden; margin:4px 0 10px; }
  .bar > div { height:100%; background:var(--a); }
</style>
</head>
<body>
<header>
  <h1>ftvm <span id="role">…</span> <span class="dim">term <span id="term">–</span></span></h1>
  <span id="protection" class="badge warn">CONNECTING</span>
  <span id="reason" class="dim"></span>
  <span id="ready" class="badge warn">–</span>
  <span class="dim" style="margin-left:auto">updated <span id="updated">never</span> · <span id="conn">connecting</span></span>
</header>
<main>
  <section class="nodes" id="nodes" hidden></section>
  <section class="tiles">
    <div class="tile"><div class="k">committed epoch</div><div class="v" id="t-epoch">–</div></div>
    <div class="tile"><div class="k">epochs / s</div><div class="v" id="t-eps">–</div></div>
    <div class="tile"><div class="k">pause p99</div><div class="v" id="t-pause">–</div></div>
    <div class="tile"><div class="k">wire / raw</div><div class="v" id="t-bw">–</div></div>
    <div class="tile"><div class="k">compression</div><div class="v" id="t-ratio">–</div></div>
    <div class="tile"><div class="k">in flight</div><div class="v" id="t-inflight">–</div></div>
    <div class="tile"><div class="k">output held</div><div class="v" id="t-held">–</div></div>
    <div class="tile"><div class="k">clients</div><div class="v" id="t-clients">–</div></div>
    <div class="tile"><div class="k">failovers</div><div class="v" id="t-failovers">–</div></div>
    <div class="tile"><div class="k">clock drift</div><div class="v" id="t-drift">–</div></div>
    <div class="tile"><div class="k">links</div><div class="v" id="t-links">–</div></div>
    <div class="tile"><div class="k">guest faults</div><div class="v" id="t-faults">–</div></div>
    <div class="tile"><div class="k">scrub mismatches</div><div class="v" id="t-scrub">–</div></div>
    <div class="tile"><div class="k">vCPU throttle</div><div class="v" id="t-throttle">–</div></div>
  </section>
  <section class="chart"><h2>protection state</h2><div id="c-protected"></div></section>
  <section class="chart"><h2>epochs per second</h2><div id="c-epochs"></div></section>
  <section class="chart"><h2>epoch pause (ms)</h2><div id="c-pause"></div></section>
  <section class="chart"><h2>bandwidth wire vs raw (bytes/s)</h2><div id="c-bw"></div></section>
  <section class="chart"><h2>output delay (ms)</h2><div id="c-delay"></div></section>
  <section class="chart"><h2>failovers (total)</h2><div id="c-failovers"></div></section>
  <section class="chart"><h2>clock drift (ms)</h2><div id="c-drift"></div></section>
  <section class="chart progress" id="progress" hidden><h2>tasks</h2><div id="tasks"></div></section>
</main>
<script id="ftvm-initial" type="application/json">${STATUS_PAGE_INITIAL}</script>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const W = 600, H = 140, PADL = 4, PADR = 4, PADT = 8, PADB = 16;

function fmtNum(v, digits) {
  if (v === null || v === undefined || !isFinite(v)) return "–";
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(1) + "G";
  if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
  return v.toFixed(digits === undefined ? (a < 10 ? 2 : 0) : digits);
}
function fmtBytes(v) {
  if (v === null || v === undefined || !isFinite(v)) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(v) >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return v.toFixed(i === 0 ? 0 : 1) + " " + u[i];
}
function fmtMs(v) {
  if (v === null || v === undefined || !isFinite(v)) return "–";
  if (Math.abs(v) < 1) return (v * 1000).toFixed(0) + " µs";
  if (Math.abs(v) < 1000) return v.toFixed(1) + " ms";
  return (v / 1000).toFixed(2) + " s";
}

// series: [{ name, color, values: (number|null)[] }]; nulls break the line.
function chart(el, series, opts) {
  opts = opts || {};
  let lo = opts.min !== undefined ? opts.min : 0, hi = opts.max !== undefined ? opts.max : 0;
  for (const s of series) for (const v of s.values) if (v !== null && isFinite(v)) { if (v > hi && opts.max === undefined) hi = v; if (v < lo && opts.min === undefined) lo = v; }
  if (hi === lo) hi = lo + 1;
  const n = Math.max(2, ...series.map((s) => s.values.length));
  const x = (i) => PADL + (i / (n - 1)) * (W - PADL - PADR);
  const y = (v) => PADT + (1 - (v - lo) / (hi - lo)) * (H - PADT - PADB);
  let svg = '<svg viewBox="0 0 ' + W + ' ' + H + '" preserveAspectRatio="none">';
  svg += '<line x1="0" x2="' + W + '" y1="' + y(0).toFixed(1) + '" y2="' + y(0).toFixed(1) + '" stroke="#334" stroke-width="1"/>';
  for (const s of series) {
    const off = n - s.values.length;
    let pts = [];
    const flush = () => { if (pts.length) svg += '<polyline fill="none" stroke="' + s.color + '" stroke-width="1.6" points="' + pts.join(" ") + '"/>'; pts = []; };
    s.values.forEach((v, i) => {
      if (v === null || !isFinite(v)) { flush(); return; }
      if (opts.step && pts.length) pts.push(x(off + i).toFixed(1) + "," + pts[pts.length - 1].split(",")[1]);
      pts.push(x(off + i).toFixed(1) + "," + y(v).toFixed(1));
    });
    flush();
  }
  svg += '<text x="' + (W - 2) + '" y="12" fill="#8a96a3" font-size="11" text-anchor="end">' + (opts.fmt || fmtNum)(hi) + '</text>';
  svg += '<text x="' + (W - 2) + '" y="' + (H - 3) + '" fill="#8a96a3" font-size="11" text-anchor="end">' + (opts.fmt || fmtNum)(lo) + '</text>';
  svg += '</svg>';
  const legend = document.createElement("div");
  legend.className = "legend";
  for (const s of series) {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = s.color;
    item.appendChild(swatch);
    let last = null;
    for (let i = s.values.length - 1; i >= 0; i--) if (s.values[i] !== null) { last = s.values[i]; break; }
    item.appendChild(document.createTextNode(s.name + " " + (opts.fmt || fmtNum)(last)));
    legend.appendChild(item);
  }
  el.innerHTML = svg;
  el.appendChild(legend);
}

function setBadge(el, cls, text) { el.className = "badge " + cls; el.textContent = text; }

// Samples kept by the page, at most the server's capacity; each poll asks only for newer ones.
let samples = [];
let newest = null;
let startedAt = null;

// Cluster view (this server lists peers, e.g. the proxy of \`ftvm up\` and its two nodes):
// name -> { samples, startedAt, newest, current, ok, error }.
const peers = new Map();
let clusterNewest = null;
// A view-only server has no status of its own: this peer (the proxy, else the first) stands in.
let anchor = null;

/** The reachable peer that is primary now (highest term if two claim it), or null. */
function primaryPeer() {
  let best = null;
  for (const [name, p] of peers) {
    if (!p.ok || !p.current || p.current.role !== "primary") continue;
    if (!best || p.current.term > best.current.term) best = { name, current: p.current };
  }
  return best;
}

/**
 * This page's samples with the peers' folded in, aligned to the nearest peer sample within
 * 750 ms: protection and failovers take the max, rates add up (only a primary has epochs and
 * bandwidth), percentiles take the max, drift the largest magnitude.
 */
function mergedSamples() {
  const list = [...peers].filter(([n]) => n !== anchor).map(([, p]) => ({ xs: p.samples, j: 0 }));
  let own = anchor === null ? samples : peers.get(anchor).samples;
  if (list.length === 0) return own;
  // Reachable peers are polled a little behind this page: stop where one of them has no sample
  // yet, or the tail would read as "unprotected, no epochs" for a moment.
  const lasts = [...peers].filter(([n, p]) => n !== anchor && p.ok && p.samples.length).map(([, p]) => p.samples[p.samples.length - 1].t);
  if (lasts.length) {
    const cutoff = Math.min(...lasts) + 750;
    own = own.filter((x) => x.t <= cutoff);
  }
  return own.map((x) => {
    const out = Object.assign({}, x);
    for (const p of list) {
      const xs = p.xs;
      while (p.j + 1 < xs.length && Math.abs(xs[p.j + 1].t - x.t) <= Math.abs(xs[p.j].t - x.t)) p.j++;
      const y = xs[p.j];
      if (!y || Math.abs(y.t - x.t) > 750) continue;
      out.protected = Math.max(out.protected, y.protected);
      out.term = Math.max(out.term, y.term);
      out.epochsPerSec += y.epochsPerSec;
      out.wireBytesPerSec += y.wireBytesPerSec;
      out.rawBytesPerSec += y.rawBytesPerSec;
      for (const k of ["pauseP50Ms", "pauseP99Ms", "outputDelayP50Ms", "outputDelayP99Ms"]) if (y[k] !== null && (out[k] === null || y[k] > out[k])) out[k] = y[k];
      out.failoversTotal = Math.max(out.failoversTotal, y.failoversTotal);
      if (Math.abs(y.driftMs) > Math.abs(out.driftMs)) out.driftMs = y.driftMs;
    }
    return out;
  });
}

function renderNodes() {
  const box = $("nodes");
  box.hidden = peers.size === 0;
  box.replaceChildren();
  for (const [name, p] of peers) {
    const card = document.createElement("div");
    card.className = "node";
    card.id = "node-" + name;
    const title = document.createElement("b");
    title.textContent = name;
    const role = document.createElement("span");
    role.className = "role";
    const badge = document.createElement("span");
    const detail = document.createElement("span");
    detail.className = "dim";
    if (!p.ok || !p.current) {
      role.textContent = p.current ? p.current.role + " (last seen)" : "";
      setBadge(badge, "bad", "UNREACHABLE");
      detail.textContent = p.error || "";
    } else {
      const c = p.current;
      role.textContent = c.role + " · term " + c.term;
      // The proxy holds no image: its card says whether it serves clients, not protection.
      if (c.role === "proxy") setBadge(badge, c.ready ? "ok" : "warn", c.ready ? "SERVING" : "NO ACTIVE NODE");
      else setBadge(badge, c.protected ? "ok" : "bad", c.protected ? "PROTECTED" : "UNPROTECTED");
      detail.textContent = "epoch " + (c.committedEpoch === null ? "–" : c.committedEpoch) + (c.ready ? " · ready" : " · not ready");
    }
    card.append(title, role, badge, detail);
    box.appendChild(card);
  }
}

function render(s) {
  const self = s.current, xs = mergedSamples(), last = xs.length ? xs[xs.length - 1] : null;
  // In the cluster view the node tiles follow the current primary, the proxy tiles this page.
  const prim = primaryPeer();
  const c = prim && self.epochsTotal === 0 && self.role !== "primary" ? Object.assign({}, self, {
    committedEpoch: prim.current.committedEpoch, compressionRatio: prim.current.compressionRatio,
    inFlightEpochs: prim.current.inFlightEpochs, inFlightBytes: prim.current.inFlightBytes, driftNs: prim.current.driftNs,
    clockMode: prim.current.clockMode, guestFaultsTotal: self.guestFaultsTotal + prim.current.guestFaultsTotal,
    scrubPagesTotal: prim.current.scrubPagesTotal, scrubMismatchesTotal: prim.current.scrubMismatchesTotal,
    throttleRatio: prim.current.throttleRatio, progress: Object.assign({}, prim.current.progress, self.progress),
  }) : self;
  renderNodes();
  $("role").textContent = (anchor === null || anchor === self.role ? self.role : anchor + " (" + self.role + ")") + (peers.size ? " · cluster of " + peers.size : "");
  $("term").textContent = String(peers.size && prim ? Math.max(self.term, prim.current.term) : self.term);
  if (peers.size && prim === null && self.role === "proxy" && self.ready) {
    // The proxy serves from a node this page has no metrics URL for (e.g. the target of a
    // migration): it cannot say whether that node is protected, and never claims it is not.
    setBadge($("protection"), "warn", "PROTECTION: SEE NODES");
    $("reason").textContent = self.readyReason + " (not charted: no metrics URL for it)";
  } else if (peers.size) {
    // The guest is protected when the serving primary says so.
    const on = prim !== null && prim.current.protected;
    setBadge($("protection"), on ? "ok" : "bad", on ? "PROTECTED" : "UNPROTECTED");
    $("reason").textContent = prim ? prim.name + " (primary): " + prim.current.protectionReason : "no primary reachable";
  } else if (self.role === "proxy") {
    // The proxy holds no image, so it cannot say whether the guest is protected; never claim it is not.
    setBadge($("protection"), "warn", "PROTECTION: SEE NODES");
    $("reason").textContent = "the proxy holds no image: see the nodes' pages";
  } else {
    setBadge($("protection"), c.protected ? "ok" : "bad", c.protected ? "PROTECTED" : "UNPROTECTED");
    $("reason").textContent = c.protectionReason;
  }
  setBadge($("ready"), c.ready ? "ok" : "warn", c.ready ? "READY" : "NOT READY");
  $("ready").title = c.readyReason;
  $("updated").textContent = new Date(s.now).toLocaleTimeString();
  $("t-epoch").textContent = c.committedEpoch === null ? "–" : String(c.committedEpoch);
  $("t-eps").textContent = last ? fmtNum(last.epochsPerSec, 1) : "–";
  $("t-pause").textContent = last ? fmtMs(last.pauseP99Ms) : "–";
  $("t-bw").textContent = last ? fmtBytes(last.wireBytesPerSec) + "/s / " + fmtBytes(last.rawBytesPerSec) + "/s" : "–";
  $("t-ratio").textContent = c.compressionRatio === null ? "–" : fmtNum(c.compressionRatio, 2) + "×";
  $("t-inflight").textContent = c.inFlightEpochs + " / " + fmtBytes(c.inFlightBytes);
  $("t-held").textContent = fmtBytes(c.outputHeldBytes) + " / " + c.outputHeldConns + " conn";
  $("t-clients").textContent = String(c.clients);
  $("t-failovers").textContent = c.failoversTotal + (c.lastFailoverMs === null ? "" : " (last " + fmtMs(c.lastFailoverMs) + ")");
  $("t-drift").textContent = fmtMs(c.driftNs / 1e6) + (c.clockMode ? " " + c.clockMode : "");
  const links = Object.entries(c.links || {}).map(([peer, up]) => peer + (up ? " up" : " DOWN"));
  $("t-links").textContent = links.length ? links.join(", ") : "–";
  $("t-faults").textContent = String(c.guestFaultsTotal);
  $("t-scrub").textContent = c.scrubMismatchesTotal + " / " + fmtNum(c.scrubPagesTotal, 0) + " pages";
  $("t-throttle").textContent = (100 * c.throttleRatio).toFixed(0) + "%";
  const col = (k) => xs.map((p) => p[k]);
  // A lone proxy has no protection, epochs, bandwidth or guest clock of its own to draw.
  const loneProxy = self.role === "proxy" && peers.size === 0;
  for (const id of ["c-protected", "c-epochs", "c-pause", "c-bw", "c-drift"]) $(id).parentElement.hidden = loneProxy;
  chart($("c-protected"), [{ name: "protected", color: "#2fbf71", values: col("protected") }], { min: 0, max: 1, step: true, fmt: (v) => (v ? "yes" : "no") });
  chart($("c-epochs"), [{ name: "epochs/s", color: "#4ea1ff", values: col("epochsPerSec") }]);
  chart($("c-pause"), [
    { name: "p50", color: "#4ea1ff", values: col("pauseP50Ms") },
    { name: "p99", color: "#f5a524", values: col("pauseP99Ms") },
  ], { fmt: fmtMs });
  chart($("c-bw"), [
    { name: "wire", color: "#4ea1ff", values: col("wireBytesPerSec") },
    { name: "raw", color: "#f5a524", values: col("rawBytesPerSec") },
  ], { fmt: (v) => fmtBytes(v) + "/s" });
  chart($("c-delay"), [
    { name: "p50", color: "#4ea1ff", values: col("outputDelayP50Ms") },
    { name: "p99", color: "#f5a524", values: col("outputDelayP99Ms") },
  ], { fmt: fmtMs });
  chart($("c-failovers"), [{ name: "failovers", color: "#e5484d", values: col("failoversTotal") }], { step: true, fmt: (v) => fmtNum(v, 0) });
  chart($("c-drift"), [{ name: "drift", color: "#b18cff", values: col("driftMs") }], { fmt: fmtMs });
  const tasks = Object.entries(c.progress || {});
  $("progress").hidden = tasks.length === 0;
  const box = $("tasks");
  box.replaceChildren();
  for (const [name, t] of tasks) {
    const label = document.createElement("div");
    const pct = t.total > 0 ? Math.min(100, (100 * t.done) / t.total) : 0;
    label.textContent = name + ": " + fmtNum(t.done, 0) + " / " + fmtNum(t.total, 0) + " " + t.unit + " (" + pct.toFixed(0) + "%)";
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("div");
    fill.style.width = pct.toFixed(1) + "%";
    bar.appendChild(fill);
    box.appendChild(label);
    box.appendChild(bar);
  }
}

async function pollCluster() {
  let r;
  try {
    r = await fetch(clusterNewest === null ? "api/cluster" : "api/cluster?since=" + clusterNewest, { cache: "no-store" });
  } catch (e) {
    return;
  }
  if (!r.ok) return;
  applyCluster(await r.json());
}

function applyCluster(cl) {
  for (const p of cl.peers || []) {
    let mine = peers.get(p.name);
    // A restarted peer keeps its history unless its clock is behind (the server applies the same rule).
    const lastT = mine && mine.samples.length ? mine.samples[mine.samples.length - 1].t : null;
    if (!mine || (p.startedAt !== null && lastT !== null && p.startedAt !== mine.startedAt && p.startedAt < lastT - 1000)) {
      mine = { samples: [], startedAt: p.startedAt };
      peers.set(p.name, mine);
    }
    mine.startedAt = p.startedAt;
    mine.ok = p.ok;
    mine.error = p.error;
    mine.current = p.current;
    for (const x of p.samples || []) if (!mine.samples.length || x.t > mine.samples[mine.samples.length - 1].t) mine.samples.push(x);
    if (mine.samples.length > 600) mine.samples = mine.samples.slice(mine.samples.length - 600);
  }
  // Ask next for what is newer than the oldest "newest" of all peers: no peer misses a sample.
  const lasts = [...peers.values()].filter((p) => p.samples.length).map((p) => p.samples[p.samples.length - 1].t);
  clusterNewest = lasts.length ? Math.min(...lasts) : null;
}

function applyStatus(s) {
  // A restarted process has a fresh ring (and maybe a clock behind ours): start over.
  if (startedAt !== null && s.startedAt !== startedAt) { samples = []; newest = null; }
  startedAt = s.startedAt;
  samples = samples.concat(s.samples);
  if (samples.length > s.capacity) samples = samples.slice(samples.length - s.capacity);
  if (samples.length) newest = samples[samples.length - 1].t;
}

/** What to render: this process's status, or (a process without one) the proxy's or any live peer's. */
function pick(s) {
  if (s !== null) return s;
  const live = [...peers].filter(([, p]) => p.current);
  const p = live.find(([, q]) => q.current.role === "proxy") || live[0];
  if (!p) throw new Error("no status of its own and no peer answered");
  anchor = p[0];
  return { current: p[1].current, now: Date.now() };
}

async function poll() {
  try {
    const r = await fetch(newest === null ? "api/status" : "api/status?since=" + newest, { cache: "no-store" });
    if (!r.ok && r.status !== 404) throw new Error("status " + r.status);
    let s = null;
    if (r.ok) {
      s = await r.json();
      applyStatus(s);
    }
    await pollCluster();
    render(pick(s));
    $("conn").textContent = "live";
  } catch (e) {
    $("conn").textContent = "disconnected";
  } finally {
    setTimeout(poll, 1000);
  }
}

// The server writes its status and the cluster's into the page: the first paint has data.
try {
  const init = JSON.parse($("ftvm-initial").textContent);
  if (init && (init.status || init.cluster)) {
    if (init.status) applyStatus(init.status);
    if (init.cluster) applyCluster(init.cluster);
    render(pick(init.status || null));
    $("conn").textContent = "live";
  }
} catch (e) {
  // Nothing usable: the first poll fills the page.
}
setTimeout(poll, 1000);
</script>
</body>
</html>
`;
