import { wsUrl } from '../flags.js';
import { nodeFlags, runNode } from './node-common.js';
export const primaryCommand = {
    name: 'primary',
    summary: 'run the guest as the primary, replicating every epoch to a secondary',
    usage: 'ftvm primary --guest <g> --listen <host:port> --secondary ws://<host:port> [options]',
    flags: {
        ...nodeFlags,
        secondary: { type: 'string', parse: wsUrl, help: 'the secondary (or peer) node to replicate to, ws://host:port; retried until it answers' },
    },
    run: (f) => runNode('primary', f, { peer: f.secondary }),
};
//# sourceMappingURL=primary.js.map