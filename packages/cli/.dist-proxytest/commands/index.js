import { runCommand } from './run.js';
import { inspectCommand } from './inspect.js';
import { primaryCommand } from './primary.js';
import { secondaryCommand } from './secondary.js';
import { upCommand } from './up.js';
import { proxyCommand } from './proxy.js';
export const commands = [upCommand, runCommand, primaryCommand, secondaryCommand, inspectCommand, proxyCommand];
//# sourceMappingURL=index.js.map