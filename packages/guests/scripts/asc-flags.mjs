// The asc flags every ftvm guest is built with (see packages/guest-sdk/README.md):
// - incremental runtime: the stub runtime never frees, a long-running server would leak;
// - memoryBase 1 MiB: [0, 1 MiB) is the VMM's dirty bytemap;
// - abort mapped into the SDK, so module "ftvm" is the only import module.
export const ASC_FLAGS = [
  '--runtime', 'incremental',
  '--memoryBase', '1048576',
  '-O3',
  '--use', 'abort=~lib/@ftvm/guest-sdk/assembly/abort/ftvmAbort',
];
