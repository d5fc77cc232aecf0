package record

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/tidemark/tidemark/internal/schema"
)

// Record layout, format version 1 (docs/hints.md has the table):
//
//	magic      4 bytes  0x89 'T' 'M' 'H'
//	version    1 byte   0x01
//	flags      1 byte   bit 0 deleted, bit 1 value present; others zero
//	target     uvarint length + UTF-8
//	origin     uvarint length + UTF-8
//	namespace  uvarint length + ASCII identifier
//	pk         uvarint length + bytes
//	ck         uvarint length + bytes
//	value      uvarint length + bytes   (only when flag bit 1 is set)
//	timestamp  zigzag varint, µs since the epoch
//	expires_at zigzag varint, µs since the epoch; 0 = never
//	created_at zigzag varint, µs since the epoch; 0 = unknown
//	auth       1 byte   0 none, 1 HMAC-SHA256
//	key id     uvarint length + UTF-8        (auth 1 only)
//	mac        32 bytes HMAC-SHA256 of every byte before it (auth 1 only)
//
// Varints must be minimal (no redundant 0x80 continuation bytes), so every
// hint has exactly one encoding.

// FormatVersion is the record format version that [Encode] writes.
const FormatVersion = 1

// Magic starts every hint record.
var magic = [4]byte{0x89, 'T', 'M', 'H'}

const (
	flagDeleted      = 1 << 0
	flagValuePresent = 1 << 1
	flagsKnown       = flagDeleted | flagValuePresent

	authNone = 0
	authHMAC = 1

	macLen = sha256.Size

	// MaxRegionLen is the longest Target or Origin region name, in bytes.
	MaxRegionLen = 255
)

var (
	// ErrCorrupt reports a record that cannot be decoded: truncated, bad
	// magic, unknown format version, malformed field or trailing bytes.
	// Such a record can never be applied; the replayer dead-letters it.
	ErrCorrupt = errors.New("hints: corrupt hint record")

	// ErrUnauthenticated reports a record whose MAC is missing, wrong, or
	// made with a key the keyring does not accept (unknown or retired).
	// The replayer dead-letters it.
	ErrUnauthenticated = errors.New("hints: unauthenticated hint record")

	// ErrInvalidHint reports a Hint that Encode refuses: a field that no
	// replayer could apply (empty target or partition key, bad namespace,
	// oversized key, expiry before the epoch).
	ErrInvalidHint = errors.New("hints: invalid hint")
)

// Encode returns the binary record for h, signed with the keyring's current
// key when kr is not nil. A deletion (Deleted set) is encoded without a
// value, whatever h.Value holds. Encode fails with [ErrInvalidHint] if h
// could never be applied.
func Encode(h Hint, kr *Keyring) ([]byte, error) {
	if err := validate(h); err != nil {
		return nil, err
	}
	value := h.Value
	if h.Deleted {
		value = nil
	}
	size := len(magic) + 2 + 6*binary.MaxVarintLen64 + len(h.Target) + len(h.Origin) + len(h.Namespace) +
		len(h.PK) + len(h.CK) + len(value) + 3*binary.MaxVarintLen64 + 1
	if kr != nil {
		size += binary.MaxVarintLen64 + len(kr.current.id) + macLen
	}
	b := make([]byte, 0, size)
	b = append(b, magic[:]...)
	b = append(b, FormatVersion)
	var flags byte
	if h.Deleted {
		flags |= flagDeleted
	} else if value != nil {
		flags |= flagValuePresent
	}
	b = append(b, flags)
	b = appendBytes(b, []byte(h.Target))
	b = appendBytes(b, []byte(h.Origin))
	b = appendBytes(b, []byte(h.Namespace))
	b = appendBytes(b, h.PK)
	b = appendBytes(b, h.CK)
	if flags&flagValuePresent != 0 {
		b = appendBytes(b, value)
	}
	b = binary.AppendVarint(b, h.Timestamp)
	b = binary.AppendVarint(b, unixMicro(h.ExpiresAt))
	b = binary.AppendVarint(b, unixMicro(h.CreatedAt))
	return appendAuth(b, kr), nil
}

// appendAuth ends a record: no MAC without a keyring, else the current
// key's id and the HMAC-SHA256 of every byte before the MAC.
func appendAuth(b []byte, kr *Keyring) []byte {
	if kr == nil {
		return append(b, authNone)
	}
	b = append(b, authHMAC)
	b = appendBytes(b, []byte(kr.current.id))
	m := kr.current.mac()
	m.Write(b)
	return m.Sum(b)
}

