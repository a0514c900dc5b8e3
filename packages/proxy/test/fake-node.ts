/**
 * A tiny in-test node speaking the real net link (`listen()` from @ftvm/protocol).
 * Its "guest" echoes every input byte as output. As primary it tags output with the
 * current epoch and commits on a timer (or on `commit()`); each commit stores a
 * snapshot in the shared `Replica`, standing in for the secondary's acked image. As
 * secondary it reports the replica's epoch and, when promoted, restores that snapshot,
 * answers `offsets` and serves from it.
 */
import { listen, type Link, type Listener, type Message } from '@ftvm/protocol';

interface ConnState {
  inConsumed: number;
  outProduced: number;
  closed: boolean;
  /** Every output byte produced (retained for `resend`). */
  out: Buffer;
}

export interface Snapshot {
  epoch: number;
  maxConnId: number;
  conns: Map<number, ConnState>;
}

/** What the secondary would hold: the last acked checkpoint of the primary. */
export interface Replica {
  committed: Snapshot | undefined;
}

export interface FakeNodeOptions {
  token: Uint8Array;
  role: 'primary' | 'secondary';
  replica: Replica;
  term?: number;
  /** Commit period as primary, ms; undefined: only on commit(). Default 10. */
  commitEveryMs?: number | undefined;
  port?: number;
  /** Heartbeat period, ms. Default 50. */
  heartbeatMs?: number;
  nodeId?: string;
  /** As secondary, answer `promote` with `promote_deny` (a node that cannot take over). */
  refusePromote?: boolean;
}

function cloneConns(m: Map<number, ConnState>): Map<number, ConnState> {
  return new Map([...m].map(([k, v]) => [k, { ...v, out: Buffer.from(v.out) }]));
}

export class FakeNode {
  role: 'primary' | 'secondary' | 'fenced';
  term: number;
  /** Epoch in progress (output produced now is tagged with it). */
  epoch = 1;
  conns = new Map<number, ConnState>();
  maxConnId = 0;
  /** Every message the proxy sent, in order. */
  readonly received: Message[] = [];
  /** Close codes of net links that ended, in order. */
  readonly closes: { code: number; reason: string }[] = [];
  net: Link | undefined;
  netLinks = 0;
  private closedSinceCommit = new Set<number>();
  private commitTimer: NodeJS.Timeout | undefined;
  private hbTimer: NodeJS.Timeout | undefined;
  private constructor(
    readonly listener: Listener,
    private readonly opts: FakeNodeOptions,
  ) {
    this.role = opts.role;
    this.term = opts.term ?? 0;
  }

  static async start(opts: FakeNodeOptions): Promise<FakeNode> {
    let node!: FakeNode;
    const listener = await listen({
      host: '127.0.0.1',
      port: opts.port ?? 0,
      token: opts.token,
      identity: () => ({ nodeId: opts.nodeId ?? 'fake', role: node.role === 'primary' ? 'primary' : 'secondary', term: node.term, epoch: 0 }),
      onLink: (link) => node.onLink(link),
    });
    node = new FakeNode(listener, opts);
    node.hbTimer = setInterval(() => node.heartbeat(), opts.heartbeatMs ?? 50);
    if (node.role === 'primary') node.startCommits();
    return node;
  }

  get url(): string {
    return this.listener.url;
  }

  get port(): number {
    return this.listener.port;
  }

  /** Messages of one type the proxy sent. */
  got<T extends Message['t']>(t: T): Extract<Message, { t: T }>[] {
    return this.received.filter((m): m is Extract<Message, { t: T }> => m.t === t);
  }

  /** Ends the current epoch as committed (acked) and tells the proxy. */
  commit(): void {
    if (this.role !== 'primary' || !this.net || this.net.closed) return;
    const conns = [...this.conns].map(([conn, c]) => ({ conn, inConsumed: c.inConsumed, outProduced: c.outProduced, closed: c.closed }));
    this.opts.replica.committed = { epoch: this.epoch, maxConnId: this.maxConnId, conns: cloneConns(this.conns) };
    this.net.send({ t: 'commit', term: this.term, epoch: this.epoch, acked: true, maxConnId: this.maxConnId, conns });
    for (const id of this.closedSinceCommit) this.conns.delete(id);
    this.closedSinceCommit.clear();
    this.epoch++;
  }

  /** Sends one raw message on the net link (tests of odd messages). */
  send(msg: Message, payload?: Uint8Array): void {
    this.net?.send(msg, payload);
  }

  stopCommits(): void {
    clearInterval(this.commitTimer);
    this.commitTimer = undefined;
  }

  /** The process dies: listener and every link gone at once. */
  async kill(): Promise<void> {
    this.stopCommits();
    clearInterval(this.hbTimer);
    await this.listener.close();
  }

