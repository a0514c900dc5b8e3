// Turns the raw results into bench/results/replication.md and SVG plots. Every number comes
// from the results object of one run; nothing here is typed in by hand.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { median, spread, summarizeTests } from './stats.mjs';
import { barChart, xyChart } from './svg.mjs';

const WORKLOADS = {
  kv: 'kv: redis-benchmark, 50 clients, no pipelining',
  kvPipe: 'kv: redis-benchmark, 50 clients, pipeline 16',
  kv1: 'kv: redis-benchmark, one client, no pipelining',
  http: 'http: wrk -t2 -c50, GET /counter',
};

const f = (digits) => (v) => (v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(digits));
const f0 = f(0);
const f1 = f(1);
const f2 = f(2);
const f3 = f(3);
/** Two decimals, or three when two would round a value across the goal's line (0.797 is not "0.80"). */
const atLine = (v, line) => (v !== null && Number.isFinite(v) && Math.abs(v - line) < 0.005 ? f3(v) : f2(v));
const mb = (v) => (v === null || v === undefined ? '–' : (v / 1e6).toFixed(v >= 1e7 ? 1 : 3));

/** "median (min–max)" over repeats, or the value alone for one run. */
function cell(values, fmt) {
  const m = median(values);
  if (m === null) return '–';
  const s = spread(values);
  return values.filter((v) => Number.isFinite(v)).length > 1 ? `${fmt(m)} (${fmt(s[0])}–${fmt(s[1])})` : fmt(m);
}

/** Per run: the client summary plus the replication window. */
function rows(runs) {
  return runs.map((r) => ({ ...summarizeTests(r.tests), repl: r.window.repl, cpu: r.window.cpu, cpuUs: r.window.cpuUs ?? null, cpuSumUs: r.window.cpuSumUs ?? null }));
}

const pick = (rs, fn) => rs.map((r) => fn(r) ?? null);

