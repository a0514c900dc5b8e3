// Loads the abort replacement that asc `--use abort=...` names.
import "./abort";

// The ftvm guest SDK. Import from here; re-export "./exports" from the guest's entry
// file (importing this file does not add wasm exports).

export * from "./abi";
export { now, pvclockAddress, scaleDelta } from "./clock";
export { Guest, setGuest } from "./guest";
export {
  send, sendBytes, close, log, logError, logWarn, logInfo, logDebug,
  randomBytes, randomU64, randomBelow, diskRead, diskWrite, diskBlocks,
} from "./io";
export { setTimer, after, afterNs, cancelTimer, timerCount, nextDeadline, MAX_TIMERS } from "./timers";
export {
  setInputBudget, inputHeldBytes, bytesEqual, bytesEqualAscii, hashBytes, copyBytes, parseI64, parseOk, indexOfByte, indexOfBytes,
  InputBuffer, ByteWriter, BytesEntry, BytesMap,
} from "./bytes";
export { DiskLog, LOG_FRESH, LOG_OPENED, LOG_NO_DISK, LOG_FOREIGN, LOG_IO, RECORD_HEADER_BYTES } from "./disklog";
