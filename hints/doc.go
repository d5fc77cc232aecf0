// Package hints stores the writes a region missed as hints on Kafka and
// replays them into that region later.
//
// # Mental model
//
// A write that cannot reach a region (its circuit breaker is open, its nodes
// time out) becomes a [record.Hint]: the row, the write's timestamp, its absolute
// expiry and the region it is for. A [Producer] appends the hint, encoded
// with [record.Encode], to the Kafka topic of the target region (TopicPrefix +
// region), keyed by partition key; it returns nil only once Kafka has
// acknowledged the record with acks=all, so the store can count a durable
// hint as the region's acknowledgement at consistency level Any.
//
// In each region a [Replayer] consumes that region's topic in a consumer
// group, decodes every record with [record.Decode], and applies it through an
// [Applier] (normally [NewCQLApplier]) with the write's own timestamp. It
// commits a Kafka offset only after the hints up to it were applied, or were
// durably sent to the dead-letter topic, so replay is at-least-once; because
// every hint carries its original timestamp (USING TIMESTAMP), applying one
// twice, or after a newer write, changes nothing.
//
// # Invariants
//
//   - A hint is applied only if it decodes, authenticates (when a [Keyring]
//     is configured), is for the replayer's region and has not expired: its
//     ExpiresAt has not passed and it is not older — counting from the
//     earlier of its CreatedAt and its write's Timestamp — than the
//     tombstone retention of its table (read from the table by
//     [NewCQLApplier]) or the replayer's Retention. Everything else goes
//     to the dead-letter topic with a reason
//     ([ReasonCorrupt], [ReasonUnauthenticated], [ReasonExpired],
//     [ReasonMisrouted], [ReasonRejected]) and is never applied.
//   - While the region is unreachable the replayer applies nothing, commits
//     nothing, backs off exponentially (bounded) and retries the same hints,
//     without any attempt limit; it resumes by itself.
//   - One hint cannot stop replay: a hint that keeps failing while the
//     region is reachable (its [Prober] probe succeeds, or other hints are
//     applied) is dead-lettered as [ReasonRejected] after MaxHintAttempts.
//   - Every row a store with default limits accepts can be hinted:
//     [record.DefaultMaxHintBytes] fits a 1 MiB value with 64 KiB keys, and the
//     topics this package creates take records that large.
//   - Memory is bounded on both sides: the producer refuses a hint that would
//     take its in-flight bytes past MaxBufferedBytes ([ErrBufferFull]); the
//     replayer holds one batch (BatchSize records, MaxBatchBytes bytes) plus
//     a bounded prefetch.
//   - record.Decode never panics and allocates at most the length of its input.
//
// Hints only speed convergence up: anti-entropy repair is the safety net, so
// a hint that could not be stored is not data loss, but it is counted
// (tidemark_hints_produce_failures_total) and logged.
//
// # Heartbeats
//
// [Producer.Heartbeat] writes a [record.Heartbeat] — a store's promise
// about the writes it acknowledged — to every partition of a region's
// topic. The replayer never applies or dead-letters one: once every
// record before it in its partition is applied or dead-lettered, it
// passes it to ReplayerConfig.Marks as a [Mark], from which the region's
// convergence watermark is computed.
//
// # Security
//
// ProducerConfig and ReplayerConfig take a *tls.Config (TLS) and [SASL]
// credentials (SCRAM-SHA-512 by default, SCRAM-SHA-256, PLAIN); every
// connection of a Producer or Replayer uses both. Kafka refusing them gives
// errors wrapping [ErrAuthentication]. A [record.Keyring] authenticates the
// records themselves, whoever could write to the topic.
//
// See docs/hints.md for the record format, TLS and SASL, key rotation and
// sizing.
package hints