  private startCommits(): void {
    const every = 'commitEveryMs' in this.opts ? this.opts.commitEveryMs : 10;
    if (every !== undefined && this.commitTimer === undefined) this.commitTimer = setInterval(() => this.commit(), every);
  }

  private heartbeat(): void {
    if (!this.net || this.net.closed || this.role === 'fenced') return;
    const epoch = this.role === 'secondary' ? (this.opts.replica.committed?.epoch ?? 0) : this.epoch - 1;
    this.net.send({ t: 'heartbeat', term: this.term, epoch, sentAtMs: Date.now() });
  }

  private status(): void {
    if (!this.net) return;
    if (this.role === 'primary') {
      const live = {
        epoch: this.epoch - 1,
        maxConnId: this.maxConnId,
        conns: [...this.conns].map(([conn, c]) => ({ conn, inConsumed: c.inConsumed, outProduced: c.outProduced, closed: c.closed })),
      };
      this.net.send({ t: 'status', role: 'primary', term: this.term, epoch: this.epoch - 1, state: 'active', detail: { live } });
    } else {
      this.net.send({ t: 'status', role: 'secondary', term: this.term, epoch: this.opts.replica.committed?.epoch ?? 0, state: 'standby' });
    }
  }

  private onLink(link: Link): void {
    if (link.kind !== 'net') return;
    this.net = link;
    this.netLinks++;
    link.on('error', () => {});
    link.on('close', (code, reason) => this.closes.push({ code, reason }));
    link.on('message', (msg, payload) => this.onMessage(msg, payload));
    this.status();
  }

  private onMessage(msg: Message, payload: Uint8Array): void {
    this.received.push(msg);
    switch (msg.t) {
      case 'open':
        if (this.role !== 'primary') return;
        if (!this.conns.has(msg.conn)) this.conns.set(msg.conn, { inConsumed: 0, outProduced: 0, closed: false, out: Buffer.alloc(0) });
        this.maxConnId = Math.max(this.maxConnId, msg.conn);
        return;
      case 'input': {
        const c = this.conns.get(msg.conn);
        if (this.role !== 'primary' || !c || c.closed) return;
        const skip = c.inConsumed - msg.offset;
        if (skip < 0 || skip >= payload.length) return; // a gap (cannot happen) or bytes already held
        const bytes = Buffer.from(payload.subarray(skip));
        c.inConsumed += bytes.length;
        this.net!.send({ t: 'output', term: this.term, conn: msg.conn, epoch: this.epoch, offset: c.outProduced }, bytes);
        c.outProduced += bytes.length;
        c.out = Buffer.concat([c.out, bytes]);
        return;
      }
      case 'close': {
        const c = this.conns.get(msg.conn);
        if (this.role !== 'primary' || !c) return;
        c.closed = true;
        this.closedSinceCommit.add(msg.conn);
        return;
      }
      case 'resend':
        for (const r of msg.conns) {
          const c = this.conns.get(r.conn);
          if (c && r.offset < c.out.length) {
            this.net!.send({ t: 'output', term: this.term, conn: r.conn, epoch: this.epoch - 1, offset: r.offset }, c.out.subarray(r.offset));
          }
        }
        return;
      case 'promote': {
        const img = this.opts.replica.committed;
        if (this.role !== 'secondary' || !img || this.opts.refusePromote) {
          this.net!.send({ t: 'promote_deny', term: msg.term, reason: 'no committed image' });
          return;
        }
        this.role = 'primary';
        this.term = msg.term;
        this.conns = cloneConns(img.conns);
        this.maxConnId = img.maxConnId;
        this.epoch = img.epoch + 1;
        const conns = [...this.conns].map(([conn, c]) => ({ conn, inConsumed: c.inConsumed, outProduced: c.outProduced, closed: c.closed }));
        this.net!.send({ t: 'offsets', term: this.term, epoch: img.epoch, maxConnId: img.maxConnId, conns });
        this.startCommits();
        return;
      }
      case 'fence':
        if (msg.term > this.term && this.role === 'primary') {
          this.role = 'fenced';
          this.stopCommits();
        }
        return;
      default:
        return;
    }
  }
}

/** A TCP client that collects every byte it receives. */
export class Client {
  data = '';
  ended = false;
  closed = false;
  private constructor(readonly socket: import('node:net').Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (this.data += d));
    socket.on('end', () => (this.ended = true));
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => {});
  }

  static async connect(port: number): Promise<Client> {
    const { connect } = await import('node:net');
    return new Promise((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => resolve(new Client(s)));
      s.once('error', reject);
    });
  }

  send(s: string): void {
    this.socket.write(s);
  }
}

/** Polls `cond` every 5 ms; throws with `what` after `timeoutMs`. */
export async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
