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

// SessionsPartition is the partition of ProducersTable that keeps each
// store's *session*: the registration again, with a TTL long enough to
// outlive the store (SessionTTL). A registration expires a minute after
// its store stopped refreshing it; the session says afterwards that the
// store existed, whether it closed, and which namespaces it wrote, so that
// repaird can tell a store that stopped without closing — whose
// unsettled writes no hint or debt covers — from one that never was
// (docs/design.md, "The convergence watermark").
var SessionsPartition = []byte("sessions")

// SessionTTL is how long a session lives after its store's last refresh:
// repaird must notice a store's unclean exit within it. It is the default
// tombstone retention, within which a full repair must run anyway.
const SessionTTL = DefaultRetention

// Session is a store's session row.
type Session struct {
	// Registered is the store's registration version (µs).
	Registered int64
	// Closed is set when the store closed with every write settled.
	Closed bool
	// Exited is set by repaird once it found the store gone without
	// closing and recorded the full repairs that cover its writes.
	Exited bool
	// Home is the store's home region; in an exited session, the region
	// whose keyspace holds the exit's repair debt (the store's home, or
	// the recording repaird's when the store's is not among its regions).
	Home string
	// RegistrationTTL is how long the store's registration lives without
	// a refresh: once the session is older than that (and the clock-skew
	// bound), a store whose registration is gone has stopped.
	RegistrationTTL time.Duration
	// Namespaces are the namespaces the store opened.
	Namespaces []string
}

// EncodeSession is the value of a session: format 1, flags (bit 0
// closed, bit 1 exited), the registered version, the registration TTL in
// milliseconds (4 bytes), the home region (1-byte length), then the
// namespaces (2-byte count, each with a 1-byte length).
func EncodeSession(s Session) []byte {
	b := []byte{1, 0}
	if s.Closed {
		b[1] |= 1
	}
	if s.Exited {
		b[1] |= 2
	}
	b = binary.BigEndian.AppendUint64(b, uint64(s.Registered))
	b = binary.BigEndian.AppendUint32(b, uint32(min(s.RegistrationTTL.Milliseconds(), 1<<32-1)))
	b = append(b, byte(min(len(s.Home), 255)))
	b = append(b, s.Home[:min(len(s.Home), 255)]...)
	b = binary.BigEndian.AppendUint16(b, uint16(min(len(s.Namespaces), 1<<16-1)))
	for _, ns := range s.Namespaces[:min(len(s.Namespaces), 1<<16-1)] {
		b = append(b, byte(min(len(ns), 255)))
		b = append(b, ns[:min(len(ns), 255)]...)
	}
	return b
}

// DecodeSession reads a session's value.
func DecodeSession(b []byte) (Session, error) {
	bad := func(what string) (Session, error) {
		return Session{}, fmt.Errorf("%w: session value %x: %s", ErrBadWatermark, b, what)
	}
	if len(b) < 15 || b[0] != 1 || b[1]&^3 != 0 {
		return bad("bad header")
	}
	s := Session{Closed: b[1]&1 != 0, Exited: b[1]&2 != 0, Registered: int64(binary.BigEndian.Uint64(b[2:10])),
		RegistrationTTL: time.Duration(binary.BigEndian.Uint32(b[10:14])) * time.Millisecond}
	rest := b[14:]
	n := int(rest[0])
	if len(rest) < 1+n+2 {
		return bad("short home")
	}
	s.Home, rest = string(rest[1:1+n]), rest[1+n:]
	count := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	for range count {
		if len(rest) < 1 || len(rest) < 1+int(rest[0]) {
			return bad("short namespace")
		}
		n := int(rest[0])
		s.Namespaces, rest = append(s.Namespaces, string(rest[1:1+n])), rest[1+n:]
	}
	if len(rest) != 0 {
		return bad("trailing bytes")
	}
	return s, nil
}