function table(header, body) {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...body.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

const SHORT = { primary: 'pri', secondary: 'sec', proxy: 'prx', run: 'run', 'redis-server': 'redis' };

function cpuCell(rs) {
  const roles = rs[0]?.cpu ? Object.keys(rs[0].cpu) : [];
  return roles.map((k) => `${SHORT[k] ?? k} ${f0(median(pick(rs, (r) => r.cpu[k])))}`).join(' / ') || '–';
}

/** CPU µs per request of each process (medians over repeats) and, for several, their sum. */
function cpuUsCell(rs) {
  const roles = rs[0]?.cpuUs ? Object.keys(rs[0].cpuUs) : [];
  if (roles.length === 0) return '–';
  const each = roles.map((k) => `${SHORT[k] ?? k} ${f1(median(pick(rs, (r) => r.cpuUs?.[k])))}`).join(' / ');
  return roles.length > 1 ? `${each} = **${f1(median(pick(rs, (r) => r.cpuSumUs)))}**` : each;
}

function workloadTable(res, w) {
  const base = median(pick(rows(res.configs.unprotected?.[w] ?? []), (r) => r.rps));
  const baseProxy = median(pick(rows(res.configs['unprotected-proxy']?.[w] ?? []), (r) => r.rps));
  const cpuRun = median(pick(rows(res.configs.unprotected?.[w] ?? []), (r) => r.cpuSumUs));
  const cpuNative = median(pick(rows(res.configs.native?.[w] ?? []), (r) => r.cpuSumUs));
  const body = [];
  for (const [name, c] of Object.entries(res.configs)) {
    const rs = rows(c[w] ?? []);
    if (rs.length === 0) {
      body.push([name, name === 'native' ? 'not run (no http)' : 'no result', ...Array(17).fill('')]);
      continue;
    }
    const rps = pick(rs, (r) => r.rps);
    body.push([
      name,
      cell(rps, f0),
      base && name !== 'unprotected' ? f2(median(rps) / base) : name === 'unprotected' ? '1' : '–',
      baseProxy && name !== 'unprotected-proxy' ? f2(median(rps) / baseProxy) : name === 'unprotected-proxy' ? '1' : '–',
      cell(pick(rs, (r) => r.p50Ms), f2),
      cell(pick(rs, (r) => r.p99Ms), f2),
      cell(pick(rs, (r) => r.p999Ms), f2),
      cell(pick(rs, (r) => r.repl?.wireBps), mb),
      cell(pick(rs, (r) => r.repl?.rawBps), mb),
      cell(pick(rs, (r) => r.repl?.wireOverRaw), f3),
      cell(pick(rs, (r) => (r.repl ? r.repl.wireBps / r.rps : null)), f0),
      cell(pick(rs, (r) => r.repl?.epochsPerSec), f0),
      cell(pick(rs, (r) => r.repl?.pauseP50Ms), f3),
      cell(pick(rs, (r) => r.repl?.pauseP99Ms), f3),
      cell(pick(rs, (r) => r.repl?.outputDelayP99Ms), f2),
      cpuCell(rs),
      cpuUsCell(rs),
      cpuRun ? f2(median(pick(rs, (r) => r.cpuSumUs)) / cpuRun) : '–',
      cpuNative ? f1(median(pick(rs, (r) => r.cpuSumUs)) / cpuNative) : '–',
    ]);
  }
  return table(
    ['config', 'req/s', 'vs unprot.', 'vs unprot. proxy', 'p50 ms', 'p99 ms', 'p99.9 ms', 'wire MB/s', 'raw MB/s', 'wire/raw', 'wire B/req', 'epochs/s', 'pause p50 ms', 'pause p99 ms', 'output delay p99 ms', 'CPU % (1 core = 100)', 'CPU µs/request, each process (every thread) = sum', 'CPU vs `ftvm run`', 'CPU vs native redis'],
    body,
  );
}

function detailTable(res, w) {
  const body = [];
  for (const [name, c] of Object.entries(res.configs)) {
    const runs = c[w] ?? [];
    if (runs.length === 0) continue;
    for (const t of runs[0].tests.map((x) => x.name)) {
      const per = runs.map((r) => r.tests.find((x) => x.name === t)).filter(Boolean);
      body.push([name, t, cell(pick(per, (x) => x.rps), f0), cell(pick(per, (x) => x.p50Ms), f2), cell(pick(per, (x) => x.p99Ms), f2), cell(pick(per, (x) => x.p999Ms), f2)]);
    }
  }
  return table(['config', 'command', 'req/s', 'p50 ms', 'p99 ms', 'p99.9 ms'], body);
}

const med = (res, name, w, fn) => median(pick(rows(res.configs[name]?.[w] ?? []), fn));

function sweepTable(res) {
  const body = res.sweep.map((p) => {
    const r = p.window.repl ?? {};
    const b = r.pauseP99BucketMs;
    return [
      p.policy,
      `${p.memMiB} MiB`,
      f0(p.rate),
      f0(p.guestPagesPerSec),
      f1(r.epochsPerSec),
      f0(r.dirtyPagesPerEpoch),
      mb(r.wireBps),
      mb(r.rawBps),
      f3(r.wireOverRaw),
      f3(r.pauseP50Ms),
      f3(r.pauseP99Ms),
      b ? `${f3(b[0])}–${b[1] === null || !Number.isFinite(b[1]) ? '∞' : f3(b[1])}` : '–',
      r.pauseShareAtMost1ms === null || r.pauseShareAtMost1ms === undefined ? '–' : `${(100 * r.pauseShareAtMost1ms).toFixed(1)}%`,
      cpuCell([{ cpu: p.window.cpu }]),
    ];
  });
  return table(
    ['policy', 'memory', 'target pages/s', 'written pages/s', 'epochs/s', 'dirty pages/epoch', 'wire MB/s', 'raw MB/s', 'wire/raw', 'pause p50 ms', 'pause p99 ms', 'p99 bucket ms', 'pauses ≤ 1 ms', 'CPU %'],
    body,
  );
}

/** The goals of the two issues, evaluated on this run's medians. */
function goals(res) {
  const out = [];
  const add = (goal, value, target, met, why) => out.push({ goal, value, target, met, why });
  const thr = (w, base) => {
    const a = med(res, 'adaptive', w, (r) => r.rps);
    const u = med(res, base, w, (r) => r.rps);
    return a !== null && u ? a / u : null;
  };
  const cpuNote = (w) => {
    const rs = rows(res.configs.adaptive?.[w] ?? []);
    return rs.length ? `CPU during the run: ${cpuCell(rs)} % on a ${res.meta.machine.nproc}-core machine shared with the client` : '';
  };
  // The issue's measure, from paired runs (see pairedSection): the median of per-pair ratios, with
  // every process anywhere on the machine (shared) and with the secondary on a CPU of its own (split).
  for (const [key, where, cpuWhere, line] of [
    ['paired', 'every process on either CPU', `on a ${res.meta.machine.nproc}-core machine shared with the client`, 0.6],
    ['pairedSplit', 'two hosts emulated: primary, proxy and client on CPU 0, the secondary alone on CPU 1', 'with primary, proxy and client on one CPU', 0.8],
  ]) {
    for (const w of ['kv', 'kvPipe', 'http']) {
      const ps = res[key]?.[w] ?? [];
      if (ps.length === 0) continue;
      const ratios = ps.map((p) => p.ratio);
      const v = median(ratios);
      add(`throughput adaptive / \`ftvm run\`, paired runs, ${where} (${WORKLOADS[w]}; median of ${ps.length} pair ratios)`,
        ps.length > 1 ? `${atLine(v, line)} (${f2(Math.min(...ratios))}–${f2(Math.max(...ratios))})` : atLine(v, line), `≥ ${line}`, v === null ? null : v >= line,
        v !== null && v < line ? `CPU per request during the adaptive runs: ${cpuUsCell(ps.map((p) => ({ cpuUs: p.prot.window.cpuUs, cpuSumUs: p.prot.window.cpuSumUs })))} µs against \`ftvm run\`'s ${f1(median(ps.map((p) => p.base.window.cpuSumUs ?? null)))} µs ${cpuWhere}` : '');
    }
  }
  // CPU per request: the roles' sum against `ftvm run`'s at the same load, and the proxy alone.
  for (const w of ['kv', 'kvPipe', 'http']) {
    const a = med(res, 'adaptive', w, (r) => r.cpuSumUs);
    const u = med(res, 'unprotected', w, (r) => r.cpuSumUs);
    const v = a !== null && u ? a / u : null;
    add(`CPU per request, primary + secondary + proxy (every thread) / \`ftvm run\`'s (${WORKLOADS[w]}; aim 1.5)`, f2(v), '≤ 2', v === null ? null : v <= 2,
      v !== null && v > 2 ? `${cpuUsCell(rows(res.configs.adaptive?.[w] ?? []))} µs against ${f1(u)} µs` : '');
    const p = med(res, 'adaptive', w, (r) => r.cpuUs?.proxy);
    add(`CPU per request of the proxy alone (${WORKLOADS[w]})`, p === null ? '–' : `${f1(p)} µs`, '≤ 20 µs', p === null ? null : p <= 20, '');
  }
  // One client: the latency protection adds when nothing queues.
  {
    const ap = med(res, 'adaptive', 'kv1', (r) => r.p50Ms);
    const up = med(res, 'unprotected', 'kv1', (r) => r.p50Ms);
    const a9 = med(res, 'adaptive', 'kv1', (r) => r.p99Ms);
    const u9 = med(res, 'unprotected', 'kv1', (r) => r.p99Ms);
    const d50 = ap !== null && up !== null ? ap - up : null;
    const d99 = a9 !== null && u9 !== null ? a9 - u9 : null;
    const why = `adaptive p50 ${f3(ap)} / p99 ${f3(a9)} ms against \`ftvm run\`'s ${f3(up)} / ${f3(u9)} ms; checkpoint ack p50 ${f3(med(res, 'adaptive', 'kv1', (r) => r.repl?.ackLatencyP50Ms))} ms`;
    add(`one client, p50 added over \`ftvm run\` (${WORKLOADS.kv1})`, d50 === null ? '–' : `${f3(d50)} ms`, '≤ 0.3 ms', d50 === null ? null : d50 <= 0.3, d50 !== null && d50 > 0.3 ? why : '');
    add(`one client, p99 added over \`ftvm run\` (${WORKLOADS.kv1})`, d99 === null ? '–' : `${f3(d99)} ms`, '≤ 1 ms', d99 === null ? null : d99 <= 1, d99 !== null && d99 > 1 ? why : '');
  }
  // The same from the configuration tables' medians (runs minutes apart). The stricter row compares
  // with `ftvm run`, which serves clients itself (no proxy process, no network link in between).
  for (const [base, label] of [
    ['unprotected-proxy', 'unprotected, both through the proxy, medians of the configuration tables'],
    ['unprotected', 'unprotected `ftvm run` without a proxy'],
  ]) {
    for (const w of ['kv', 'kvPipe', 'http']) {
      const v = thr(w, base);
      add(`throughput adaptive / ${label} (${WORKLOADS[w]})`, f2(v), '≥ 0.8', v === null ? null : v >= 0.8, v !== null && v < 0.8 ? `${cpuNote(w)}; see Profile` : '');
    }
  }
  const wr = med(res, 'adaptive', 'kv', (r) => r.repl?.wireOverRaw);
  add('wire / raw dirty bytes on kv (adaptive, no pipelining)', f3(wr), '≤ 0.1', wr === null ? null : wr <= 0.1, '');
  for (const w of ['kv', 'kvPipe', 'http']) {
    const a = med(res, 'adaptive', w, (r) => r.repl?.wireBps);
    for (const [other, target] of [['periodic-100', 1.0], ['sync-io', 0.33]]) {
      const o = med(res, other, w, (r) => r.repl?.wireBps);
      const v = a !== null && o ? a / o : null;
      const ea = med(res, 'adaptive', w, (r) => r.repl?.epochsPerSec);
      const pa = med(res, 'adaptive', w, (r) => (r.repl ? r.repl.wireBps / r.rps : null));
      const po = med(res, other, w, (r) => (r.repl ? r.repl.wireBps / r.rps : null));
      const eo = med(res, other, w, (r) => r.repl?.epochsPerSec);
      add(`bandwidth adaptive / ${other} (${WORKLOADS[w]})`, f2(v), `≤ ${target}`, v === null ? null : v <= target,
        v !== null && v > target
          ? `adaptive ran ${f0(ea)} epochs/s against ${f0(eo)} for ${other} (more, smaller checkpoints re-send pages a longer epoch sends once); per request ${f0(pa)} B against ${f0(po)} B (ratio ${f2(pa / po)})`
          : '');
      // The same workload (redis-benchmark's N requests, or one wrk request) measured in bytes: bytes/s
      // above also scales with how many requests each configuration served per second.
      const vr = pa !== null && po ? pa / po : null;
      add(`replication bytes per request adaptive / ${other} (${WORKLOADS[w]})`, f2(vr), `≤ ${target}`, vr === null ? null : vr <= target,
        vr !== null && vr > target ? `${f0(pa)} B against ${f0(po)} B per request` : '');
    }
  }
  for (const w of ['kv', 'kvPipe', 'http']) {
    const a = med(res, 'adaptive', w, (r) => r.p99Ms);
    for (const [other, target] of [['periodic-100', 0.1], ['sync-io', 0.5]]) {
      const o = med(res, other, w, (r) => r.p99Ms);
      const v = a !== null && o ? a / o : null;
      add(`p99 latency adaptive / ${other} (${WORKLOADS[w]})`, f2(v), `≤ ${target}`, v === null ? null : v <= target,
        v !== null && v > target ? `p99 ${f2(a)} ms against ${f2(o)} ms; adaptive output delay p99 ${f2(med(res, 'adaptive', w, (r) => r.repl?.outputDelayP99Ms))} ms` : '');
    }
  }
  // Pause at ~1,000 dirty pages per epoch: at each memory size, the sweep point of the adaptive
  // policy (else any) nearest to it; the goal holds when it holds at every size. The same for
  // adaptive with the vCPU thread on SCHED_FIFO (--vcpu-sched fifo), when the sweep ran it.
  const pts = res.sweep.filter((p) => p.window.repl?.dirtyPagesPerEpoch > 0);
  const near = (ps) => ps.sort((a, b) => Math.abs(Math.log(a.window.repl.dirtyPagesPerEpoch / 1000)) - Math.abs(Math.log(b.window.repl.dirtyPagesPerEpoch / 1000)))[0];
  const mems = [...new Set(pts.map((p) => p.memMiB))].sort((a, b) => a - b);
  const pauseRow = (label, p1k) => {
    const ok = p1k.every((p) => p.window.repl.pauseShareAtMost1ms >= 0.99);
    add(`pause p99 at ~1,000 dirty pages/epoch${label} (${p1k.map((p) => `${p.policy}, ${p.memMiB} MiB, ${p.rate} pages/s: ${f0(p.window.repl.dirtyPagesPerEpoch)} pages/epoch`).join('; ')})`,
      p1k.map((p) => `${f3(p.window.repl.pauseP99Ms)} ms (${(100 * p.window.repl.pauseShareAtMost1ms).toFixed(1)}% ≤ 1 ms${p.window.repl.pauses ? ` of ${p.window.repl.pauses} holds` : ''})`).join('; '), '≤ 1 ms', ok,
      p1k.filter((p) => p.window.repl.pauseShareAtMost1ms < 0.99).map((p) => { const r = p.window.repl; return `${p.memMiB} MiB: mean pause ${f3(r.pauseMeanMs)} ms for ${f0(r.dirtyPagesPerEpoch)} pages (${f2((1000 * r.pauseMeanMs) / r.dirtyPagesPerEpoch)} µs per dirty page)`; }).join('; '));
  };
  const p1k = mems.map((m) => near(pts.filter((p) => p.memMiB === m && p.policy === 'adaptive')) ?? near(pts.filter((p) => p.memMiB === m && p.policy !== 'adaptive-fifo')));
  if (p1k.length && p1k.every(Boolean)) pauseRow('', p1k);
  else add('pause p99 at ~1,000 dirty pages/epoch', '–', '≤ 1 ms', null, 'no sweep point');
  const fifo1k = mems.map((m) => near(pts.filter((p) => p.memMiB === m && p.policy === 'adaptive-fifo')));
  if (fifo1k.length && fifo1k.every(Boolean)) pauseRow(', vCPU on SCHED_FIFO', fifo1k);
  // O(dirty), not O(memory): same policy and rate at the smallest and largest working set.
  const sizes = [...new Set(res.sweep.map((p) => p.wsPages))].sort((a, b) => a - b);
  if (sizes.length >= 2) {
    const ratios = [];
    for (const small of res.sweep.filter((p) => p.wsPages === sizes[0])) {
      const big = res.sweep.find((p) => p.wsPages === sizes.at(-1) && p.policy === small.policy && p.rate === small.rate);
      const a = small.window.repl?.pauseMeanMs;
      const b = big?.window.repl?.pauseMeanMs;
      if (a > 0 && b > 0) ratios.push(b / a);
    }
    const m = median(ratios);
    const big = (sizes.at(-1) * 4096) / 2 ** 20;
    const small = (sizes[0] * 4096) / 2 ** 20;
    add(`pause O(dirty), not O(memory): mean pause at ${big} MiB / at ${small} MiB, same policy and rate (median over ${ratios.length} points)`,
      f2(m), `≤ 2 (memory is ${big / small}×)`, m === null ? null : m <= 2, '');
  }
  const c = res.crash.find((x) => x.variant === 'default timeouts') ?? res.crash[0];
  for (const cv of res.crash) {
    const v = median(cv.trials.map((t) => t.crashToReplyMs));
    add(`crash-to-first-reply, SIGKILL of the primary (${cv.variant}; median of ${cv.trials.length})`, v === null ? '–' : `${f0(v)} ms`, '≤ 500 ms', v === null ? null : v <= 500,
      v !== null && v > 500 ? `failure detection is a timeout (${cv.variant === 'default timeouts' ? 'secondary --detection-timeout-ms and proxy --failover-timeout-ms, 1000 ms by default' : cv.variant}) and it dominates` : '');
  }
  void c;
  return out;
}

/** One row per pair: each side's req/s and p99, and the ratio (`key`: paired or pairedSplit). */
function pairedSection(res, key = 'paired') {
  const parts = [];
  for (const [w, label] of Object.entries(WORKLOADS)) {
    const ps = res[key]?.[w] ?? [];
    if (ps.length === 0) continue;
    const body = ps.map((p, i) => {
      const b = summarizeTests(p.base.tests);
      const a = summarizeTests(p.prot.tests);
      const us = (x) => x.window.cpuSumUs;
      return [String(i + 1), i % 2 === 0 ? 'unprotected' : 'adaptive', f0(b.rps), f2(b.p99Ms), f1(us(p.base)), f0(a.rps), f2(a.p99Ms), cpuUsCell([{ cpuUs: p.prot.window.cpuUs, cpuSumUs: us(p.prot) }]), f2(p.ratio), f2(us(p.prot) / us(p.base)), cpuCell([{ cpu: p.prot.window.cpu }])];
    });
    parts.push(`### ${label}`, '', table(['pair', 'ran first', '`ftvm run` req/s', 'p99 ms', 'CPU µs/req', 'adaptive req/s', 'p99 ms', 'CPU µs/req', 'throughput ratio', 'CPU ratio', 'adaptive CPU %'], body), '');
  }
  return parts.join('\n');
}

function goalsTable(res) {
  const g = goals(res);
  return table(
    ['goal', 'measured', 'target', 'status', 'why (when missed)'],
    g.map((x) => [x.goal, x.value, x.target, x.met === null ? 'NO DATA' : x.met ? 'met' : '**MISSED**', x.why]),
  );
}

function crashTable(res) {
  return table(
    ['variant', 'trials', 'median ms', 'min–max ms', 'counter gapless in every trial', 'node / proxy flags'],
    res.crash.map((c) => {
      const v = c.trials.map((t) => t.crashToReplyMs);
      const s = spread(v);
      return [c.variant, String(c.trials.length), f0(median(v)), s ? `${f0(s[0])}–${f0(s[1])}` : '–', c.trials.every((t) => t.gapless) ? 'yes' : '**no**', `${c.nodeArgs.join(' ') || '–'} / ${c.proxyArgs.join(' ') || '–'}`];
    }),
  );
}

/** A source path from its package folder on (the run may use a frozen copy of the tree elsewhere). */
const shortPath = (p) => p.replace(/^.*?\/((packages|node_modules)\/)/, '$1');

function profileSection(res) {
  if (!res.profile) return '';
  const p = res.profile;
  const s = summarizeTests(p.run.tests);
  const parts = [
    `One adaptive kv run (${p.run.command}) with \`node --cpu-prof\` on every role: ${f0(s.rps)} req/s, p99 ${f2(s.p99Ms)} ms, CPU ${cpuCell([{ cpu: p.run.window.cpu }])} %. Self time, top functions per thread:`,
  ];
  for (const [role, top] of Object.entries(p.roles)) {
    parts.push(`\n**${role}**\n`);
    parts.push(table(['self %', 'self ms', 'function', 'where'], top.map((t) => [f1(t.pct), f0(t.selfMs), `\`${t.fn}\``, t.where ? `\`${shortPath(t.where)}\`` : ''])));
  }
  return parts.join('\n');
}

function plots(res, dir) {
  const files = [];
  const write = (name, svg) => {
    writeFileSync(join(dir, name), svg);
    files.push(name);
  };
  const series = Object.entries(WORKLOADS).map(([w, label]) => ({
    name: label.replace(/: .*?, /, ', ').replace('redis-benchmark, ', ''),
    points: Object.keys(res.configs).map((c) => ({ x: med(res, c, w, (r) => r.rps), y: med(res, c, w, (r) => r.p99Ms), label: c })).filter((p) => p.x !== null && p.y !== null),
  }));
  write('latency-vs-throughput.svg', xyChart({ title: 'p99 latency vs throughput (median of repeats)', xLabel: 'client throughput, req/s', yLabel: 'p99 latency, ms', series, xLog: true, yLog: true, lines: false }));
  const cfgs = Object.keys(res.configs).filter((c) => !c.startsWith('unprotected'));
  write('bandwidth-per-policy.svg', barChart({
    title: 'replication bandwidth per configuration (kv, no pipelining)',
    yLabel: 'MB/s (log)',
    categories: cfgs,
    series: [
      { name: 'wire', values: cfgs.map((c) => (med(res, c, 'kv', (r) => r.repl?.wireBps) ?? NaN) / 1e6) },
      { name: 'raw dirty', values: cfgs.map((c) => (med(res, c, 'kv', (r) => r.repl?.rawBps) ?? NaN) / 1e6) },
    ],
    yLog: true,
  }));
  if (res.sweep.length) {
    const keys = [...new Set(res.sweep.map((p) => `${p.policy} ${p.memMiB} MiB`))];
    const by = (fn) => keys.map((k) => ({ name: k, points: res.sweep.filter((p) => `${p.policy} ${p.memMiB} MiB` === k).map((p) => ({ x: p.rate, y: fn(p) })) }));
    write('pause-vs-dirty-rate.svg', xyChart({ title: 'checkpoint pause p99 vs dirty rate (dirtier)', xLabel: 'dirty rate, pages/s', yLabel: 'pause p99, ms (histogram estimate)', series: by((p) => p.window.repl?.pauseP99Ms), xLog: true, yLog: true }));
    write('bandwidth-vs-dirty-rate.svg', xyChart({ title: 'wire bandwidth vs dirty rate (dirtier)', xLabel: 'dirty rate, pages/s', yLabel: 'wire MB/s', series: by((p) => (p.window.repl?.wireBps ?? NaN) / 1e6), xLog: true, yLog: true }));
  }
  return files;
}

/** The last warn/error lines of each role per system started (time stamps included). */
function logsSection(res) {
  const parts = [];
  for (const [what, roles] of Object.entries(res.logs ?? {})) {
    const lines = Object.entries(roles).flatMap(([role, ls]) => ls.slice(-8).map((l) => `${role}: ${l.slice(0, 240)}`));
    if (lines.length) parts.push(`**${what}**\n\n\`\`\`\n${lines.join('\n')}\n\`\`\`\n`);
  }
  return parts.join('\n') || 'none recorded';
}

export function writeReport(res, dir) {
  const m = res.meta;
  const mc = m.machine;
  const files = plots(res, dir);
  const md = [
    `# ftvm replication benchmark (${m.mode} run)`,
    '',
    `Generated by \`bench/run.mjs\` from the run's own numbers (raw data: \`results-${m.mode}.json\`). Notes and analysis: [NOTES.md](NOTES.md).`,
    '',
    '## Machine and command',
    '',
    `- ${mc.nproc} cores (${mc.cpu}), ${mc.ramGiB} GiB RAM, ${mc.kernel}, Node.js ${mc.node}`,
    `- ${mc.redisBenchmark}; ${mc.wrk}`,
    `- commit ${mc.commit}${mc.dirty ? ' (with uncommitted changes in the tree)' : ''}${mc.snapshotTaken ? ` (a frozen copy of the build taken ${mc.snapshotTaken}, FTVM_BENCH_CLI)` : ''}; started ${m.started}, took ${(m.durationSec / 60).toFixed(1)} min`,
    `- load average (1/5/15 min) at start ${m.loadavgStart.map((x) => x.toFixed(2)).join(' / ')}, at end ${m.loadavgEnd.map((x) => x.toFixed(2)).join(' / ')}: the machine is shared with other work, and clients, proxy, primary and secondary all run on it`,
    `- reproduce: \`npm run build && ${m.command}\``,
    `- repeats per workload: ${m.repeat} (cells: median (min–max) when more than one)`,
    `- failure detection of the measured systems: ${m.detectionMs ? `nodes --detection-timeout-ms ${m.detectionMs}, proxy --failover-timeout-ms ${m.detectionMs}` : 'the roles\' defaults (1000 ms)'} (the crash variants set their own)`,
    `- sizes: kv ${m.sizes.kv.requests} requests per command (${m.sizes.kv.tests.join(',')}), pipelined ${m.sizes.kvPipe.requests}` +
      (m.sizes.kv.fastRequests ? ` (the unprotected and adaptive configurations: ${m.sizes.kv.fastRequests} and ${m.sizes.kvPipe.fastRequests})` : '') +
      `; wrk ${m.sizes.httpSeconds} s; sweep ${m.sizes.sweep.seconds} s per point${m.sizes.sweep.goal ? ` (${m.sizes.sweep.goal.seconds} s at ${m.sizes.sweep.goal.rate} pages/s)` : ''}`,
    '',
    res.failures.length ? `**Failures in this run:**\n\n${res.failures.map((x) => `- ${x.what}: ${x.error.split('\n')[0]}`).join('\n')}\n` : 'Every configuration produced numbers.',
    '',
    '## Goals',
    '',
    goalsTable(res),
    '',
    '## Paired throughput: `ftvm run` vs adaptive',
    '',
    pairedSection(res) || 'not run',
    '',
    'Each pair runs the same client workload on a freshly started `unprotected` system (`ftvm run`, no proxy) and on a freshly started `adaptive` one, back to back, alternating which goes first; each system is stopped before the next starts. The throughput ratio is adaptive / `ftvm run` req/s of that pair, the CPU ratio the sum of the three roles\' CPU per request over `ftvm run`\'s. Both sides of a ratio thus see the same state of the shared machine, where the configuration tables below are medians taken minutes apart. Every process may run on either CPU, so the secondary takes its CPU from the primary, the proxy and the client.',
    '',
    '## Paired throughput, two hosts emulated: the secondary on a CPU of its own',
    '',
    pairedSection(res, 'pairedSplit') || 'not run',
    '',
    'The same pairs with every process confined by `taskset`: the primary, the proxy and the client on CPU 0, the secondary alone on CPU 1, as on a deployment with the secondary on a host of its own (the design\'s). The unprotected side runs on CPU 0 only, as it would on the primary\'s host alone. CPU % is per process, 100 = one CPU.',
    '',
    ...Object.entries(WORKLOADS).flatMap(([w, label]) => [`## ${label}`, '', workloadTable(res, w), '']),
    'Latency percentiles are the clients\' own (redis-benchmark: its percentile distribution, p99.9 = first line at or past 99.9%; wrk: its histogram via `bench/wrk-report.lua`). With several commands, req/s is all requests over their total time and the percentiles are the mean over the commands (per-command values below). Wire/raw bytes, epochs and the pause come from the primary\'s `/metrics` (diff of counters over the run); pause quantiles are interpolated inside the `ftvm_epoch_pause_seconds` buckets (50 µs, 100 µs, 250 µs, 500 µs, 1 ms, ...), so they are estimates bounded by those edges. Output delay is the proxy\'s `ftvm_output_delay_seconds`. CPU: utime+stime of each process from `/proc/<pid>/stat` over the run (all threads).',
    '',
    '![p99 latency vs throughput](latency-vs-throughput.svg)',
    '',
    '![bandwidth per configuration](bandwidth-per-policy.svg)',
    '',
    '## Dirtier sweep: bandwidth and pause vs dirty rate',
    '',
    res.sweep.length ? sweepTable(res) : 'not run',
    '',
    'The dirtier writes one 8-byte word into `rate` random pages of the working set per second (pattern=random); "written pages/s" is what the guest reports it did (STATS). The working set is grown in 64 MiB steps before the points are measured.',
    '',
    res.sweep.length ? '![pause vs dirty rate](pause-vs-dirty-rate.svg)\n\n![bandwidth vs dirty rate](bandwidth-vs-dirty-rate.svg)\n' : '',
    '## Crash to first reply',
    '',
    res.crash.length ? crashTable(res) : 'not run',
    '',
    'One connection through the proxy sends INCR, waits, sends the next; after 1.5 s the primary gets SIGKILL. Measured: from the kill to the first reply to an INCR sent after the kill. "Gapless": every reply was the previous one plus 1 (no lost or repeated increment).',
    '',
    '## Per command',
    '',
    ...Object.entries(WORKLOADS).flatMap(([w, label]) => [`### ${label}`, '', detailTable(res, w), '']),
    '## Profile',
    '',
    profileSection(res) || 'not run',
    '',
    '## Warnings the roles logged',
    '',
    logsSection(res),
    '',
  ].join('\n');
  writeFileSync(join(dir, 'replication.md'), md);
  return ['replication.md', ...files];
}
