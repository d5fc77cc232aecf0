package schema

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// The convergence watermark's tables (docs/design.md, "The convergence
// watermark"), each of the namespaces' own shape, in every region's
// keyspace:
//
//	ProducersTable  pk ProducersPartition, ck the producer id,
//	                value EncodeProducer: a store's registration, written
//	                by the store to every region with a TTL it refreshes
//	MarksTable      pk MarksPartition(region), ck EncodeMarkKey(producer,
//	                partition), value EncodeMark: the newest heartbeat a
//	                replayer of the region passed in that partition,
//	                written with the heartbeat's Before as timestamp (so
//	                that an older mark never replaces a newer one)
//	WatermarksTable pk WatermarksPartition, ck the region, value
//	                EncodeWatermark: the watermark repaird computed,
//	                written with the watermark itself as timestamp (it only
//	                moves forward)
const (
	ProducersTable  = "tidemark_producers"
	MarksTable      = "tidemark_marks"
	WatermarksTable = "tidemark_watermarks"
)

// WatermarkRetention is the retention the watermark's tables are created
// with: their rows are replaced or expire, and a replaced or expired row
// that comes back after its tombstone was purged is only stale evidence
// that a newer row outvotes.
const WatermarkRetention = time.Hour

// ErrBadWatermark reports a watermark row this version cannot decode.
var ErrBadWatermark = errors.New("schema: malformed watermark row")

// ProducersPartition is the partition of ProducersTable.
var ProducersPartition = []byte("producers")

// WatermarksPartition is the partition of WatermarksTable.
var WatermarksPartition = []byte("watermarks")

// MarksPartition is the partition of region's marks in MarksTable.
func MarksPartition(region string) []byte { return []byte("marks/" + region) }

// Producer is a store's registration.
type Producer struct {
	// Registered is a version (µs) below every write the store makes.
	Registered int64
	// Closed is set when the store closed with every write settled.
	Closed bool
	// Home is the store's home region.
	Home string
}

// EncodeProducer is the value of a registration: format 1, flags (bit 0
// closed), the registered version, the home region.
func EncodeProducer(p Producer) []byte {
	b := []byte{1, 0}
	if p.Closed {
		b[1] = 1
	}
	b = binary.BigEndian.AppendUint64(b, uint64(p.Registered))
	return append(b, p.Home...)
}

// DecodeProducer reads a registration's value.
func DecodeProducer(b []byte) (Producer, error) {
	if len(b) < 10 || b[0] != 1 || b[1]&^1 != 0 {
		return Producer{}, fmt.Errorf("%w: producer value %x", ErrBadWatermark, b)
	}
	return Producer{Closed: b[1] == 1, Registered: int64(binary.BigEndian.Uint64(b[2:10])), Home: string(b[10:])}, nil
}

// EncodeMarkKey is the clustering key of producer's mark in one partition
// of a hint topic: the partition (4 bytes) then the producer id.
func EncodeMarkKey(producer string, partition int) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(partition))
	return append(b, producer...)
}

// DecodeMarkKey reads a mark's clustering key.
func DecodeMarkKey(b []byte) (producer string, partition int, err error) {
	if len(b) < 5 {
		return "", 0, fmt.Errorf("%w: mark key %x", ErrBadWatermark, b)
	}
	return string(b[4:]), int(binary.BigEndian.Uint32(b)), nil
}

// Mark is the value of a mark.
type Mark struct {
	// Before is the heartbeat's promise (a version, µs); the row's
	// timestamp is the same.
	Before int64
	// Partitions is how many partitions the heartbeat's round went to.
	Partitions int
	// Closing marks a closing store's last heartbeat.
	Closing bool
	// SentAt is when the store sent the heartbeat.
	SentAt time.Time
}

// EncodeMark is the value of a mark: format 1, flags (bit 0 closing),
// Before, Partitions (4 bytes), SentAt (µs).
func EncodeMark(m Mark) []byte {
	b := []byte{1, 0}
	if m.Closing {
		b[1] = 1
	}
	b = binary.BigEndian.AppendUint64(b, uint64(m.Before))
	b = binary.BigEndian.AppendUint32(b, uint32(m.Partitions))
	return binary.BigEndian.AppendUint64(b, uint64(m.SentAt.UnixMicro()))
}

// DecodeMark reads a mark's value.
func DecodeMark(b []byte) (Mark, error) {
	if len(b) != 22 || b[0] != 1 || b[1]&^1 != 0 {
		return Mark{}, fmt.Errorf("%w: mark value %x", ErrBadWatermark, b)
	}
	return Mark{Closing: b[1] == 1, Before: int64(binary.BigEndian.Uint64(b[2:10])),
		Partitions: int(binary.BigEndian.Uint32(b[10:14])), SentAt: time.UnixMicro(int64(binary.BigEndian.Uint64(b[14:22])))}, nil
}

// Watermark is the value of a published watermark.
type Watermark struct {
	// Before is the watermark (a version, µs): the region holds every
	// write a live store acknowledged with a lower version. The row's
	// timestamp is the same.
	Before int64
	// ComputedAt is when repaird computed it.
	ComputedAt time.Time
	// Limit names what held it there (a producer id, "debt", …).
	Limit string
}

// EncodeWatermark is the value of a published watermark: format 1,
// Before, ComputedAt (µs), Limit.
func EncodeWatermark(w Watermark) []byte {
	b := []byte{1}
	b = binary.BigEndian.AppendUint64(b, uint64(w.Before))
	b = binary.BigEndian.AppendUint64(b, uint64(w.ComputedAt.UnixMicro()))
	return append(b, w.Limit...)
}

// DecodeWatermark reads a published watermark's value.
func DecodeWatermark(b []byte) (Watermark, error) {
	if len(b) < 17 || b[0] != 1 {
		return Watermark{}, fmt.Errorf("%w: watermark value %x", ErrBadWatermark, b)
	}
	return Watermark{Before: int64(binary.BigEndian.Uint64(b[1:9])),
		ComputedAt: time.UnixMicro(int64(binary.BigEndian.Uint64(b[9:17]))), Limit: string(b[17:])}, nil
}
