// Package record is the hint record: the [Hint] type, its binary format
// ([Encode], [Decode]), the HMAC [Keyring] that signs and verifies records,
// and the size bounds of a record ([MaxRecordOverhead],
// [DefaultMaxHintBytes]).
//
// It is a leaf: it imports neither Kafka nor Cassandra drivers, so the
// store (which makes hints) depends on it alone, and the Kafka producer and
// replayer of package hints build on it. docs/hints.md has the byte layout
// and the key-rotation procedure; docs/design.md, "Hints", says what a hint
// must carry.
//
// # Invariants
//
//   - Every hint has exactly one encoding (minimal varints, fixed field
//     order); Decode(Encode(h)) == h.
//   - Decode never panics and allocates at most len(input) bytes for the
//     hint's fields; the hint it returns does not alias the input.
//   - A keyring that accepts no unsigned records refuses every record whose
//     MAC is missing, wrong, or made with an unknown or retired key
//     (ErrUnauthenticated).
package record
