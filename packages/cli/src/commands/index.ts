import type { CommandSpec } from '../flags.js';
import { runCommand } from './run.js';
import { inspectCommand } from './inspect.js';

export const commands: CommandSpec[] = [runCommand, inspectCommand];
