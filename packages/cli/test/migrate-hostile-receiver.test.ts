import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listen, type Link, type Listener, type Message } from '@ftvm/protocol';
import { MigrationSender } from '@ftvm/precopy';
import { spawnFtvm, type Spawned } from '../../../test/helpers/ftvm.js';
import { freePorts } from '../../../test/helpers/cluster.js';
import { RespClient } from '../../../test/helpers/resp.js';

/**
 * `ftvm migrate` from a real `ftvm run --control` to receivers that misbehave: each failure is
 * its own code in the CLI's log, exit 1, and the guest keeps serving on the source.
 */

const TOKEN = 'hostile-receiver-test';
const env = { FTVM_TOKEN: TOKEN };
const token = new Uint8Array(Buffer.from(TOKEN));

type Behaviour = (link: Link, m: Message) => void;

/** A migration listener that answers the sender with `behave`. */
async function fakeReceiver(behave: Behaviour): Promise<Listener> {
  return listen({
    host: '127.0.0.1', port: 0, token,
    identity: () => ({ nodeId: 'fake-receiver', role: 'secondary', term: 0, epoch: 0 }),
    onLink: (link) => link.on('message', (m) => behave(link, m)),
  });
}

const behaviours: Record<string, Behaviour> = {
  // Acks each round with an image digest that is not the one sent.
  FTVM_ERR_MIGRATION_DIGEST: (link, m) => {
    if (m.t === 'ckpt_end' || m.t === 'ckpt') link.send({ t: 'ack', term: 0, epoch: m.epoch, digest: new Uint8Array(m.digest.length).fill(7) });
  },
  // Acks the pre-copy rounds (echoing their digest), then hangs up while the sender waits for its
  // ack of the stop-and-copy (the round that carries devices).
  FTVM_ERR_MIGRATION_LINK: (() => {
    let final = false;
    return (link: Link, m: Message) => {
      if (m.t === 'ckpt_begin') final = m.devices !== null;
      if (m.t === 'ckpt_end' && !final) link.send({ t: 'ack', term: 0, epoch: m.epoch, digest: m.digest });
      if (m.t === 'ckpt_end' && final) link.close(4000, 'receiver gone');
    };
  })(),
  // Asks for disk blocks of a guest that has no disk.
  FTVM_ERR_MIGRATION_PROTOCOL: (link, m) => {
    if (m.t === 'ckpt_begin' || m.t === 'ckpt') link.send({ t: 'block_req', term: 0, fromBlock: 1_000_000, count: 1 });
  },
  // Refuses the first round with its own code: the CLI reports the receiver's code.
  FTVM_ERR_DISK_SIZE: (link, m) => {
    if (m.t === 'ckpt_end' || m.t === 'ckpt') link.send({ t: 'nack', term: 0, epoch: m.epoch, code: 'FTVM_ERR_DISK_SIZE', message: 'no room for this guest' });
  },
};

describe('ftvm migrate to a receiver that misbehaves', () => {
  let src: Spawned;
  let port: number;
  let ctl: number;
  beforeAll(async () => {
    [port, ctl] = freePorts(2) as [number, number];
    src = spawnFtvm(['run', '--guest', 'kv', '--port', String(port), '--control', `127.0.0.1:${ctl}`], env);
    await src.waitFor(/ftvm control: listening on/, 60_000);
  }, 90_000);
  afterAll(async () => {
    await src?.stop();
  });

  it('fails with the code of each misbehaviour, and the guest keeps serving on the source', async () => {
    const c = await RespClient.connect(port);
    c.send('SET', 'k', 'before');
    expect(await c.waitReplies(1)).toEqual(['OK']);
    for (const [code, behave] of Object.entries(behaviours)) {
      const r = await fakeReceiver(behave);
      try {
        const m = spawnFtvm(['migrate', '--from', `ws://127.0.0.1:${ctl}`, '--to', r.url], env);
        const exit = await Promise.race([m.exited, new Promise((res) => setTimeout(() => res('timeout'), 30_000))]);
        if (exit === 'timeout') await m.stop('SIGKILL');
        expect(exit, `${code}: ${m.err.join('\n')}`).toBe(1);
        expect(m.err.join('\n')).toMatch(new RegExp(`migration failed: the guest keeps running on the source.*code=${code}`));
      } finally {
        await r.close();
      }
      // The source still serves, with its data.
      c.send('INCR', 'n');
      c.send('GET', 'k');
      const replies = await c.waitReplies(c.replies.length + 2);
      expect(replies.slice(-1)).toEqual(['before']);
      expect(src.proc.exitCode).toBeNull();
    }
    expect(c.replies.filter((x) => /^\d+$/.test(x))).toEqual(Object.keys(behaviours).map((_, i) => String(i + 1)));
    c.end();
  }, 180_000);

  it('a receiver that never acks: the sender gives up with FTVM_ERR_MIGRATION_TIMEOUT after its commit timeout, in a pre-copy round and at the commit', async () => {
    const r = await fakeReceiver(() => undefined);
    try {
      const sender = await MigrationSender.connect(r.url, { token, moduleDigest: '00'.repeat(32), commitTimeoutMs: 300 });
      await sender.beginRound(0, 65536, 0, null);
      // A pre-copy round ends on the receiver's ack of it.
      let t0 = performance.now();
      await expect(sender.endRound()).rejects.toMatchObject({ code: 'FTVM_ERR_MIGRATION_TIMEOUT' });
      expect(performance.now() - t0).toBeGreaterThanOrEqual(290);
      // The stop-and-copy round ends at once; its ack (the guest started) is the commit's.
      await sender.beginRound(1, 65536, 0, { epoch: 1, memBytes: 65536, pages: new Uint32Array(0), globals: [], devices: { conns: [] } as never });
      await sender.endRound();
      t0 = performance.now();
      await expect(sender.commit()).rejects.toMatchObject({ code: 'FTVM_ERR_MIGRATION_TIMEOUT' });
      expect(performance.now() - t0).toBeGreaterThanOrEqual(290);
      sender.link.close();
    } finally {
      await r.close();
    }
  });
});
