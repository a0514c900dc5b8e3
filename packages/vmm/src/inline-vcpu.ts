/**
 * The vCPU on the caller's thread (VmmOptions.vcpu 'inline'): the same vCPU module a worker
 * runs (vcpu-worker.ts), imported once per vCPU and driven through a port whose messages are
 * delivered as microtasks. A request then costs no thread wake-up on either side.
 *
 * Nothing can terminate a thread from outside, so a runaway event is stopped from inside: the
 * instrumented guest burns fuel at every loop iteration and function entry, and when it runs
 * out the vCPU compares the event's running time with eventTimeoutMs and throws (see
 * FUEL_GLOBAL in @ftvm/instrument). Only a guest with that fuel and no exception handlers (one
 * could catch the throw) may run inline (PreparedGuest.interruptible).
 */
import { EventEmitter } from 'node:events';
import { pathToFileURL } from 'node:url';
import { offerInlineHost, withdrawInlineHost, type VcpuHost } from './vcpu-host.js';
import type { FromWorker, ToWorker, WorkerInit } from './worker-messages.js';

let nextKey = 1;


/**
 * Messages whose sender builds them fresh for each post and never touches them again (the
 * event batch, the batch's outputs): handed over as they are. Every other message is cloned
 * with its transfer list, as postMessage would, so both sides keep a worker's ownership rules.
 */
const BY_REFERENCE = new Set<string>(['events', 'out']);

/** A Worker's surface as Vmm uses it: postMessage, 'message' and 'error', terminate(). */
export class InlineVcpu extends EventEmitter<{ message: [m: FromWorker]; error: [e: Error] }> {
  private terminated = false;
  private handler: ((m: ToWorker) => void) | null = null;
  /** Messages posted before the module listened (it is imported asynchronously). */
  private early: ToWorker[] = [];
  private readonly stops: (() => void)[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly immediates = new Set<NodeJS.Immediate>();

  constructor(modulePath: string, init: WorkerInit, transfer: ArrayBuffer[]) {
    super();
    // A URL of its own: a new instance of the module (a module is evaluated once per URL).
    const key = `${process.pid}.${nextKey++}.${Math.random().toString(36).slice(2)}`;
    const host: VcpuHost = {
      init: structuredClone(init, { transfer }),
      port: {
        postMessage: (m, t) => this.fromVcpu(m, t),
        on: (_event, fn) => {
          this.handler = fn;
          for (const m of this.early.splice(0)) queueMicrotask(() => this.deliver(m));
        },
        close: () => {},
      },
      timers: {
        setTimeout: (fn, ms) => {
          const t = setTimeout(() => {
            this.timers.delete(t);
            this.guard(fn);
          }, ms);
          this.timers.add(t);
          return t;
        },
        clearTimeout: (t) => {
          if (!t) return;
          clearTimeout(t);
          this.timers.delete(t);
        },
        setImmediate: (fn) => {
          const i = setImmediate(() => {
            this.immediates.delete(i);
            this.guard(fn);
          });
          this.immediates.add(i);
          return i;
        },
      },
      onTerminate: (fn) => this.stops.push(fn),
    };
    offerInlineHost(host);
    import(`${pathToFileURL(modulePath).href}?vcpu=${key}`).catch((e: unknown) => {
      withdrawInlineHost(host);
      this.crash(e);
    });
  }

  postMessage(m: ToWorker, transfer: ArrayBuffer[] = []): void {
    if (this.terminated) return;
    const msg = BY_REFERENCE.has(m.t) ? m : structuredClone(m, { transfer });
    queueMicrotask(() => this.deliver(msg));
  }

  /** Stops the vCPU: no message, timer or callback of it runs again, and it lets go of the guest. */
  terminate(): Promise<number> {
    if (!this.terminated) {
      this.terminated = true;
      for (const t of this.timers) clearTimeout(t);
      for (const i of this.immediates) clearImmediate(i);
      this.timers.clear();
      this.immediates.clear();
      this.early = [];
      for (const fn of this.stops.splice(0)) fn();
    }
    return Promise.resolve(1);
  }

  private deliver(m: ToWorker): void {
    if (this.terminated) return;
    if (!this.handler) {
      this.early.push(m);
      return;
    }
    const h = this.handler;
    this.guard(() => h(m));
  }

  private fromVcpu(m: FromWorker, transfer: ArrayBuffer[] | undefined): void {
    if (this.terminated) return;
    const msg = BY_REFERENCE.has(m.t) ? m : structuredClone(m, { transfer });
    queueMicrotask(() => {
      if (!this.terminated) this.emit('message', msg);
    });
  }

  /** Runs vCPU code; what it throws ends the vCPU as an uncaught error ends a worker. */
  private guard(fn: () => void): void {
    if (this.terminated) return;
    try {
      fn();
    } catch (e) {
      this.crash(e);
    }
  }

  private crash(e: unknown): void {
    if (this.terminated) return;
    void this.terminate();
    const err = e instanceof Error ? e : new Error(String(e));
    queueMicrotask(() => this.emit('error', err));
  }
}
