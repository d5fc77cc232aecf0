package repair

import (
	"context"
	"time"
)

// RowValue is one row as a point read returns it.
type RowValue struct {
	// Value is nil for a deletion marker; a live row's value is never nil
	// (an empty value, or one the driver returns as nil, is an empty
	// slice).
	Value []byte
	// Deleted marks a deletion marker.
	Deleted bool
	// Timestamp is writetime(digest), in microseconds.
	Timestamp int64
	// TTL is ttl(digest) in seconds at the read; 0 means none. It only
	// says when Cassandra reclaims the cells.
	TTL int32
	// Expires is the row's absolute expiry in seconds since the Unix epoch
	// (0 = never): the expires column, or for a row written before it
	// existed the read's time plus TTL (schema.Expiry).
	Expires int64
}

// TableInfo is what repair needs to know about a namespace's table.
type TableInfo struct {
	// Retention is the tombstone retention recorded in the table comment; 0
	// if the comment does not record one.
	Retention time.Duration
	// RetentionErr is set when the table exists but its comment records no
	// readable retention (a comment edited by hand, or a table not created
	// by Tidemark). Repair still runs; the error names the table and the
	// comment and is reported in Report.Warnings.
	RetentionErr error
}

// RegionReader reads one region. Implementations must be safe for concurrent
// use. [NewCQLRegion] is the real one; [MemRegion] keeps rows in memory.
type RegionReader interface {
	// Describe checks that the namespace's table exists. A missing table is
	// reported with an error wrapping ErrUnknownNamespace.
	Describe(ctx context.Context, namespace string) (TableInfo, error)
	// ScanDigests streams the digests of the rows in r, in scan order
	// ([CompareKeys]), fetching at most pageSize rows at a time. Errors are
	// reported by the stream's Err.
	ScanDigests(ctx context.Context, namespace string, r TokenRange, pageSize int) RowStream
	// ReadRow reads one row; found is false if the row does not exist (or
	// Cassandra's TTL has removed it). A row whose Expires has passed but
	// whose cells are still there is returned, with its Expires.
	ReadRow(ctx context.Context, namespace string, pk, ck []byte) (v RowValue, found bool, err error)
}

// RegionWriter writes one region. Implementations must be safe for
// concurrent use.
type RegionWriter interface {
	// WriteRow writes every cell of a row — the INSERTs of w.Cells, bound
	// with schema.InsertValues and applied together — with w's timestamp
	// and a TTL computed at the write from w's absolute expiry
	// (schema.TTLUntil with the writer's clock), so that a copy never
	// outlives the original however late it is written. A row whose
	// Expires has passed is not written: WriteRow returns an error
	// wrapping ErrExpired. w.Targets is not used.
	WriteRow(ctx context.Context, namespace string, w *Write) error
}

// Estimator is implemented by readers that can estimate how many rows a
// namespace holds (from system.size_estimates), to size segments.
type Estimator interface {
	EstimateRows(ctx context.Context, namespace string) (int64, error)
}

// Region is one region as repair sees it.
type Region struct {
	// Name is the region's name, used in reports, metrics and errors.
	Name string
	// Reader reads the region.
	Reader RegionReader
	// Writer writes the region. It is not used by dry runs and may be nil
	// for them.
	Writer RegionWriter
}

// digestRowBytes is the payload size of one digest-scan row as the native
// protocol carries it: 8 columns, each with a 4-byte length, and their
// values (token 8, pk, ck, writetime 8, digest 8, deleted 1, ttl 4,
// expires 8).
func digestRowBytes(r *DigestRow) int64 {
	return int64(8*4 + 8 + len(r.PK) + len(r.CK) + 8 + 8 + 1 + 4 + 8)
}

// valueRowBytes is the payload size of one point read (value, deleted,
// writetime, ttl, expires).
func valueRowBytes(v *RowValue) int64 {
	return int64(5*4 + len(v.Value) + 1 + 8 + 4 + 8)
}
