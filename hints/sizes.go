package hints

import "github.com/tidemark/tidemark/internal/schema"

// Sizes of Kafka records and batches. What a hint record itself holds at
// most is record.MaxRecordOverhead and record.DefaultMaxHintBytes.

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
