// Invariants: conditions that hold unless the code is wrong. Breaking one is a programmer error, so
// it throws loudly (and a process treats it as fatal); bad input from the network never gets here.

export class InvariantError extends Error {
  override name = "InvariantError";
}

/** Throws InvariantError with `message` (evaluated lazily) when `condition` is false. */
export function invariant(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) throw new InvariantError(typeof message === "string" ? message : message());
}
