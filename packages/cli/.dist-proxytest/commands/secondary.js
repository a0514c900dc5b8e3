import { wsUrl } from '../flags.js';
import { nodeFlags, runNode } from './node-common.js';
export const secondaryCommand = {
    name: 'secondary',
    summary: 'keep a committed copy of the guest and take over when the primary dies',
    usage: 'ftvm secondary --listen <host:port> [--peer ws://<other node>] [--join ws://<primary>] [options]',
    flags: {
        ...nodeFlags,
        peer: { type: 'string', parse: wsUrl, help: 'the other node, ws://host:port: once promoted, this node replicates to it' },
        join: { type: 'string', parse: wsUrl, help: 'join this running primary now (full sync, then epochs), ws://host:port' },
    },
    run: (f) => runNode('secondary', f, { peer: f.peer, join: f.join }),
};
//# sourceMappingURL=secondary.js.map