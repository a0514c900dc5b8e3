// Replacement for AssemblyScript's `env.abort` import (asc `--use abort=<this file>/ftvmAbort`):
// a failed assertion or runtime error is logged through the ftvm ABI, then the guest traps.
// Keeping it inside the guest means module "ftvm" is the only import module.

import { host_log, LOG_ERROR } from "./abi";

export function ftvmAbort(
  message: string | null = null, fileName: string | null = null, line: u32 = 0, column: u32 = 0,
): void {
  let text = "abort: " + (message !== null ? message : "(no message)");
  if (fileName !== null) text += " at " + fileName + ":" + line.toString() + ":" + column.toString();
  let buf = String.UTF8.encode(text);
  host_log(LOG_ERROR, changetype<usize>(buf), buf.byteLength);
  unreachable();
}