// Decode parses a record written by [Encode]. With a non-nil keyring the
// record must carry a MAC made with a key the keyring accepts now (or no MAC
// at all if the keyring accepts unsigned records); with a nil keyring any
// MAC is ignored.
//
// Errors wrap [ErrCorrupt] or [ErrUnauthenticated] and say which field is
// wrong. Decode never panics, whatever b holds, and allocates no more than
// len(b) bytes for the hint's fields; the returned hint does not alias b.
func Decode(b []byte, kr *Keyring) (Hint, error) {
	d := decoder{b: b}
	var h Hint
	if len(b) < len(magic)+2 {
		return Hint{}, corruptf(0, "record is %d bytes, shorter than any hint", len(b))
	}
	if [4]byte(b[:4]) != magic {
		return Hint{}, corruptf(0, "bad magic %x, not a tidemark hint", b[:4])
	}
	if b[4] != FormatVersion {
		return Hint{}, corruptf(4, "format version %d is not supported (this build reads %d); upgrade the replayer", b[4], FormatVersion)
	}
	flags := b[5]
	if flags&^flagsKnown != 0 || flags == flagsKnown {
		return Hint{}, corruptf(5, "bad flags %#02x", flags)
	}
	d.off = 6
	target := d.field("target", MaxRegionLen)
	origin := d.field("origin", MaxRegionLen)
	namespace := d.field("namespace", schema.MaxNameLen)
	pk := d.field("pk", schema.MaxPartitionKey)
	ck := d.field("ck", schema.MaxClusteringKey)
	var value []byte
	hasValue := flags&flagValuePresent != 0
	if hasValue {
		value = d.field("value", len(b))
	}
	h.Timestamp = d.varint("timestamp")
	expires := d.varint("expires_at")
	created := d.varint("created_at")
	sig := d.auth()
	if d.err != nil {
		return Hint{}, d.err
	}

	// Semantic checks: the same rules Encode enforces.
	switch {
	case len(target) == 0 || !utf8.Valid(target):
		return Hint{}, badFieldf("target region must be 1 to %d bytes of UTF-8", MaxRegionLen)
	case !utf8.Valid(origin):
		return Hint{}, badFieldf("origin region is not UTF-8")
	case schema.ValidateName("namespace", string(namespace)) != nil:
		return Hint{}, badFieldf("namespace %q is not a valid identifier", namespace)
	case len(pk) == 0:
		return Hint{}, badFieldf("empty partition key")
	case expires < 0:
		return Hint{}, badFieldf("expires_at %d is before the epoch", expires)
	}
	if err := sig.verify(b, kr); err != nil {
		return Hint{}, err
	}

	// One allocation for every byte field, each capped so that appending to
	// one never overwrites the next.
	buf := make([]byte, 0, len(pk)+len(ck)+len(value))
	buf = append(buf, pk...)
	buf = append(buf, ck...)
	buf = append(buf, value...)
	n := 0
	h.PK = buf[n : n+len(pk) : n+len(pk)]
	n += len(pk)
	h.CK = buf[n : n+len(ck) : n+len(ck)]
	n += len(ck)
	if hasValue {
		h.Value = buf[n : n+len(value) : n+len(value)]
	}
	h.Target = string(target)
	h.Origin = string(origin)
	h.Namespace = string(namespace)
	h.Deleted = flags&flagDeleted != 0
	h.ExpiresAt = fromUnixMicro(expires)
	h.CreatedAt = fromUnixMicro(created)
	return h, nil
}

// signature is the end of a record: its auth scheme, key id and MAC.
type signature struct {
	auth     byte
	keyID    []byte
	mac      []byte
	macStart int
}

// auth reads the auth suffix, which must end the record.
func (d *decoder) auth() signature {
	bodyEnd := d.off
	s := signature{auth: d.byte("auth")}
	switch {
	case d.err != nil:
	case s.auth == authNone:
	case s.auth == authHMAC:
		s.keyID = d.field("key id", MaxKeyIDLen)
		s.macStart = d.off
		s.mac = d.raw("mac", macLen)
	default:
		d.fail(bodyEnd, "unknown auth scheme %d", s.auth)
	}
	if d.err == nil && d.off != len(d.b) {
		d.fail(d.off, "%d trailing bytes after the record", len(d.b)-d.off)
	}
	return s
}

