package store

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"iter"
	"slices"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/quorum"
	"github.com/tidemark/tidemark/store/driver"
)

// Item is one live row as a read returns it.
type Item struct {
	// CK is the row's clustering key.
	CK []byte
	// Value is the row's value (never nil for a live row).
	Value []byte
	// Timestamp is the row's version: its write time in microseconds since
	// the Unix epoch, from the writer's hybrid logical clock.
	Timestamp int64
	// TTL is the time the row has left to live until its absolute expiry
	// (the same instant in every region), rounded down to whole seconds; 0
	// means it never expires.
	TTL time.Duration
}

// Time returns the row's version as a time.
func (i Item) Time() time.Time { return time.UnixMicro(i.Timestamp) }

func itemOf(r driver.Row, now time.Time) Item {
	it := Item{CK: r.CK, Value: r.Value, Timestamp: r.Timestamp}
	if it.Value == nil {
		it.Value = []byte{}
	}
	if r.Expires != 0 {
		it.TTL = time.Unix(r.Expires, 0).Sub(now).Truncate(time.Second)
	}
	return it
}

// live reports whether r is a version a read returns: not a deletion
// marker, and not past its absolute expiry (a region may still hold the
// cells of an expired row when one of its nodes applied the write late:
// docs/design.md, "Expiry").
func live(r driver.Row, now time.Time) bool {
	return !r.Deleted && schema.Visible(r.Expires, now)
}

func versionOf(r driver.Row) quorum.Version {
	return quorum.Version{Timestamp: r.Timestamp, Deleted: r.Deleted, Value: r.Value, Expires: r.Expires}
}

// validateRead checks a read's options before any I/O.
func (n *Namespace) validateRead(ctx context.Context, op string, o *callOptions, paging bool) (quorum.Plan, error) {
	if o.err != nil {
		return quorum.Plan{}, o.err
	}
	plan, err := quorum.ReadPlan(o.level, len(n.s.regions))
	if err != nil {
		return quorum.Plan{}, fmt.Errorf("%w: %s: %w", ErrInvalidLevel, op, err)
	}
	if o.ttlSet {
		return quorum.Plan{}, fmt.Errorf("%w: %s: WithTTL applies to writes only", ErrInvalidTTL, op)
	}
	if o.version != nil {
		return quorum.Plan{}, fmt.Errorf("%w: %s: WithVersionReport applies to writes only (a read's Item carries its version)", ErrInvalidOption, op)
	}
	if o.paging && !paging {
		return quorum.Plan{}, fmt.Errorf("%w: %s: paging options apply to Scan only", ErrInvalidOption, op)
	}
	return plan, nil
}

// readResult is one region's answer to a read.
type readResult struct {
	idx   int
	row   driver.Row
	found bool
	rows  []driver.Row // scan
	err   error
}

