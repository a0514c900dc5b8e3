/**
 * Where the vCPU module (vcpu-worker.ts) gets its init, its message port and its timers: from
 * worker_threads when it runs as a worker, or from the InlineVcpu that imported it on the main
 * thread (inline-vcpu.ts). An inline vCPU is one instance of the module, imported under a URL
 * of its own (`?vcpu=<n>`) so its module-level state is its own.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { FromWorker, ToWorker, WorkerInit } from './worker-messages.js';

export interface VcpuPort {
  postMessage(m: FromWorker, transfer?: ArrayBuffer[]): void;
  on(event: 'message', fn: (m: ToWorker) => void): void;
  close(): void;
}

/** Timer functions the vCPU module uses: an inline vCPU's stop once it is terminated. */
export interface VcpuTimers {
  setTimeout: (fn: () => void, ms?: number) => NodeJS.Timeout;
  clearTimeout: (t: NodeJS.Timeout | undefined) => void;
  setImmediate: (fn: () => void) => NodeJS.Immediate;
}

export interface VcpuHost {
  init: WorkerInit;
  port: VcpuPort;
  timers: VcpuTimers;
  /** Inline only: runs when the vCPU is terminated (the module lets go of the guest's memory). */
  onTerminate(fn: () => void): void;
}

/**
 * Hosts offered by InlineVcpus whose module instance has not started yet, oldest first, kept
 * process-wide: a test runner may load this package's sources while the vCPU module is always
 * dist/ (two copies of this module). Each instance takes one as it starts; which instance
 * serves which InlineVcpu does not matter (same code, own state), only that each takes one.
 */
const pending: VcpuHost[] = ((globalThis as Record<symbol, unknown>)[Symbol.for('ftvm.inlineVcpuHosts')] ??= []) as VcpuHost[];

/** InlineVcpu: the next instance of the vCPU module takes this host. */
export function offerInlineHost(host: VcpuHost): void {
  pending.push(host);
}

/** InlineVcpu: its module failed to load, so no instance will take this host. */
export function withdrawInlineHost(host: VcpuHost): void {
  const i = pending.indexOf(host);
  if (i >= 0) pending.splice(i, 1);
}

/** The host of this instance of the vCPU module: an InlineVcpu's if one is waiting (a worker thread has none), else the worker's. */
export function takeVcpuHost(): VcpuHost {
  const h = pending.shift();
  if (h) return h;
  if (!parentPort) throw new Error('the vCPU module runs in a worker thread or under an InlineVcpu');
  const port = parentPort;
  return {
    init: workerData as WorkerInit,
    port: {
      postMessage: (m, transfer) => port.postMessage(m, transfer ?? []),
      on: (event, fn) => port.on(event, fn),
      close: () => port.close(),
    },
    timers: { setTimeout, clearTimeout, setImmediate },
    onTerminate: () => {},
  };
}
