// Where share-partition state is kept durably: the controller (ReadShareState/WriteShareState, fenced
// by broker epoch and leader epoch), or memory in standalone-metadata mode (tests only: there is no
// controller, so nothing survives the process and nothing fences).
import { ErrorCode, type SharePartitionState } from "@runnel/proto";
import { isUnavailable } from "@runnel/common";
import type { ControllerLink } from "../controller-link/link.js";

export interface ShareStateKey {
  groupId: string;
  topic: string;
  partition: number;
  /** The leader epoch this broker leads the partition in; the store refuses others. */
  leaderEpoch: number;
}

export type ShareStateProblem = { ok: false; code: ErrorCode; message: string };
export type ShareStateRead = { ok: true; state: SharePartitionState | undefined } | ShareStateProblem;
export type ShareStateWrite = { ok: true } | ShareStateProblem;

export interface ShareStateStore {
  read(key: ShareStateKey): Promise<ShareStateRead>;
  /**
   * Resolves ok once the state (or a later write of the same key that replaced it) is durable.
   * `writeSequence` increases with every write of this process: several may be in flight at once.
   */
  write(key: ShareStateKey, state: SharePartitionState, writeSequence: bigint): Promise<ShareStateWrite>;
}

/** Answers that mean this broker no longer leads the partition in that epoch: drop the in-memory state. */
export function isFencing(code: ErrorCode): boolean {
  return (
    code === ErrorCode.NOT_LEADER ||
    code === ErrorCode.FENCED_LEADER_EPOCH ||
    code === ErrorCode.STALE_BROKER_EPOCH ||
    code === ErrorCode.UNKNOWN_TOPIC_OR_PARTITION ||
    code === ErrorCode.UNKNOWN_LEADER_EPOCH
  );
}

function unreachable(err: unknown, what: string): ShareStateProblem {
  const message = `${what}: ${(err as Error).message}`;
  return { ok: false, code: isUnavailable(err) ? ErrorCode.REQUEST_TIMED_OUT : ErrorCode.UNKNOWN_SERVER_ERROR, message };
}

export class ControllerShareStateStore implements ShareStateStore {
  /** The link is created after the store (when the broker starts); undefined until then. */
  constructor(private readonly link: () => ControllerLink | undefined) {}

  async read(key: ShareStateKey): Promise<ShareStateRead> {
    const link = this.link();
    if (link === undefined || !link.registered) return { ok: false, code: ErrorCode.NOT_READY, message: "broker is not registered with the controller yet" };
    try {
      const res = await link.readShareState(key);
      if (res.errorCode !== ErrorCode.ERROR_CODE_NONE) return { ok: false, code: res.errorCode, message: `reading share state: ${res.errorMessage}` };
      return { ok: true, state: res.found ? res.state : undefined };
    } catch (err) {
      return unreachable(err, "reading share state from the controller");
    }
  }

  async write(key: ShareStateKey, state: SharePartitionState, writeSequence: bigint): Promise<ShareStateWrite> {
    const link = this.link();
    if (link === undefined || !link.registered) return { ok: false, code: ErrorCode.NOT_READY, message: "broker is not registered with the controller yet" };
    try {
      const res = await link.writeShareState({ ...key, state, writeSequence });
      if (res.errorCode !== ErrorCode.ERROR_CODE_NONE) return { ok: false, code: res.errorCode, message: `writing share state: ${res.errorMessage}` };
      return { ok: true };
    } catch (err) {
      return unreachable(err, "writing share state to the controller");
    }
  }
}

/** Standalone-metadata mode only: state kept in this process, never fenced. */
export class InMemoryShareStateStore implements ShareStateStore {
  private readonly states = new Map<string, { state: SharePartitionState; writeSequence: bigint }>();
  /** Writes so far (tests look at it). */
  writes = 0;

  private static id(key: ShareStateKey): string {
    return `${key.groupId}\u0000${key.topic}\u0000${key.partition}`;
  }

  read(key: ShareStateKey): Promise<ShareStateRead> {
    return Promise.resolve({ ok: true, state: this.states.get(InMemoryShareStateStore.id(key))?.state });
  }

  write(key: ShareStateKey, state: SharePartitionState, writeSequence: bigint): Promise<ShareStateWrite> {
    this.writes++;
    const id = InMemoryShareStateStore.id(key);
    const old = this.states.get(id);
    if (old === undefined || old.writeSequence < writeSequence) this.states.set(id, { state, writeSequence });
    return Promise.resolve({ ok: true });
  }
}