// Get returns the newest live version of the row (pk, ck), or an error
// wrapping ErrNotFound if there is none (never written, expired, or
// deleted).
//
// LocalOne and LocalQuorum read the home region. Quorum, EachQuorum and All
// read that many regions in parallel, return the newest version any of them
// holds, and write it back in the background to the regions that answered
// with an older one (read repair). Any is not valid for reads
// (ErrInvalidLevel). Options: WithConsistency, WithTimeout.
func (n *Namespace) Get(ctx context.Context, pk, ck []byte, opts ...CallOption) (item Item, err error) {
	s := n.s
	end, err := s.begin()
	if err != nil {
		return Item{}, err
	}
	defer end()
	start := time.Now()
	o := s.callOpts(opts)
	defer func() { s.metrics.observeCall(opGet, o.level.String(), time.Since(start), err) }()

	plan, err := n.validateRead(ctx, opGet, &o, false)
	if err != nil {
		return Item{}, err
	}
	if err := checkPK(pk); err != nil {
		return Item{}, fmt.Errorf("get %s: %w", n.name, err)
	}
	if err := checkCK(ck); err != nil {
		return Item{}, fmt.Errorf("get %s: %w", n.name, err)
	}
	if err := ctx.Err(); err != nil {
		return Item{}, fmt.Errorf("store: get %s: %w", n.name, err)
	}
	// Region requests may outlive the call (read repair): own the keys.
	pk, ck = bytes.Clone(pk), bytes.Clone(ck)

	sync := plan.Sync()
	req := driver.ReadRequest{Keyspace: s.cfg.Keyspace, Table: n.name, PK: pk, CK: ck, Consistency: o.level.RegionConsistency()}
	level := o.level.String()
	if len(sync) == 1 {
		// One region to read (LocalOne, LocalQuorum): nothing to race and
		// nothing to repair, so read in the caller's goroutine; no hand-off
		// to a goroutine sits in the latency.
		return n.getOne(ctx, plan, s.regions[sync[0]], sync[0], level, req, o.timeout)
	}
	results := make(chan readResult, len(sync))
	for _, i := range sync {
		r := s.regions[i]
		s.goBackground(func() {
			rctx, cancel := s.requestCtx(ctx, true, o.timeout)
			defer cancel()
			row, err := s.readRegion(rctx, r, level, req)
			res := readResult{idx: i, row: row, found: err == nil}
			if err != nil && !isNotFound(err) {
				res.err = err
			}
			results <- res
		})
	}
	w := s.newWaiter(plan, opGet, sync)
	var got []readResult
	received := 0
	for plan.Result(w.outcomes) == quorum.ResultPending {
		select {
		case res := <-results:
			received++
			w.record(regionResult{idx: res.idx, err: res.err})
			if res.err == nil {
				got = append(got, res)
			}
		case <-ctx.Done():
			return Item{}, w.err(ctx.Err())
		}
	}
	if plan.Result(w.outcomes) != quorum.Succeeded {
		return Item{}, w.err(nil)
	}
	winner, ok := newestRow(got)
	if len(sync) > 1 {
		// Read repair: wait in the background for the regions still
		// answering, then bring every answering region up to the newest
		// version seen.
		late := len(sync) - received
		s.goBackground(func() { s.readRepair(n.name, pk, got, results, late) })
	}
	if !ok {
		return Item{}, fmt.Errorf("get %s: %w", n.name, ErrNotFound)
	}
	// Every version read advances the clock, deletion markers and expired
	// rows included: a read-modify-write after a delete by a writer whose
	// clock is ahead must still win.
	s.clock.observe(winner.Timestamp)
	if now := s.cfg.Now(); live(winner, now) {
		// The read repair writes the winner's own slices: the caller's
		// copy must not be them, or what it does with its Item is what
		// the other regions are sent.
		it := itemOf(winner, now)
		it.CK, it.Value = bytes.Clone(it.CK), bytes.Clone(it.Value)
		return it, nil
	}
	return Item{}, fmt.Errorf("get %s: %w", n.name, ErrNotFound)
}

// getOne is Get for a plan that waits on one region only.
func (n *Namespace) getOne(ctx context.Context, plan quorum.Plan, r *region, idx int, level string, req driver.ReadRequest, timeout time.Duration) (Item, error) {
	s := n.s
	rctx, cancel := s.requestCtx(ctx, false, timeout)
	row, err := s.readRegion(rctx, r, level, req)
	cancel()
	if err != nil && isNotFound(err) {
		return Item{}, fmt.Errorf("get %s: %w", n.name, ErrNotFound)
	}
	if err != nil {
		// The caller's context ending is the call's outcome, as in the
		// waiters of every other plan: the error unwraps to it (and to
		// ErrTimeout for a deadline).
		cerr := ctx.Err()
		if cerr != nil {
			err = cerr
		}
		w := s.newWaiter(plan, opGet, []int{idx})
		w.record(regionResult{idx: idx, err: err})
		return Item{}, w.err(cerr)
	}
	s.clock.observe(row.Timestamp) // markers too (see Get)
	if now := s.cfg.Now(); live(row, now) {
		return itemOf(row, now), nil
	}
	return Item{}, fmt.Errorf("get %s: %w", n.name, ErrNotFound)
}

// newestRow returns the newest version among the regions that found the
// row.
func newestRow(rs []readResult) (driver.Row, bool) {
	var best driver.Row
	found := false
	for _, r := range rs {
		if !r.found {
			continue
		}
		if !found || quorum.Compare(versionOf(r.row), versionOf(best)) > 0 {
			best, found = r.row, true
		}
	}
	return best, found
}

// readRepair collects the late answers of a multi-region read and writes
// the newest version to every answering region that holds an older one (or
// none). Repairs go through the background queue; when it is full they are
// dropped, left to anti-entropy repair.
func (s *Store) readRepair(ns string, pk []byte, got []readResult, results <-chan readResult, late int) {
	for range late {
		res := <-results
		if res.err == nil {
			got = append(got, res)
		}
	}
	winner, ok := newestRow(got)
	if !ok {
		return
	}
	s.readRepairConflicts(ns, pk, winner, got)
	// The winner carries its absolute expiry: the copy expires when the
	// original does, however late it is written.
	m := &mutation{ns: ns, pk: pk, rows: []driver.Row{winner},
		level: quorum.LocalQuorum, op: opRepair, size: int64(len(pk) + len(winner.CK) + len(winner.Value))}
	m.rows[0].TTL = 0
	for _, res := range got {
		if res.found && quorum.Compare(versionOf(res.row), versionOf(winner)) == 0 {
			continue
		}
		r := s.regions[res.idx]
		if !s.enqueue(job{region: r, m: m, timeout: s.cfg.Timeout, repair: true, bytes: m.size}, 0) {
			s.metrics.readRepairs.WithLabelValues(r.name, "dropped").Inc()
		}
	}
}

