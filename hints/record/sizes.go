package record

import (
	"encoding/binary"

	"github.com/tidemark/tidemark/internal/schema"
)

// MaxRecordOverhead is the most bytes a record (format version 1) holds
// besides its partition key, clustering key and value: the fixed fields,
// every length prefix and varint at its widest, both region names and the
// namespace at their longest, and an HMAC with the longest key id.
const MaxRecordOverhead = len(magic) + 1 + 1 + // magic, version, flags
	6*binary.MaxVarintLen64 + // lengths of target, origin, namespace, pk, ck, value
	2*MaxRegionLen + schema.MaxNameLen +
	3*binary.MaxVarintLen64 + // timestamp, expires_at, created_at
	1 + binary.MaxVarintLen64 + MaxKeyIDLen + macLen // auth, key id, MAC

// DefaultMaxHintBytes is the record of the largest row a store with default
// limits accepts — a value of schema.DefaultMaxValueSize (1 MiB, the
// store's DefaultMaxValueSize), a partition key and a clustering key of
// 64 KiB - 1 each (schema.MaxPartitionKey, schema.MaxClusteringKey) — plus
// MaxRecordOverhead. It is the default size bound of the producer and the
// replayer (package hints), and larger than Kafka's default
// max.message.bytes (1 MiB), so the topics package hints creates get
// max.message.bytes set to fit it.
const DefaultMaxHintBytes = schema.DefaultMaxValueSize + schema.MaxPartitionKey + schema.MaxClusteringKey + MaxRecordOverhead
