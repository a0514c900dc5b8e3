import type { CommandSpec } from '../flags.js';
import { runCommand } from './run.js';
import { inspectCommand } from './inspect.js';
import { primaryCommand } from './primary.js';
import { secondaryCommand } from './secondary.js';
import { upCommand } from './up.js';
import { proxyCommand } from './proxy.js';
import { snapshotCommand } from './snapshot.js';
import { restoreCommand } from './restore.js';
import { migrateCommand } from './migrate.js';
import { receiveCommand } from './receive.js';
import { drillCommand } from './drill.js';
import { tokenCommand } from './token.js';

export const commands: CommandSpec[] = [upCommand, runCommand, primaryCommand, secondaryCommand, proxyCommand, inspectCommand, snapshotCommand, restoreCommand, migrateCommand, receiveCommand, tokenCommand, drillCommand];