// verify checks the signature of record b against kr (nil: any record
// passes).
func (s signature) verify(b []byte, kr *Keyring) error {
	if s.auth == authHMAC && (len(s.keyID) == 0 || !printable(string(s.keyID))) {
		return badFieldf("key id must be 1 to %d bytes of printable UTF-8", MaxKeyIDLen)
	}
	if kr == nil {
		return nil
	}
	if s.auth == authNone {
		if !kr.acceptUnsigned {
			return fmt.Errorf("%w: record carries no MAC and the keyring requires one; sign hints on the producer (ProducerConfig.Keyring)", ErrUnauthenticated)
		}
		return nil
	}
	key, err := kr.lookup(string(s.keyID))
	if err != nil {
		return err
	}
	m := key.mac()
	m.Write(b[:s.macStart])
	if !hmac.Equal(m.Sum(nil), s.mac) {
		return fmt.Errorf("%w: MAC does not match (key %q); the record was altered or signed with another secret", ErrUnauthenticated, s.keyID)
	}
	return nil
}

// validate applies the rules that make a hint encodable and applicable.
func validate(h Hint) error {
	switch {
	case h.Target == "" || len(h.Target) > MaxRegionLen || !utf8.ValidString(h.Target):
		return fmt.Errorf("%w: Target %q must be a region name of 1 to %d bytes", ErrInvalidHint, h.Target, MaxRegionLen)
	case len(h.Origin) > MaxRegionLen || !utf8.ValidString(h.Origin):
		return fmt.Errorf("%w: Origin %q must be a region name of at most %d bytes", ErrInvalidHint, h.Origin, MaxRegionLen)
	case len(h.PK) == 0:
		return fmt.Errorf("%w: empty partition key", ErrInvalidHint)
	case len(h.PK) > schema.MaxPartitionKey:
		return fmt.Errorf("%w: partition key is %d bytes, the limit is %d", ErrInvalidHint, len(h.PK), schema.MaxPartitionKey)
	case len(h.CK) > schema.MaxClusteringKey:
		return fmt.Errorf("%w: clustering key is %d bytes, the limit is %d", ErrInvalidHint, len(h.CK), schema.MaxClusteringKey)
	case !h.ExpiresAt.IsZero() && h.ExpiresAt.UnixMicro() <= 0:
		return fmt.Errorf("%w: ExpiresAt %v is not after the epoch; use the zero time for \"never\"", ErrInvalidHint, h.ExpiresAt)
	case !h.CreatedAt.IsZero() && h.CreatedAt.UnixMicro() == 0:
		return fmt.Errorf("%w: CreatedAt is exactly the epoch, which the format reserves for \"unknown\"", ErrInvalidHint)
	}
	if err := schema.ValidateName("namespace", h.Namespace); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidHint, err)
	}
	return nil
}

func unixMicro(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromUnixMicro(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us)
}

func appendBytes(b, field []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(field)))
	return append(b, field...)
}

func corruptf(off int, format string, args ...any) error {
	return fmt.Errorf("%w at byte %d: %s", ErrCorrupt, off, fmt.Sprintf(format, args...))
}

func badFieldf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// decoder reads fields from b; after the first error every read returns a
// zero value, so a caller checks err once.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(off int, format string, args ...any) {
	if d.err == nil {
		d.err = corruptf(off, format, args...)
	}
}

// uvarint reads a minimal unsigned varint.
func (d *decoder) uvarint(name string) uint64 {
	if d.err != nil {
		return 0
	}
	var x uint64
	for i := 0; ; i++ {
		if d.off+i >= len(d.b) {
			d.fail(d.off, "%s: truncated varint", name)
			return 0
		}
		c := d.b[d.off+i]
		if i == binary.MaxVarintLen64-1 && c > 1 {
			d.fail(d.off, "%s: varint overflows 64 bits", name)
			return 0
		}
		x |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			if c == 0 && i > 0 {
				d.fail(d.off, "%s: varint is not minimally encoded", name)
				return 0
			}
			d.off += i + 1
			return x
		}
	}
}

func (d *decoder) varint(name string) int64 {
	ux := d.uvarint(name)
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

func (d *decoder) byte(name string) byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.fail(d.off, "%s: truncated", name)
		return 0
	}
	c := d.b[d.off]
	d.off++
	return c
}

// field reads a length-prefixed field of at most max bytes; the result
// aliases d.b.
func (d *decoder) field(name string, max int) []byte {
	start := d.off
	n := d.uvarint(name)
	if d.err != nil {
		return nil
	}
	if n > uint64(max) {
		d.fail(start, "%s: length %d exceeds the limit %d", name, n, max)
		return nil
	}
	return d.raw(name, int(n))
}

func (d *decoder) raw(name string, n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b)-d.off {
		d.fail(d.off, "%s: truncated: wants %d bytes, %d left", name, n, len(d.b)-d.off)
		return nil
	}
	f := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return f
}
