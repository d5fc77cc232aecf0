package record

import (
	"encoding/binary"
	"fmt"
	"time"
	"unicode/utf8"
)

// Heartbeat record layout, format version 1 (docs/hints.md has the table):
//
//	magic      4 bytes  0x89 'T' 'M' 'B'
//	version    1 byte   0x01
//	flags      1 byte   bit 0 closing; others zero
//	producer   uvarint length + UTF-8
//	target     uvarint length + UTF-8
//	before     zigzag varint, a version in µs
//	registered zigzag varint, a version in µs
//	sent_at    zigzag varint, µs since the epoch
//	partition  uvarint, the partition it was sent to
//	partitions uvarint, how many partitions that round went to
//	auth …     as in a hint record (signed with the same keyring)

var heartbeatMagic = [4]byte{0x89, 'T', 'M', 'B'}

const (
	flagClosing = 1 << 0

	// MaxProducerLen is the longest Heartbeat.Producer, in bytes.
	MaxProducerLen = 255
	// maxPartitions bounds Heartbeat.Partitions (Kafka's own limit is
	// far lower in practice).
	maxPartitions = 1 << 20
)

// Heartbeat is a store's promise about one region, sent to every
// partition of the region's hint topic: every write the producer
// acknowledged with a version below Before has been applied in Target, or
// is a hint earlier in this partition, or is repair debt. A replayer that
// has applied every record before the heartbeat in its partition may pass
// the promise on (docs/design.md, "The convergence watermark").
type Heartbeat struct {
	// Producer names the store process (unique per process).
	Producer string
	// Target is the region the promise is about.
	Target string
	// Before is a version (µs): see the type's comment.
	Before int64
	// Registered is a version below every write the producer makes.
	Registered int64
	// SentAt is when the producer sent it.
	SentAt time.Time
	// Partition is the partition of Target's topic this copy went to, and
	// Partitions how many partitions the round went to.
	Partition, Partitions int
	// Closing marks the last heartbeat of a store that is closing: it
	// makes no more writes.
	Closing bool
}

// IsHeartbeat reports whether b is a heartbeat record (by its magic), as
// opposed to a hint.
func IsHeartbeat(b []byte) bool {
	return len(b) >= len(heartbeatMagic) && [4]byte(b[:4]) == heartbeatMagic
}

// EncodeHeartbeat returns the binary record for hb, signed with the
// keyring's current key when kr is not nil. It fails with
// [ErrInvalidHint] if a field is out of range.
func EncodeHeartbeat(hb Heartbeat, kr *Keyring) ([]byte, error) {
	switch {
	case hb.Producer == "" || len(hb.Producer) > MaxProducerLen || !utf8.ValidString(hb.Producer):
		return nil, fmt.Errorf("%w: heartbeat Producer %q must be 1 to %d bytes of UTF-8", ErrInvalidHint, hb.Producer, MaxProducerLen)
	case hb.Target == "" || len(hb.Target) > MaxRegionLen || !utf8.ValidString(hb.Target):
		return nil, fmt.Errorf("%w: heartbeat Target %q must be a region name of 1 to %d bytes", ErrInvalidHint, hb.Target, MaxRegionLen)
	case hb.Partitions < 1 || hb.Partitions > maxPartitions || hb.Partition < 0 || hb.Partition >= hb.Partitions:
		return nil, fmt.Errorf("%w: heartbeat partition %d of %d", ErrInvalidHint, hb.Partition, hb.Partitions)
	}
	b := make([]byte, 0, 64+len(hb.Producer)+len(hb.Target))
	b = append(b, heartbeatMagic[:]...)
	b = append(b, FormatVersion)
	var flags byte
	if hb.Closing {
		flags |= flagClosing
	}
	b = append(b, flags)
	b = appendBytes(b, []byte(hb.Producer))
	b = appendBytes(b, []byte(hb.Target))
	b = binary.AppendVarint(b, hb.Before)
	b = binary.AppendVarint(b, hb.Registered)
	b = binary.AppendVarint(b, unixMicro(hb.SentAt))
	b = binary.AppendUvarint(b, uint64(hb.Partition))
	b = binary.AppendUvarint(b, uint64(hb.Partitions))
	return appendAuth(b, kr), nil
}

// DecodeHeartbeat parses a record written by [EncodeHeartbeat], checking
// its signature against kr as [Decode] does for hints. Errors wrap
// [ErrCorrupt] or [ErrUnauthenticated].
func DecodeHeartbeat(b []byte, kr *Keyring) (Heartbeat, error) {
	if len(b) < len(heartbeatMagic)+2 {
		return Heartbeat{}, corruptf(0, "record is %d bytes, shorter than any heartbeat", len(b))
	}
	if !IsHeartbeat(b) {
		return Heartbeat{}, corruptf(0, "bad magic %x, not a tidemark heartbeat", b[:4])
	}
	if b[4] != FormatVersion {
		return Heartbeat{}, corruptf(4, "heartbeat format version %d is not supported (this build reads %d); upgrade the replayer", b[4], FormatVersion)
	}
	flags := b[5]
	if flags&^flagClosing != 0 {
		return Heartbeat{}, corruptf(5, "bad heartbeat flags %#02x", flags)
	}
	d := decoder{b: b, off: 6}
	producer := d.field("producer", MaxProducerLen)
	target := d.field("target", MaxRegionLen)
	before := d.varint("before")
	registered := d.varint("registered")
	sent := d.varint("sent_at")
	part := d.uvarint("partition")
	parts := d.uvarint("partitions")
	sig := d.auth()
	if d.err != nil {
		return Heartbeat{}, d.err
	}
	switch {
	case len(producer) == 0 || !utf8.Valid(producer):
		return Heartbeat{}, badFieldf("heartbeat producer must be 1 to %d bytes of UTF-8", MaxProducerLen)
	case len(target) == 0 || !utf8.Valid(target):
		return Heartbeat{}, badFieldf("heartbeat target must be 1 to %d bytes of UTF-8", MaxRegionLen)
	case parts < 1 || parts > maxPartitions || part >= parts:
		return Heartbeat{}, badFieldf("heartbeat partition %d of %d", part, parts)
	}
	if err := sig.verify(b, kr); err != nil {
		return Heartbeat{}, err
	}
	return Heartbeat{
		Producer: string(producer), Target: string(target), Before: before, Registered: registered,
		SentAt: fromUnixMicro(sent), Partition: int(part), Partitions: int(parts), Closing: flags&flagClosing != 0,
	}, nil
}
