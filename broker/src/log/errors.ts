// Typed errors of the partition log. Bad input (an out-of-range fetch, a malformed replicated batch)
// gets a typed error and changes nothing; an impossible internal state is an InvariantError (shared
// with the rest of the project through @runnel/common) and is fatal for the caller.
import { InvariantError } from "@runnel/common";

export { InvariantError };

/** A read asked for an offset outside [logStartOffset, logEndOffset]. */
export class OffsetOutOfRangeError extends Error {
  override name = "OffsetOutOfRangeError";
  constructor(
    readonly where: string,
    readonly requested: bigint,
    readonly logStartOffset: bigint,
    readonly logEndOffset: bigint,
  ) {
    super(`${where}: offset ${requested} is out of range [${logStartOffset}, ${logEndOffset}]`);
  }
}

/** Stored bytes do not match their checksum, or are not a well-formed stored batch. */
export class StorageCorruptionError extends Error {
  override name = "StorageCorruptionError";
  constructor(
    readonly where: string,
    readonly baseOffset: bigint | undefined,
    detail: string,
  ) {
    super(`${where}: stored batch${baseOffset === undefined ? "" : ` at offset ${baseOffset}`} is corrupt: ${detail}`);
  }
}

/** A batch handed to appendStored is malformed, not contiguous, or contradicts the epoch history. */
export class InvalidBatchError extends Error {
  override name = "InvalidBatchError";
  constructor(
    readonly where: string,
    detail: string,
  ) {
    super(`${where}: ${detail}`);
  }
}

/** The partition was deleted, its store closed, or an earlier write to it failed. */
export class LogUnavailableError extends Error {
  override name = "LogUnavailableError";
  constructor(
    readonly where: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`${where}: ${detail}`, options);
  }
}
