/**
 * Where the vCPU module (vcpu-worker.ts) gets its init, its message port and its timers: from
 * worker_threads when it runs as a worker, or from the InlineVcpu that imported it on the main
 * thread (inline-vcpu.ts). An inline vCPU is one instance of the module, imported under its own
 * URL (`?inline=<key>`) so its module-level state is its own.
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

const inlineHosts = new Map<string, VcpuHost>();

/** InlineVcpu: the host the module imported as `?inline=<key>` will take. */
export function offerInlineHost(key: string, host: VcpuHost): void {
  inlineHosts.set(key, host);
}

/** The host of the vCPU module loaded from `moduleUrl`. */
export function takeVcpuHost(moduleUrl: string): VcpuHost {
  const key = new URL(moduleUrl).searchParams.get('inline');
  if (key !== null) {
    const h = inlineHosts.get(key);
    if (!h) throw new Error(`no inline vCPU host offered for key ${key}`);
    inlineHosts.delete(key);
    return h;
  }
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
