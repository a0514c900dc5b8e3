// Bench guest for the dirty-logging overhead (bench/instrument/overhead.mjs).
// Compiled with: npx asc bench/instrument/guest.ts -O3 --runtime stub --memoryBase 1048576
//   --noAssert --use abort= --initialMemory 1024 -o <out.wasm>
// Every routine works on raw memory from HEAP (no allocator) and returns a checksum,
// so the instrumented and uninstrumented runs can be compared for equal results.

// ---- ftvm ABI surface (so the bench runs the same instrument() path as real guests) ----
export const ftvm_abi_version: i32 = 1;
export function ftvm_init(): void {}
export function ftvm_alloc(len: i32): i32 { return HEAP; }
export function ftvm_on_open(conn: i32): void {}
export function ftvm_on_data(conn: i32, ptr: i32, len: i32): void {}
export function ftvm_on_close(conn: i32): void {}
export function ftvm_on_timer(): void {}

const HEAP: i32 = 4 << 20; // bytes; far above the 1 MiB bytemap and AS's static data

let rng: u32 = 0x9e3779b9;
function next(): u32 {
  let x = rng;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  rng = x;
  return x;
}

/** Open-addressing hash map KV insert/update: 16-byte slots {key u32, len u32, value u64}. */
export function kvInsert(n: i32, logSlots: i32): u64 {
  rng = 12345;
  const slots = 1 << logSlots;
  const mask = slots - 1;
  memory.fill(HEAP, 0, slots << 4);
  let sum: u64 = 0;
  for (let i = 0; i < n; i++) {
    const key = (next() & 0xfffff) | 1; // ~1M distinct keys: inserts and updates
    let h = (key * 0x9e3779b1) >>> (32 - logSlots);
    for (;;) {
      const slot = HEAP + (h << 4);
      const k = load<u32>(slot);
      if (k == key || k == 0) {
        store<u32>(slot, key);
        store<u32>(slot, load<u32>(slot, 4) + 1, 4);
        const v = load<u64>(slot, 8) + <u64>i;
        store<u64>(slot, v, 8);
        sum += v;
        break;
      }
      h = (h + 1) & mask;
    }
  }
  return sum;
}

/** In-place quicksort of n random i32 (Hoare partition), plus the fill. */
export function sortRun(n: i32): u64 {
  rng = 777;
  for (let i = 0; i < n; i++) store<i32>(HEAP + (i << 2), <i32>next());
  qsort(HEAP, 0, n - 1);
  let sum: u64 = 0;
  for (let i = 0; i < n; i += 97) sum += <u64>load<u32>(HEAP + (i << 2));
  return sum;
}

function qsort(base: i32, lo: i32, hi: i32): void {
  while (lo < hi) {
    const pivot = load<i32>(base + (((lo + hi) >>> 1) << 2));
    let i = lo - 1;
    let j = hi + 1;
    for (;;) {
      do i++; while (load<i32>(base + (i << 2)) < pivot);
      do j--; while (load<i32>(base + (j << 2)) > pivot);
      if (i >= j) break;
      const t = load<i32>(base + (i << 2));
      store<i32>(base + (i << 2), load<i32>(base + (j << 2)));
      store<i32>(base + (j << 2), t);
    }
    if (j - lo < hi - j) { qsort(base, lo, j); lo = j + 1; }
    else { qsort(base, j + 1, hi); hi = j; }
  }
}

/** Dense i32 store loop over `bytes` bytes, `reps` times: the worst case (one mark per 4 bytes). */
export function seqWrite(bytes: i32, reps: i32): u64 {
  for (let r = 0; r < reps; r++) {
    for (let p = HEAP, end = HEAP + bytes; p < end; p += 4) store<i32>(p, p ^ r);
  }
  return <u64>load<u32>(HEAP + bytes - 4);
}

/** Dense i64 matrix multiply (n x n, f64): stores only once per output cell. */
export function matmul(n: i32): f64 {
  const a = HEAP, b = HEAP + n * n * 8, c = HEAP + 2 * n * n * 8;
  for (let i = 0; i < n * n; i++) { store<f64>(a + i * 8, <f64>(i % 7)); store<f64>(b + i * 8, <f64>(i % 5)); }
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s: f64 = 0;
      for (let k = 0; k < n; k++) s += load<f64>(a + (i * n + k) * 8) * load<f64>(b + (k * n + j) * 8);
      store<f64>(c + (i * n + j) * 8, s);
    }
  }
  return load<f64>(c + (n * n - 1) * 8);
}

/** Loads only: FNV-1a over `bytes` bytes, `reps` times. */
export function hashRead(bytes: i32, reps: i32): u32 {
  let h: u32 = 2166136261;
  for (let r = 0; r < reps; r++) {
    for (let p = HEAP, end = HEAP + bytes; p < end; p += 4) h = (h ^ load<u32>(p)) * 16777619;
  }
  return h;
}

/** Compute only: Mandelbrot iteration count over a w x w grid. */
export function mandel(w: i32, maxIter: i32): i32 {
  let total = 0;
  for (let y = 0; y < w; y++) {
    for (let x = 0; x < w; x++) {
      const cr = <f64>x / <f64>w * 3.0 - 2.0, ci = <f64>y / <f64>w * 2.0 - 1.0;
      let zr = 0.0, zi = 0.0, i = 0;
      while (i < maxIter && zr * zr + zi * zi < 4.0) { const t = zr * zr - zi * zi + cr; zi = 2.0 * zr * zi + ci; zr = t; i++; }
      total += i;
    }
  }
  return total;
}
