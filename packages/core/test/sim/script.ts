/**
 * Runs a scenario script (test/testdata/*.txt) against a simulated cluster.
 *
 * One command per line; `#` starts a comment; strings are double-quoted with \n escapes.
 *   config key=value ...           before start: seed, policy, lost (continue|block),
 *                                  timeoutMs, heartbeatMs, rejoinMs, maxConnInputLogBytes,
 *                                  and any policy option (intervalMs, minGapMs, ...)
 *   start                          boot a as primary (term 1) and b as secondary
 *   client <c> open | send "<text>" | incr <n> | close
 *   run <ms>                       advance the manual clock, delivering what is due
 *   deliver                        run until no message is in flight
 *   kill <node> | restart <node>   node = a | b | primary | secondary
 *   restart proxy                  a new proxy (the old one's clients are reset)
 *   client <c> send "POISON\n"     the guest faults on that line (a trap)
 *   partition <node> | heal <node> messages to/from the node are held (silently) until heal
 *   cut <x>-<y> | uncut <x>-<y>    close a link and keep it down / let it come back
 *   drop <x>-<y>                   lose the messages in flight on that link (both ways)
 *   corrupt <x>-><y>               corrupt the next page batch sent from x to y
 *                                  (x, y: a | b | proxy | primary | secondary)
 *   expect client <c> got "<text>" | replies <n> | closed | paused | reading
 *   expect active <node|none> | expect term <n> | expect state <node> <mode>
 *   expect protected <node> <true|false> | expect event "<substring>"
 *   expect consistent              the end-to-end oracle (Cluster.check) finds nothing
 */
import { Cluster, type ClusterOptions } from './cluster.js';

export interface ScriptResult {
  cluster: Cluster;
  failures: string[];
}

function tokenize(line: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(line)) !== null) {
    if (m[1] !== undefined) out.push(m[1].replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\'));
    else out.push(m[2]!);
  }
  return out;
}

const CLUSTER_KEYS = new Set(['seed', 'policy', 'lost', 'timeoutMs', 'heartbeatMs', 'rejoinMs', 'maxConnInputLogBytes']);

