// The serialized command queue between gRPC handlers and the state machine: one command runs at a
// time (run, persist, publish, answer), and at most maxQueuedCommands wait, so a flood of requests
// is refused instead of growing memory.
export class QueueFull extends Error {
  override name = "QueueFull";
}

export class CommandQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private waiting = 0;

  constructor(readonly maxQueuedCommands: number) {}

  get length(): number {
    return this.waiting;
  }

  /** Runs `command` after every command queued before it; rejects with QueueFull when the queue is full. */
  run<T>(command: () => Promise<T>): Promise<T> {
    if (this.waiting >= this.maxQueuedCommands) {
      return Promise.reject(new QueueFull(`controller command queue is full (${this.maxQueuedCommands} commands waiting); retry after a backoff`));
    }
    this.waiting += 1;
    const result = this.tail.then(command).finally(() => {
      this.waiting -= 1;
    });
    this.tail = result.catch(() => undefined);
    return result;
  }

  /** Resolves once every queued command has finished. */
  async drain(): Promise<void> {
    while (this.waiting > 0) await this.tail;
  }
}
