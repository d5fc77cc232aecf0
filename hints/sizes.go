package hints

import (
	"encoding/binary"

	"github.com/tidemark/tidemark/internal/schema"
)

// Size limits. A hint must fit the largest row a store with default limits
// accepts, or such a write could never be hinted: it would be left to
// repair every time a region missed it.

// maxNamespaceLen is the longest namespace (schema.ValidateName).
const maxNamespaceLen = 48

// MaxRecordOverhead is the most bytes a record (format version 1) holds
// besides its partition key, clustering key and value: the fixed fields,
// every length prefix and varint at its widest, both region names and the
// namespace at their longest, and an HMAC with the longest key id.
const MaxRecordOverhead = len(magic) + 1 + 1 + // magic, version, flags
	6*binary.MaxVarintLen64 + // lengths of target, origin, namespace, pk, ck, value
	2*MaxRegionLen + maxNamespaceLen +
	3*binary.MaxVarintLen64 + // timestamp, expires_at, created_at
	1 + binary.MaxVarintLen64 + MaxKeyIDLen + macLen // auth, key id, MAC

// storeMaxValueBytes is store.DefaultMaxValueSize (1 MiB), the largest
// value a store with default limits writes. Package store imports hints, so
// the number is repeated here; TestDefaultMaxHintBytesFitsLargestStoreRow
// keeps the two equal.
const storeMaxValueBytes = 1 << 20

// Kafka's framing of one record in a v2 record batch, at its widest:
// length, attributes, timestamp delta, offset delta, key length, value
// length and header count varints.
const kafkaRecordOverhead = 5 + 1 + 10 + 5 + 5 + 5 + 5

// kafkaBatchHeader is the size of a v2 record-batch header.
const kafkaBatchHeader = 61

// deadLetterHeaderBytes bounds the headers the replayer adds to a dead
// letter (the error text is cut at 1 KiB).
const deadLetterHeaderBytes = 2048

// kafkaMessageBytes is the most bytes a record of at most maxHint bytes
// takes in a produce request, as kafka-go's Writer counts it against
// BatchBytes: the record, its key (the partition key, at most
// schema.MaxPartitionKey bytes), extra header bytes and Kafka's framing.
func kafkaMessageBytes(maxHint, headers int) int64 {
	return int64(maxHint) + schema.MaxPartitionKey + int64(headers) + kafkaRecordOverhead
}

// topicMaxMessageBytes is the max.message.bytes that a topic needs to take
// every record batch a Writer with these BatchBytes and BatchSize sends: a
// batch holds at most batchBytes of messages (or one message, if larger)
// plus the batch header and per-record framing.
func topicMaxMessageBytes(batchBytes int64, batchSize int) int64 {
	return batchBytes + kafkaBatchHeader + int64(batchSize)*kafkaRecordOverhead
}

// DefaultMaxHintBytes is the default ProducerConfig.MaxHintBytes and
// ReplayerConfig.MaxHintBytes: the record of the largest row a store with
// default limits accepts — a 1 MiB value (store.DefaultMaxValueSize), a
// partition key and a clustering key of 64 KiB - 1 each
// (schema.MaxPartitionKey, schema.MaxClusteringKey) — plus
// MaxRecordOverhead. It is larger than Kafka's default max.message.bytes
// (1 MiB), so topics created by this package get max.message.bytes set to
// fit it.
const DefaultMaxHintBytes = storeMaxValueBytes + schema.MaxPartitionKey + schema.MaxClusteringKey + MaxRecordOverhead