// Page is one page of a Scan.
type Page struct {
	// Items are live rows in clustering-key order (unsigned byte order).
	// Deletion markers are never returned.
	Items []Item
	// Next continues the scan (pass it to WithPageToken); "" when the
	// partition has no more rows. A page may be empty only if it is the
	// last.
	Next string
}

// Scan returns one page of the live rows of partition pk, in clustering-key
// order, starting at the beginning or after the page named by
// WithPageToken. A page holds at most WithPageSize items (default 100) and
// stops once its keys and values reach WithPageBytes (default 1 MiB).
//
// LocalOne and LocalQuorum read the home region. Quorum, EachQuorum and All
// read that many regions and merge them row by row, newest version winning;
// Scan does not read-repair (anti-entropy repair does). Options:
// WithConsistency, WithTimeout (per page), WithPageSize, WithPageBytes,
// WithPageToken.
func (n *Namespace) Scan(ctx context.Context, pk []byte, opts ...CallOption) (page Page, err error) {
	s := n.s
	end, err := s.begin()
	if err != nil {
		return Page{}, err
	}
	defer end()
	start := time.Now()
	o := s.callOpts(opts)
	defer func() { s.metrics.observeCall(opScan, o.level.String(), time.Since(start), err) }()

	plan, err := n.validateRead(ctx, opScan, &o, true)
	if err != nil {
		return Page{}, err
	}
	if err := checkPK(pk); err != nil {
		return Page{}, fmt.Errorf("scan %s: %w", n.name, err)
	}
	after, err := decodePageToken(o.pageToken, n.name, pk)
	if err != nil {
		return Page{}, err
	}
	if err := ctx.Err(); err != nil {
		return Page{}, fmt.Errorf("store: scan %s: %w", n.name, err)
	}
	pk = bytes.Clone(pk)
	// The first region request has the call's whole timeout: unless that
	// is a WithTimeout shorter than Config.Timeout or the caller's
	// deadline comes first, a region that misses it has failed, and its
	// breaker counts it as it counts a Get's. Later requests have what
	// the earlier ones left, the call's budget, which the breaker does
	// not count.
	regionTimeout := o.timeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < o.timeout {
		regionTimeout = 0
	}
	// The whole call is bounded by its timeout, however many region
	// requests it takes (a run of deletion markers can take several).
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	now := s.cfg.Now()
	// Read until the page is full and one more live row is seen (then
	// another page follows), or the partition ends. Once the page is full,
	// the regions are read ahead scanProbeRows rows at a time, so that a
	// run of markers past the page costs one request per scanProbeRows
	// markers, not one per marker.
	size, filled := 0, false
	var newest int64
	for {
		want, maxBytes := o.pageSize-len(page.Items)+1, max(o.pageBytes-size, 1)
		if filled {
			want, maxBytes = scanProbeRows, scanProbeBytes
		}
		req := driver.ScanRequest{Keyspace: s.cfg.Keyspace, Table: n.name, PK: pk, After: after, Limit: want,
			MaxBytes: maxBytes, Consistency: o.level.RegionConsistency()}
		timeout := time.Until(deadline)
		if regionTimeout > 0 {
			timeout, regionTimeout = regionTimeout, 0
		}
		rows, boundary, err := s.scanOnce(ctx, plan, req, timeout)
		if err != nil {
			return Page{}, err
		}
		for _, r := range rows {
			newest = max(newest, r.Timestamp)
			if !live(r, now) {
				continue
			}
			if filled {
				s.clock.observe(newest)
				page.Next = encodePageToken(n.name, pk, page.Items[len(page.Items)-1].CK)
				return page, nil
			}
			page.Items = append(page.Items, itemOf(r, now))
			size += len(r.CK) + len(r.Value)
			filled = len(page.Items) >= o.pageSize || size >= o.pageBytes
		}
		if boundary == nil {
			s.clock.observe(newest)
			return page, nil
		}
		after = boundary
	}
}

// Read-ahead once a Scan page is full: the most rows, and the most key and
// value bytes, of one request looking for the next live row.
const (
	scanProbeRows  = 64
	scanProbeBytes = 64 << 10
)

