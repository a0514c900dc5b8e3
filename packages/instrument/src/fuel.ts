// Names the rewrite gives the fuel counter; here so the vCPU reads them without loading binaryen.

/**
 * The fuel counter (an i32 global, exported under this name and never checkpointed): every
 * loop iteration and function entry takes one unit; when it runs out the guest calls
 * FUEL_IMPORT, which returns the next allowance, or throws to stop a runaway event (an inline
 * vCPU has no thread to terminate). Keeps the cost to a global decrement and a branch.
 */
export const FUEL_GLOBAL = '__ftvm_fuel';
/** The host function the fuel counter calls when it runs out: module and name, () -> i32. */
export const FUEL_IMPORT = { module: '__ftvm_vcpu', name: 'fuel' } as const;
