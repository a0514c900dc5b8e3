import { afterEach, describe, expect, it } from 'vitest';
import { ProxyRuntime, type ProxyRuntimeOptions } from '../src/index.js';
import { Client, FakeNode, sleep, until, type FakeNodeOptions, type Replica } from './fake-node.js';

const token = new TextEncoder().encode('test-secret');

interface Cluster {
  a: FakeNode;
  b: FakeNode;
  replica: Replica;
  proxy: ProxyRuntime;
  port: number;
  logs: string[];
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function cluster(opts: { a?: Partial<FakeNodeOptions>; b?: Partial<FakeNodeOptions>; proxy?: Partial<ProxyRuntimeOptions> } = {}): Promise<Cluster> {
  const replica: Replica = { committed: undefined };
  const a = await FakeNode.start({ token, role: 'primary', replica, ...opts.a });
  cleanups.push(() => a.kill());
  const b = await FakeNode.start({ token, role: 'secondary', replica, ...opts.b });
  cleanups.push(() => b.kill());
  const logs: string[] = [];
  const sink = (level: string) => (m: string, f?: Record<string, unknown>) => logs.push(`${level} ${m}${f ? ' ' + JSON.stringify(f) : ''}`);
  const proxy = new ProxyRuntime({
    port: 0,
    nodes: [a.url, b.url],
    token,
    failoverTimeoutMs: 300,
    reconnectMinMs: 10,
    reconnectMaxMs: 50,
    log: { error: sink('error'), warn: sink('warn'), info: sink('info'), debug: sink('debug') },
    ...opts.proxy,
  });
  const port = await proxy.start();
  cleanups.push(() => proxy.close());
  await until(() => proxy.active === 'a', 'node a active');
  if (opts.a?.commitEveryMs !== null && !(opts.a && 'commitEveryMs' in opts.a)) {
    // b must have reported a committed image (heartbeat every 50 ms) before a test kills a.
    await until(() => replica.committed !== undefined, 'a first commit');
    await sleep(120);
  }
  return { a, b, replica, proxy, port, logs };
}

async function client(port: number): Promise<Client> {
  const c = await Client.connect(port);
  cleanups.push(async () => void c.socket.destroy());
  return c;
}

describe('ProxyRuntime', () => {
  it('writes a reply to the client only after the commit covering it', async () => {
    const { a, port } = await cluster({ a: { commitEveryMs: undefined } });
    const c = await client(port);
    c.send('ping\n');
    await until(() => a.conns.get(1)?.outProduced === 5, 'the node produced the echo');
    await sleep(100);
    expect(c.data).toBe('');
    a.commit();
    await until(() => c.data === 'ping\n', 'the echo after commit');
    // A second reply produced in a later epoch waits for that epoch's commit too.
    c.send('again\n');
    await until(() => a.conns.get(1)?.outProduced === 11, 'the second echo produced');
    await sleep(50);
    expect(c.data).toBe('ping\n');
    a.commit();
    await until(() => c.data === 'ping\nagain\n', 'the second echo after commit');
    // Confirms are batched (at most one per 20 ms): they arrive after the releases.
    await until(() => a.got('confirm').length === 2, 'both confirms');
    expect(a.got('confirm').map((m) => m.epoch)).toEqual([1, 2]);
  });

  it('releases a reply on the commit the secondary sends over its own link, and confirms to the primary only on the primary\'s', async () => {
    const { a, b, port } = await cluster({ a: { commitEveryMs: undefined } });
    const c = await client(port);
    c.send('ping\n');
    await until(() => a.conns.get(1)?.outProduced === 5, 'the node produced the echo');
    await sleep(50);
    expect(c.data).toBe('');
    // What a real secondary sends the proxy after committing the primary's epoch.
    const epoch = a.epoch;
    b.send({ t: 'commit', term: a.term, epoch, acked: true, maxConnId: 1, conns: [{ conn: 1, inConsumed: 5, outProduced: 5, closed: false }] });
    await until(() => c.data === 'ping\n', 'the echo released by the secondary\'s commit');
    await sleep(60);
    expect(a.got('confirm')).toEqual([]);
    a.commit();
    await until(() => a.got('confirm').length === 1, 'the confirm after the primary\'s own commit');
    expect(a.got('confirm')[0]!.epoch).toBe(epoch);
    expect(c.data).toBe('ping\n');
  });

  it('promotes the secondary when the active link closes, replays logged input from its offsets and keeps the client open', async () => {
    const { a, b, proxy, port, logs } = await cluster();
    const failovers: { durationMs: number; term: number }[] = [];
    proxy.events.on('failover', (f) => failovers.push({ ...f }));
    const c = await client(port);
    c.send('one\n');
    await until(() => c.data === 'one\n', 'first echo');
    a.stopCommits();
    c.send('two\n');
    await until(() => a.conns.get(1)?.outProduced === 8, 'a echoed the uncommitted input');
    await sleep(30);
    expect(c.data).toBe('one\n');
    await a.kill();
    await until(() => proxy.active === 'b', 'b active');
    expect(proxy.term).toBe(1);
    expect(b.got('promote')).toEqual([{ t: 'promote', term: 1 }]);
    await until(() => c.data === 'one\ntwo\n', 'replayed reply');
    // Exactly the input b's image had not consumed, from its offset; the reply came once.
    expect(b.got('input').map((m) => [m.conn, m.offset])).toEqual([[1, 4]]);
    c.send('three\n');
    await until(() => c.data === 'one\ntwo\nthree\n', 'reply from the new primary');
    expect(c.closed).toBe(false);
    expect(failovers).toHaveLength(1);
    expect(failovers[0]!.term).toBe(1);
    expect(failovers[0]!.durationMs).toBeGreaterThanOrEqual(0);
    expect(proxy.stats()).toMatchObject({ failovers: 1, term: 1, active: 'b', inputReplayedBytes: 4 });
    expect(logs.some((l) => l.startsWith('info active node is now b (term 1)'))).toBe(true);
  });

  it('fails over after failoverTimeoutMs when the active node goes silent on an open link', async () => {
    const { a, proxy, port } = await cluster();
    const c = await client(port);
    c.send('x\n');
    await until(() => c.data === 'x\n', 'echo');
    // Silence without a close: a stops committing and heartbeating, its link stays up.
    a.stopCommits();
    (a as unknown as { hbTimer: NodeJS.Timeout }).hbTimer.close();
    const t0 = performance.now();
    await until(() => proxy.active === 'b', 'b active', 3000);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(250);
    expect(a.got('fence').map((m) => m.term)).toEqual([1]);
  });

  it('fences a node that comes back as primary with an old term', async () => {
    const { a, proxy, port } = await cluster();
    const c = await client(port);
    c.send('x\n');
    await until(() => c.data === 'x\n', 'echo');
    const aPort = a.port;
    await a.kill();
    await until(() => proxy.active === 'b', 'b active');
    const stale = await FakeNode.start({ token, role: 'primary', replica: { committed: undefined }, port: aPort, term: 0 });
    cleanups.push(() => stale.kill());
    await until(() => stale.got('fence').length > 0, 'fence to the stale primary');
    expect(stale.got('fence')[0]!.term).toBe(1);
    expect(proxy.active).toBe('b');
    // Output it sends with its old term never reaches clients.
    stale.send({ t: 'output', term: 0, conn: 1, epoch: 1, offset: 2 }, new TextEncoder().encode('evil'));
    c.send('y\n');
    await until(() => c.data === 'x\ny\n', 'echo from b');
    await sleep(30);
    expect(c.data).toBe('x\ny\n');
    expect(proxy.stats().refused).toBeGreaterThan(0);
  });

  it('survives clients that reset their connection mid-stream and keeps serving others', async () => {
    const { proxy, port } = await cluster();
    for (let i = 0; i < 20; i++) {
      const c = await Client.connect(port);
      c.send('partial request without newline '.repeat(10));
      if (i % 2 === 0) c.socket.resetAndDestroy();
      else c.socket.destroy();
    }
    const ok = await client(port);
    ok.send('still here\n');
    await until(() => ok.data === 'still here\n', 'echo to a healthy client');
    await until(() => proxy.stats().clients === 1, 'reset clients gone');
  });

  it('closes a node link that sends a message only the proxy sends, with a coded close, and reconnects', async () => {
    const { a, b, port } = await cluster();
    const c = await client(port);
    b.send({ t: 'open', term: 0, conn: 7 });
    await until(() => b.closes.length === 1, 'b link closed');
    expect(b.closes[0]!.code).toBe(4099);
    expect(b.closes[0]!.reason).toMatch(/^FTVM_ERR_PROXY_BAD_MESSAGE/);
    await until(() => b.netLinks === 2, 'proxy reconnected to b');
    expect(a.closes).toHaveLength(0);
    c.send('fine\n');
    await until(() => c.data === 'fine\n', 'echo');
  });

  it('closes the link of a primary whose status lacks its offsets (4099)', async () => {
    const { b } = await cluster();
    b.send({ t: 'status', role: 'primary', term: 5, epoch: 0, state: 'active', detail: { live: { epoch: 1, maxConnId: -1, conns: [] } } });
    await until(() => b.closes.length === 1, 'b link closed');
    expect(b.closes[0]!.code).toBe(4099);
    expect(b.closes[0]!.reason).toMatch(/maxConnId/);
  });

  it('drops the active link on an output stream gap and fails over to the secondary', async () => {
    const { a, proxy, port } = await cluster();
    const c = await client(port);
    c.send('a\n');
    await until(() => c.data === 'a\n', 'echo');
    a.send({ t: 'output', term: 0, conn: 1, epoch: a.epoch, offset: 1000 }, new Uint8Array(3));
    await until(() => a.closes.length === 1, 'a link closed');
    expect(a.closes[0]!.reason).toMatch(/^FTVM_ERR_CORE_STREAM_GAP/);
    await until(() => proxy.active === 'b', 'b active');
    c.send('b\n');
    await until(() => c.data === 'a\nb\n', 'echo from b');
  });

  it('pauses a client whose logged input is over its limit and serves all of it once commits trim the log', async () => {
    const { a, proxy, port } = await cluster({ a: { commitEveryMs: undefined }, proxy: { maxConnInputLogBytes: 1000 } });
    const c = await client(port);
    const big = 'z'.repeat(99) + '\n';
    for (let i = 0; i < 50; i++) c.send(big);
    await until(() => (a.conns.get(1)?.inConsumed ?? 0) > 1000, 'input past the limit reached the node');
    await sleep(50);
    // Paused: the log stays within twice its limit while nothing commits.
    expect(proxy.stats().inputLogBytes).toBeLessThanOrEqual(2000);
    expect(a.conns.get(1)!.inConsumed).toBeLessThan(5000);
    const commits = setInterval(() => a.commit(), 10);
    cleanups.push(async () => clearInterval(commits));
    await until(() => c.data.length === 5000, 'every byte echoed', 10_000);
    expect(c.data).toBe(big.repeat(50));
  });

  it('pauses reading a node whose held output is over its limit, and reads on before that pause could fail it over', async () => {
    const { a, proxy, port, logs } = await cluster({ a: { commitEveryMs: undefined }, proxy: { maxHeldOutputBytes: 4096, failoverTimeoutMs: 500 } });
    const c = await client(port);
    c.socket.setNoDelay(true);
    const line = 'y'.repeat(999) + '\n';
    for (let i = 0; i < 6; i++) {
      c.send(line);
      await sleep(3);
    }
    await until(() => logs.some((l) => l.startsWith('debug held output over its limit: pausing node a')), 'pause');
    // Longer than failoverTimeoutMs: heartbeats must still be read.
    await sleep(700);
    expect(proxy.term).toBe(0);
    expect(proxy.active).toBe('a');
    expect(logs.some((l) => l.startsWith('warn node a: held output stayed over maxHeldOutputBytes'))).toBe(true);
    a.commit();
    await until(() => c.data === line.repeat(6), 'all output after the commit');
  });

  it('gives up on a secondary that refuses promotion at once, without waiting for promoteTimeoutMs', async () => {
    const { a, proxy, logs } = await cluster({ b: { refusePromote: true }, proxy: { promoteTimeoutMs: 60_000 } });
    await a.kill();
    await until(() => logs.some((l) => l.startsWith('warn node b refused promotion in term 1')), 'refusal logged', 2000);
    await until(() => proxy.state === 'lost', 'lost, not promoting', 2000);
    expect(proxy.stats().failoverBlocked).toBeGreaterThan(0);
  });

  it('keeps unread output of all clients within maxTotalClientWriteBufferBytes by dropping the slowest reader first', async () => {
    const { port, logs, proxy } = await cluster({ proxy: { maxClientWriteBufferBytes: 256 * 1024 * 1024, maxTotalClientWriteBufferBytes: 6 * 1024 * 1024, metricsPort: 0 } });
    const readers = [await client(port), await client(port), await client(port)];
    // Two clients stop reading; their echoed output piles up in the proxy. The third reads.
    readers[0]!.socket.pause();
    readers[1]!.socket.pause();
    const chunk = 'x'.repeat(64 * 1024) + '\n';
    for (let i = 0; i < 160; i++) {
      readers[0]!.send(chunk);
      if (i < 100) readers[1]!.send(chunk);
      await sleep(2);
    }
    await until(() => logs.some((l) => /dropping the slowest client/.test(l)), 'a slow reader dropped', 20_000);
    readers[2]!.send('still here\n');
    await until(() => readers[2]!.data.endsWith('still here\n'), 'the reading client served');
    const text = await (await fetch(`http://127.0.0.1:${proxy.metricsPort}/metrics`)).text();
    expect(Number(/^ftvm_clients_dropped_total\{reason="output_budget"\} (\d+)$/m.exec(text)?.[1])).toBeGreaterThan(0);
  });

  it('serves /healthz and /readyz on the metrics port', async () => {
    const { proxy } = await cluster({ proxy: { metricsPort: 0 } });
    const base = `http://127.0.0.1:${proxy.metricsPort}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const text = await (await fetch(`${base}/metrics`)).text();
    expect(text).toMatch(/ftvm_term 0/);
  });
});