// scanOnce reads one batch of rows from the regions of plan and merges them.
// It returns the merged rows (markers included) up to boundary, the
// clustering key up to which every answering region has been read
// completely, or nil if the answering regions have no rows beyond.
func (s *Store) scanOnce(ctx context.Context, plan quorum.Plan, req driver.ScanRequest, timeout time.Duration) ([]driver.Row, []byte, error) {
	sync := plan.Sync()
	results := make(chan readResult, len(sync))
	level := plan.Level.String()
	for _, i := range sync {
		r := s.regions[i]
		s.goBackground(func() {
			rctx, cancel := s.requestCtx(ctx, true, timeout)
			defer cancel()
			rows, err := s.scanRegion(rctx, r, level, req)
			results <- readResult{idx: i, rows: rows, err: err}
		})
	}
	w := s.newWaiter(plan, opScan, sync)
	var got [][]driver.Row
	var boundary []byte
	for plan.Result(w.outcomes) == quorum.ResultPending {
		select {
		case res := <-results:
			w.record(regionResult{idx: res.idx, err: res.err})
			if res.err != nil {
				continue
			}
			got = append(got, res.rows)
			if full(res.rows, req) {
				last := res.rows[len(res.rows)-1].CK
				if boundary == nil || bytes.Compare(last, boundary) < 0 {
					boundary = last
				}
			}
		case <-ctx.Done():
			return nil, nil, w.err(ctx.Err())
		}
	}
	if plan.Result(w.outcomes) != quorum.Succeeded {
		return nil, nil, w.err(nil)
	}
	return mergeRows(got, boundary), boundary, nil
}

// full reports whether a region stopped at a bound and may hold more rows.
func full(rows []driver.Row, req driver.ScanRequest) bool {
	if len(rows) == 0 {
		return false
	}
	if len(rows) >= req.Limit {
		return true
	}
	size := 0
	for _, r := range rows {
		size += len(r.CK) + len(r.Value)
	}
	return size >= req.MaxBytes
}

// mergeRows merges per-region rows into clustering order, keeping the newest
// version of each key and dropping keys past boundary (nil: no bound).
func mergeRows(sets [][]driver.Row, boundary []byte) []driver.Row {
	if len(sets) == 1 && boundary == nil {
		return sets[0]
	}
	var all []driver.Row
	for _, set := range sets {
		for _, r := range set {
			if boundary != nil && bytes.Compare(r.CK, boundary) > 0 {
				break
			}
			all = append(all, r)
		}
	}
	slices.SortStableFunc(all, func(a, b driver.Row) int { return bytes.Compare(a.CK, b.CK) })
	out := all[:0]
	for _, r := range all {
		if k := len(out); k > 0 && bytes.Equal(out[k-1].CK, r.CK) {
			if quorum.Compare(versionOf(r), versionOf(out[k-1])) > 0 {
				out[k-1] = r
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// All iterates over every live row of partition pk in clustering-key order,
// fetching one page at a time with Scan (same options). The iteration stops
// at the first error, which it yields with a zero Item.
func (n *Namespace) All(ctx context.Context, pk []byte, opts ...CallOption) iter.Seq2[Item, error] {
	return func(yield func(Item, error) bool) {
		token := ""
		for {
			page, err := n.Scan(ctx, pk, append(slices.Clip(opts), WithPageToken(token))...)
			if err != nil {
				yield(Item{}, err)
				return
			}
			for _, it := range page.Items {
				if !yield(it, nil) {
					return
				}
			}
			if page.Next == "" {
				return
			}
			token = page.Next
		}
	}
}

// Page tokens: base64url(version byte 1, 4-byte check of namespace and
// partition key, last clustering key).
const pageTokenVersion = 1

func tokenCheck(ns string, pk []byte) uint32 {
	var d xxhash.Digest
	d.Reset()
	_, _ = d.WriteString(ns)
	_, _ = d.Write([]byte{0})
	_, _ = d.Write(pk)
	return uint32(d.Sum64())
}

func encodePageToken(ns string, pk, ck []byte) string {
	b := make([]byte, 0, 5+len(ck))
	b = append(b, pageTokenVersion)
	b = binary.BigEndian.AppendUint32(b, tokenCheck(ns, pk))
	b = append(b, ck...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodePageToken returns the clustering key a token resumes after; nil for
// the empty token (start of the partition).
func decodePageToken(tok, ns string, pk []byte) ([]byte, error) {
	if tok == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: not base64url: %v", ErrInvalidPageToken, err)
	case base64.RawURLEncoding.EncodeToString(b) != tok:
		// Only the canonical spelling: no line breaks, no stray bits.
		return nil, fmt.Errorf("%w: not in canonical base64url", ErrInvalidPageToken)
	case len(b) < 6 || b[0] != pageTokenVersion:
		return nil, fmt.Errorf("%w: unknown format", ErrInvalidPageToken)
	case binary.BigEndian.Uint32(b[1:5]) != tokenCheck(ns, pk):
		return nil, fmt.Errorf("%w: made for another namespace or partition", ErrInvalidPageToken)
	}
	return b[5:], nil
}
