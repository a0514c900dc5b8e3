/**
 * Plain types shared by the machines. The runtimes translate them to and from wire
 * messages; core never sees bytes on a socket.
 *
 * Deadlines: every machine compares `nowMs >= since + timeout` with the same sum that
 * its nextDeadline() returns, so a tick at the deadline always acts (no float drift).
 *
 * Units: times are ms (the runtime's monotonic clock, any origin); byte offsets count
 * bytes of one connection's stream since it opened; epochs number a primary's
 * checkpoints from 1 (0 = none yet) and keep counting across terms (a promoted node
 * continues after the epoch of the image it restored).
 */

/** A node's name as the proxy was configured with it ("a", "b"). */
export type NodeId = string;

/** One connection's device state in a checkpoint. */
export interface ConnOffsets {
  conn: number;
  /** Input bytes the guest had consumed. */
  inConsumed: number;
  /** Output bytes the guest had produced (sent to the proxy, tagged with their epochs). */
  outProduced: number;
  /** The connection is closed in the guest's view (the guest closed it or saw the client's close). */
  closed: boolean;
}

/**
 * The per-connection offsets of one guest state (a checkpoint, or a restored image).
 * Contract for the VMM: `conns` lists every connection open in that state plus those
 * closed since the previous checkpoint; `maxConnId` is the highest connection id the
 * guest has ever seen opened (0: none). The proxy opens connections in increasing id
 * order on one ordered link, so a connection id <= maxConnId is known to the state
 * and one above it is not.
 */
export interface StateOffsets {
  /** The epoch whose end this state is (for a restored image: the committed epoch). */
  epoch: number;
  maxConnId: number;
  conns: ConnOffsets[];
}

export function cloneOffsets(o: StateOffsets): StateOffsets {
  return { epoch: o.epoch, maxConnId: o.maxConnId, conns: o.conns.map((c) => ({ ...c })) };
}
