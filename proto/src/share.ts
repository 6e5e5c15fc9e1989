// Record headers with a meaning for share groups (see runnel/v1/share.proto): the delay header a
// producer sets and the headers the partition leader adds to a dead letter.

/** Not handed to any share-group member before this time: decimal milliseconds since the Unix epoch. */
export const notBeforeHeader = "runnel.not-before";

/** Headers on a dead letter: where the record came from, how often it was tried, and why it failed. */
export const deadLetterHeaders = Object.freeze({
  topic: "runnel.dlq.topic",
  partition: "runnel.dlq.partition",
  offset: "runnel.dlq.offset",
  attempts: "runnel.dlq.attempts",
  reason: "runnel.dlq.reason",
  time: "runnel.dlq.time",
});

/** Every header name starting with this is added by the broker to dead letters (and dropped on redrive). */
export const deadLetterHeaderPrefix = "runnel.dlq.";
