package store

import (
	"fmt"
	"time"

	"github.com/tidemark/tidemark/quorum"
)

// CallOption changes one call (Put, Get, Delete, Scan, PutBatch). Options
// that do not apply to a call are rejected with an error (ErrInvalidTTL for
// WithTTL on Delete, ErrInvalidOption for paging options on a write), so a
// mistake is never silently ignored.
type CallOption func(*callOptions)

type callOptions struct {
	level     quorum.Level
	timeout   time.Duration
	ttl       time.Duration
	ttlSet    bool
	pageSize  int
	pageBytes int
	pageToken string
	paging    bool // a paging option was given
	version   *int64
	err       error
}

// WithConsistency sets the call's consistency level (see the table in the
// package documentation). Default: Config.DefaultLevel, itself
// quorum.LocalQuorum by default.
//
// Stronger levels (Quorum, EachQuorum, All) wait for remote regions, so the
// call's latency becomes the cross-region round trip and it fails when too
// many regions are down; weaker levels (LocalOne, Any) answer faster and
// survive more failures but may return, or leave behind, older data until
// hints and repair catch up. Any is for writes only.
func WithConsistency(l quorum.Level) CallOption {
	return func(o *callOptions) { o.level = l }
}

// WithTimeout bounds how long the call waits for the regions it must wait
// on, and each region request it makes. Default: Config.Timeout (5s). A
// short timeout fails fast when a region is slow (a write that timed out may
// still be applied, and gets a hint); a long one rides out brief stalls.
// The call also ends when its context does, whichever comes first.
func WithTimeout(d time.Duration) CallOption {
	return func(o *callOptions) {
		if d <= 0 {
			o.fail(fmt.Errorf("%w: WithTimeout(%v): the timeout must be positive", ErrInvalidOption, d))
		}
		o.timeout = d
	}
}

// WithTTL makes a written row expire after d, in every region (the same
// absolute expiry is carried by hints and repair). Default: no expiry. The
// expiry is rounded up to the next whole second, so a row lives at least d
// and less than a second more. Zero, negative, or longer than 20
// years less a second (Cassandra's limit, less what the rounding can add)
// is ErrInvalidTTL; it does not apply to Delete,
// whose deletion marker lives for the namespace's tombstone retention.
//
// Expired rows become Cassandra tombstones that cost reads until compaction
// purges them; prefer TTLs to bulk deletes for data that ages out.
func WithTTL(d time.Duration) CallOption {
	return func(o *callOptions) { o.ttl, o.ttlSet = d, true }
}

// WithPageSize sets how many items one Scan page holds at most. Default
// 100. Larger pages mean fewer round trips but more memory per page.
func WithPageSize(n int) CallOption {
	return func(o *callOptions) {
		o.paging = true
		if n <= 0 {
			o.fail(fmt.Errorf("%w: WithPageSize(%d): the page size must be positive", ErrInvalidOption, n))
		}
		o.pageSize = n
	}
}

// WithPageBytes bounds the keys and values of one Scan page. Default 1 MiB.
// A page always holds at least one item, so a single value larger than the
// bound is still returned.
func WithPageBytes(n int) CallOption {
	return func(o *callOptions) {
		o.paging = true
		if n <= 0 {
			o.fail(fmt.Errorf("%w: WithPageBytes(%d): the byte bound must be positive", ErrInvalidOption, n))
		}
		o.pageBytes = n
	}
}

// WithPageToken makes Scan continue after the page that returned token
// (Page.Next). Default: start at the beginning of the partition. Tokens are
// opaque and stay valid as the partition changes: the scan resumes after the
// last clustering key returned.
func WithPageToken(token string) CallOption {
	return func(o *callOptions) { o.paging = true; o.pageToken = token }
}

// WithVersionReport makes a write store the version it is given — its
// timestamp, the same in every region, in its hints and after repair — in
// *dst, once the write has been validated and before any region is
// written, so that it is set whatever the call returns (a write that fails
// may still be applied). A service can log it, or compare it with
// Item.Timestamp of a later read to tell whether that read sees this
// write or a newer one. It applies to Put, Delete and PutBatch (a batch has
// one version); a read refuses it (ErrInvalidOption). dst must not be nil.
func WithVersionReport(dst *int64) CallOption {
	return func(o *callOptions) {
		if dst == nil {
			o.fail(fmt.Errorf("%w: WithVersionReport(nil)", ErrInvalidOption))
		}
		o.version = dst
	}
}

func (o *callOptions) fail(err error) {
	if o.err == nil {
		o.err = err
	}
}

// Default page bounds.
const (
	// DefaultPageSize is the default WithPageSize.
	DefaultPageSize = 100
	// DefaultPageBytes is the default WithPageBytes.
	DefaultPageBytes = 1 << 20
)

func (s *Store) callOpts(opts []CallOption) callOptions {
	o := callOptions{level: s.cfg.DefaultLevel, timeout: s.cfg.Timeout, pageSize: DefaultPageSize, pageBytes: DefaultPageBytes}
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	return o
}

// NamespaceOption changes how a namespace is created or used.
type NamespaceOption func(*namespaceOptions)

type namespaceOptions struct {
	retention time.Duration
	err       error
}

// WithRetention sets a new namespace's tombstone retention: how long a
// deletion marker lives (docs/design.md, "Deletes and resurrection"), for
// CreateNamespace, which records it with the table (a table that already
// exists keeps the retention it has). Default schema.DefaultRetention (10
// days). Store.Namespace refuses it: the recorded retention is the only
// one deletes use. A longer retention costs storage for markers; a shorter
// one must still exceed the time a full repair cycle and hint replay take,
// or deleted rows can come back.
func WithRetention(d time.Duration) NamespaceOption {
	return func(o *namespaceOptions) {
		switch {
		case d < time.Second:
			o.err = fmt.Errorf("%w: WithRetention(%v): the retention must be at least one second", ErrInvalidOption, d)
		case d > maxTTL:
			o.err = fmt.Errorf("%w: WithRetention(%v): a deletion marker lives the retention, and Cassandra refuses a TTL over 20 years: at most %v", ErrInvalidOption, d, maxTTL)
		}
		o.retention = d
	}
}