export function runScript(text: string): ScriptResult {
  const opts: ClusterOptions = {};
  const policyOptions: Record<string, unknown> = {};
  let cluster: Cluster | undefined;
  const failures: string[] = [];
  const need = (): Cluster => {
    if (cluster === undefined) throw new Error('start the cluster first');
    return cluster;
  };
  /** "a-b", "primary->secondary", "a->proxy": the two ends, roles resolved to node names now. */
  const ends = (spec: string): [string, string] => {
    const [x, y] = spec.split(/->|-/) as [string, string];
    const name = (e: string) => (e === 'proxy' ? 'proxy' : need().node(e).id);
    return [name(x), name(y)];
  };
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!.replace(/(^|\s)#.*$/, '').trim();
    if (raw === '') continue;
    const t = tokenize(raw);
    const where = `line ${i + 1} (${raw})`;
    const fail = (msg: string) => failures.push(`${where}: ${msg}`);
    switch (t[0]) {
      case 'config':
        for (const kv of t.slice(1)) {
          const [k, v] = kv.split('=') as [string, string];
          const val: unknown = /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v;
          if (k === 'lost') opts.onSecondaryLost = v as 'continue' | 'block';
          else if (CLUSTER_KEYS.has(k)) (opts as Record<string, unknown>)[k] = val;
          else policyOptions[k] = val;
        }
        break;
      case 'start':
        cluster = new Cluster({ ...opts, policyOptions });
        cluster.start();
        break;
      case 'client': {
        const c = need();
        const [, name, verb, arg] = t as [string, string, string, string | undefined];
        if (verb === 'open') c.clientOpen(name);
        else if (verb === 'send') c.clientSend(name, arg!);
        else if (verb === 'incr') for (let k = 0; k < Number(arg); k++) c.clientSend(name, 'INCR\n');
        else if (verb === 'close') c.clientClose(name);
        else throw new Error(`${where}: unknown client verb`);
        break;
      }
      case 'run':
        need().run(Number(t[1]));
        break;
      case 'deliver': {
        // Until no message is in flight (heartbeats keep coming, so bounded), 0.1 ms steps.
        const c = need();
        for (let k = 0; k < 10_000 && c.net.inFlight > 0; k++) c.run(0.1);
        break;
      }
      case 'kill':
        need().kill(t[1]!);
        break;
      case 'restart':
        if (t[1] === 'proxy') need().restartProxy();
        else need().restart(t[1]!);
        break;
      case 'partition':
        need().net.partition(need().node(t[1]!).id);
        break;
      case 'heal':
        need().net.heal(need().node(t[1]!).id);
        break;
      case 'cut':
      case 'uncut': {
        const [x, y] = ends(t[1]!);
        const l = need().net.link(x, y);
        l.cut = t[0] === 'cut';
        if (l.cut) need().net.close(x, y);
        break;
      }
      case 'drop': {
        const [x, y] = ends(t[1]!);
        need().net.dropInFlight(x, y);
        break;
      }
      case 'corrupt': {
        const [x, y] = ends(t[1]!);
        need().net.corruptNext.add(`${x}>${y}`);
        break;
      }
      case 'expect': {
        const c = need();
        const what = t[1];
        if (what === 'client') {
          const cl = c.client(t[2]!);
          if (t[3] === 'got') {
            if (cl.received !== t[4]) fail(`client ${t[2]} got ${JSON.stringify(cl.received)}, want ${JSON.stringify(t[4])}`);
          } else if (t[3] === 'replies') {
            if (cl.replies().length !== Number(t[4])) fail(`client ${t[2]} has ${cl.replies().length} replies, want ${t[4]}`);
          } else if (t[3] === 'paused' || t[3] === 'reading') {
            if (cl.paused !== (t[3] === 'paused')) fail(`client ${t[2]} paused=${cl.paused}, want ${t[3]}`);
          } else if (t[3] === 'closed') {
            if (!cl.closedByServer) fail(`client ${t[2]} was not closed by the server`);
          } else throw new Error(`${where}: unknown client expectation`);
        } else if (what === 'active') {
          const act = c.proxy.active ?? 'none';
          if (act !== t[2]) fail(`active is ${act}, want ${t[2]}`);
        } else if (what === 'term') {
          if (c.proxy.term !== Number(t[2])) fail(`proxy term is ${c.proxy.term}, want ${t[2]}`);
        } else if (what === 'state') {
          const n = c.node(t[2]!);
          const st = n.mode === 'primary' ? `primary/${n.core!.state}` : n.mode === 'secondary' ? `secondary/${n.sec!.state}` : n.mode;
          if (st !== t[3] && n.mode !== t[3]) fail(`node ${t[2]} is ${st}, want ${t[3]}`);
        } else if (what === 'protected') {
          const n = c.node(t[2]!);
          const p = n.mode === 'primary' && n.core!.isProtected;
          if (String(p) !== t[3]) fail(`node ${t[2]} protected=${p}, want ${t[3]}`);
        } else if (what === 'event') {
          if (!c.events.some((e) => e.includes(t[2]!))) fail(`no event contains ${JSON.stringify(t[2])}`);
        } else if (what === 'no-event') {
          const hit = c.events.find((e) => e.includes(t[2]!));
          if (hit !== undefined) fail(`unexpected event: ${hit}`);
        } else if (what === 'consistent') {
          for (const p of c.check()) fail(p);
        } else throw new Error(`${where}: unknown expectation ${what}`);
        break;
      }
      default:
        throw new Error(`${where}: unknown command ${t[0]}`);
    }
  }
  if (cluster === undefined) throw new Error('script never started the cluster');
  return { cluster, failures };
}
