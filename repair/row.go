package repair

import (
	"bytes"
	"cmp"
	"fmt"
)

// DigestRow is one row as a digest scan returns it: its position on the ring,
// its keys, and its version in digest form (no value).
type DigestRow struct {
	// Token is token(pk).
	Token int64
	// PK and CK are the partition and clustering keys.
	PK, CK []byte
	// Timestamp is writetime(digest): the row's version, in microseconds.
	Timestamp int64
	// Digest is the digest column (schema.Digest of deleted and value).
	Digest int64
	// Deleted marks a deletion marker.
	Deleted bool
	// TTL is ttl(digest) when the row was scanned, in seconds; 0 means the
	// cells do not expire. It only says when Cassandra reclaims the cells:
	// Expires decides the version and its visibility.
	TTL int32
	// Expires is the row's absolute expiry in seconds since the Unix epoch
	// (0 = never): the expires column, or for a row written before the
	// column existed the scan's time plus TTL (schema.Expiry).
	Expires int64
	// Expired reports that Expires had passed when the row was scanned
	// (schema.Visible was false): the region still holds the cells — a
	// node applied the write late, so Cassandra's TTL has not removed
	// them — but the row is logically absent (see [Observed.Expired]).
	Expired bool
}

// String returns a short description for logs and failing tests.
func (r DigestRow) String() string {
	return fmt.Sprintf("token=%d pk=%x ck=%x %s", r.Token, r.PK, r.CK, r.Observed())
}

// Observed returns the version part of the row.
func (r DigestRow) Observed() Observed {
	return Observed{Present: true, Timestamp: r.Timestamp, Digest: r.Digest, Deleted: r.Deleted, TTL: r.TTL,
		Expires: r.Expires, Expired: r.Expired}
}

// CompareKeys orders rows the way a token-range scan returns them from
// Cassandra: by token, then by partition key bytes (unsigned, as Cassandra's
// DecoratedKey orders keys with equal tokens), then by clustering key bytes
// (unsigned: the clustering column is a blob in ascending order).
func CompareKeys(a, b *DigestRow) int {
	if c := cmp.Compare(a.Token, b.Token); c != 0 {
		return c
	}
	if c := bytes.Compare(a.PK, b.PK); c != 0 {
		return c
	}
	return bytes.Compare(a.CK, b.CK)
}

// RowStream is a region's rows of one segment in scan order (see
// [CompareKeys]). It is used like bufio.Scanner: call Next until it returns
// false, then Err. The row Row returns is valid until the next call to Next.
// Close releases the stream's resources; it may be called at any time and
// more than once.
type RowStream interface {
	Next() bool
	Row() *DigestRow
	Err() error
	Close() error
}

// SliceStream is a RowStream over rows held in memory, which must already be
// in scan order. It is what the pure core is tested with.
type SliceStream struct {
	rows []DigestRow
	i    int
	err  error
}

// NewSliceStream returns a stream over rows; err, if not nil, is returned by
// Err after the last row (to simulate a scan that fails part-way).
func NewSliceStream(rows []DigestRow, err error) *SliceStream {
	return &SliceStream{rows: rows, i: -1, err: err}
}

// Next advances to the next row.
func (s *SliceStream) Next() bool {
	if s.i+1 >= len(s.rows) {
		s.i = len(s.rows)
		return false
	}
	s.i++
	return true
}

// Row returns the current row.
func (s *SliceStream) Row() *DigestRow { return &s.rows[s.i] }

// Err returns the error given to NewSliceStream once the rows are consumed.
func (s *SliceStream) Err() error {
	if s.i >= len(s.rows) {
		return s.err
	}
	return nil
}

// Close does nothing.
func (s *SliceStream) Close() error { return nil }
