// The WebAssembly JS API as Node provides it. TypeScript ships these types only in the DOM
// lib, which this project does not load; this declares the part the VMM uses.
declare namespace WebAssembly {
  class Memory {
    constructor(d: { initial: number; maximum?: number; shared?: boolean });
    readonly buffer: ArrayBuffer;
    grow(delta: number): number;
  }
  class Global {
    value: unknown;
  }
  class RuntimeError extends Error {}
  class Module {
    constructor(bytes: Uint8Array);
  }
  interface Instance {
    readonly exports: Record<string, unknown>;
  }
  function instantiate(bytes: Uint8Array, imports?: Record<string, Record<string, unknown>>): Promise<{ module: Module; instance: Instance }>;
}
