export { NodeHost, type NodeOptions, type NodeEvents, type NodeRole } from './node-host.js';
export { NodeError } from './errors.js';
export { bridgeNodeMetrics } from './metrics-bridge.js';
