package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/quorum"
	"github.com/tidemark/tidemark/store/driver"
)

// Entry is one row of a PutBatch.
type Entry struct {
	// CK is the row's clustering key; it must be unique within the batch.
	CK []byte
	// Value is the row's value (nil is stored as an empty value).
	Value []byte
	// Delete makes the entry a deletion (Value must then be nil).
	Delete bool
}

// mutation is one validated write: the rows of one partition with their
// version and absolute expiry, ready to go to any region or into hints.
type mutation struct {
	ns    string
	pk    []byte
	rows  []driver.Row // Timestamp and Expires set; TTL computed per request from Expires
	level quorum.Level
	op    string
	size  int64 // keys and values, for the background byte bound
	// wm settles the write region by region in the watermark's tracker
	// (watermark.go); nil for read repairs and when the Store takes no
	// part.
	wm *pendingWrite
}

// request makes the region request for m at time now: each row carries its
// absolute expiry, and its TTL is what remains until then (the TTL only
// reclaims space: every region hides the row at Expires); rows already
// expired are left out.
func (m *mutation) request(keyspace string, now time.Time) driver.WriteRequest {
	rows := make([]driver.Row, 0, len(m.rows))
	for _, r := range m.rows {
		ttl, expired := schema.TTLUntil(r.Expires, now)
		if expired {
			continue
		}
		r.TTL = ttl
		rows = append(rows, r)
	}
	return driver.WriteRequest{Keyspace: keyspace, Table: m.ns, PK: m.pk, Rows: rows, Consistency: m.level.RegionConsistency()}
}

// Put writes value under (pk, ck), replacing any older version in every
// region (last write wins by the write's timestamp).
//
// Put waits as its consistency level says (WithConsistency; default
// LocalQuorum: the home region) and writes the other regions in the
// background; a region that misses the write for availability (down, slow,
// breaker open) gets a hint. Options: WithConsistency, WithTimeout, WithTTL.
//
// Everything is validated before any I/O, so an invalid call writes nothing
// anywhere: ErrEmptyKey, ErrKeyTooLarge, ErrValueTooLarge, ErrInvalidTTL,
// ErrInvalidLevel, ErrInvalidOption. A call that cannot meet its level
// returns a *ConsistencyError naming every region it waited on that did not
// ack. A region that refuses the write (for example because the namespace's
// table does not exist) gets no hint, so such a call fails even at Any.
func (n *Namespace) Put(ctx context.Context, pk, ck, value []byte, opts ...CallOption) error {
	return n.write(ctx, opPut, pk, []Entry{{CK: ck, Value: value}}, opts)
}

// Delete deletes the row (pk, ck) in every region by writing a deletion
// marker with a new version: a row with no value that lives for the
// namespace's tombstone retention, so that regions which missed the delete
// learn it from hints and repair instead of bringing the row back (see
// docs/consistency.md). Deleting a row that does not exist is not an error.
// Options: WithConsistency, WithTimeout; WithTTL is rejected.
//
// The marker's lifetime must be the table's retention exactly, never a
// guess: the first Delete in a namespace whose retention is not known yet
// (see Store.Namespace) reads it from the first region that answers, and if
// none does it fails with an error wrapping ErrUnavailable that names the
// namespace, having written nothing.
func (n *Namespace) Delete(ctx context.Context, pk, ck []byte, opts ...CallOption) error {
	return n.write(ctx, opDelete, pk, []Entry{{CK: ck, Delete: true}}, opts)
}

// PutBatch writes several rows of one partition with one version (one
// timestamp for the whole batch), so a later single-row write to any of them
// wins over the whole batch.
//
// Each region's write of the batch is atomic: it is one Cassandra unlogged
// batch within one partition, which a region applies entirely or not at all,
// whether the region is written synchronously or in the background. A
// region that misses the batch converges row by row instead: its hints are
// one per row and are replayed independently and concurrently, so until they
// have all been replayed that region can show part of the batch (each row it
// shows carries the batch's version); anti-entropy repair completes any row
// whose hint was lost. So a reader in a lagging region may briefly see some
// of the batch's rows and not others; a reader that needs all or none should
// read at a level whose regions overlap those the batch was acked by (for
// example Quorum after a Quorum write), since multi-region reads keep the
// newest version of each row.
//
// Clustering keys must be unique within the batch (ErrInvalidBatch) and the
// batch's keys and values together must fit Config.MaxBatchBytes
// (ErrBatchTooLarge). Options as for Put; WithTTL applies to the entries
// that are not deletions. A batch with a deletion needs the namespace's
// retention, as Delete does.
func (n *Namespace) PutBatch(ctx context.Context, pk []byte, entries []Entry, opts ...CallOption) error {
	return n.write(ctx, opBatch, pk, entries, opts)
}

func (n *Namespace) write(ctx context.Context, op string, pk []byte, entries []Entry, opts []CallOption) (err error) {
	s := n.s
	end, err := s.begin()
	if err != nil {
		return err
	}
	defer end()
	start := time.Now()
	o := s.callOpts(opts)
	defer func() { s.metrics.observeCall(op, o.level.String(), time.Since(start), err) }()

	if err := n.validateWrite(ctx, op, pk, entries, &o); err != nil {
		return err
	}
	m, err := n.mutation(ctx, op, pk, entries, o)
	if err != nil {
		return err
	}
	return s.write(ctx, m, o.timeout)
}

// validateWrite checks everything about a write before any I/O.
func (n *Namespace) validateWrite(ctx context.Context, op string, pk []byte, entries []Entry, o *callOptions) error {
	s := n.s
	if o.err != nil {
		return o.err
	}
	if _, err := quorum.WritePlan(o.level, len(s.regions)); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalidLevel, op, err)
	}
	if o.paging {
		return fmt.Errorf("%w: %s: paging options apply to Scan only", ErrInvalidOption, op)
	}
	if o.ttlSet {
		switch {
		case op == opDelete:
			return fmt.Errorf("%w: delete: a deletion marker lives for the namespace's tombstone retention; do not pass WithTTL", ErrInvalidTTL)
		case o.ttl <= 0:
			return fmt.Errorf("%w: %s: WithTTL(%v) must be positive (omit WithTTL for no expiry)", ErrInvalidTTL, op, o.ttl)
		case o.ttl > maxTTL:
			return fmt.Errorf("%w: %s: WithTTL(%v) exceeds %v, Cassandra's maximum of 20 years less the second that rounding the expiry up can add", ErrInvalidTTL, op, o.ttl, maxTTL)
		}
	}
	if err := checkPK(pk); err != nil {
		return fmt.Errorf("%s %s: %w", op, n.name, err)
	}
	if len(entries) == 0 {
		return fmt.Errorf("%w: %s %s: no entries", ErrInvalidBatch, op, n.name)
	}
	total := len(pk)
	for i, e := range entries {
		if err := checkCK(e.CK); err != nil {
			return fmt.Errorf("%s %s: entry %d: %w", op, n.name, i, err)
		}
		if e.Delete && e.Value != nil {
			return fmt.Errorf("%w: %s %s: entry %d is a deletion with a value", ErrInvalidBatch, op, n.name, i)
		}
		if len(e.Value) > s.cfg.MaxValueSize {
			return fmt.Errorf("%w: %s %s: value of %d bytes exceeds Config.MaxValueSize (%d bytes); store large blobs elsewhere and keep a reference",
				ErrValueTooLarge, op, n.name, len(e.Value), s.cfg.MaxValueSize)
		}
		total += len(e.CK) + len(e.Value)
	}
	if len(entries) > 1 {
		if total > s.cfg.MaxBatchBytes {
			return fmt.Errorf("%w: %s %s: %d bytes of keys and values exceed Config.MaxBatchBytes (%d); split the batch",
				ErrBatchTooLarge, op, n.name, total, s.cfg.MaxBatchBytes)
		}
		cks := make([][]byte, len(entries))
		for i, e := range entries {
			cks[i] = e.CK
		}
		slices.SortFunc(cks, bytes.Compare)
		for i := 1; i < len(cks); i++ {
			if bytes.Equal(cks[i-1], cks[i]) {
				return fmt.Errorf("%w: %s %s: clustering key %q appears twice", ErrInvalidBatch, op, n.name, cks[i])
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: %s %s: %w", op, n.name, err)
	}
	return nil
}

func checkPK(pk []byte) error {
	switch {
	case len(pk) == 0:
		return fmt.Errorf("%w: the partition key is empty", ErrEmptyKey)
	case len(pk) > schema.MaxPartitionKey:
		return fmt.Errorf("%w: partition key of %d bytes exceeds %d", ErrKeyTooLarge, len(pk), schema.MaxPartitionKey)
	}
	return nil
}

func checkCK(ck []byte) error {
	switch {
	case len(ck) == 0:
		return fmt.Errorf("%w: the clustering key is empty", ErrEmptyKey)
	case len(ck) > schema.MaxClusteringKey:
		return fmt.Errorf("%w: clustering key of %d bytes exceeds %d", ErrKeyTooLarge, len(ck), schema.MaxClusteringKey)
	}
	return nil
}

// mutation builds the validated write: one timestamp for all rows.
func (n *Namespace) mutation(ctx context.Context, op string, pk []byte, entries []Entry, o callOptions) (*mutation, error) {
	s := n.s
	var retention time.Duration
	for _, e := range entries {
		if e.Delete {
			var err error
			if retention, err = n.retention(ctx, op, o.timeout); err != nil {
				return nil, fmt.Errorf("%w (nothing was written)", err)
			}
			break
		}
	}
	ts, pw := s.track.issue(s.clock, len(entries))
	if o.version != nil {
		*o.version = ts
	}
	now := s.cfg.Now()
	m := &mutation{
		ns:    n.name,
		pk:    bytes.Clone(pk),
		rows:  make([]driver.Row, len(entries)),
		level: o.level,
		op:    op,
		size:  int64(len(pk)),
		wm:    pw,
	}
	for i, e := range entries {
		r := driver.Row{CK: bytes.Clone(e.CK), Deleted: e.Delete, Timestamp: ts}
		switch {
		case e.Delete:
			r.Expires = schema.ExpiryAfter(now, retention)
		default:
			r.Value = bytes.Clone(e.Value)
			if r.Value == nil {
				r.Value = []byte{}
			}
			if o.ttlSet {
				r.Expires = schema.ExpiryAfter(now, o.ttl)
			}
		}
		m.rows[i] = r
		m.size += int64(len(r.CK) + len(r.Value))
	}
	return m, nil
}

// regionResult is one region's answer to a write.
type regionResult struct {
	idx    int
	err    error
	hinted bool
}

// write sends m to the regions as its level's plan says and waits until the
// plan's result is decided: synchronous regions are written at once (each
// availability failure becomes a hint before it is counted; any other
// failure is counted Failed, unhinted), the others are queued in the
// background. The call returns as soon as the result is known; synchronous
// writes still in flight finish in the background.
func (s *Store) write(ctx context.Context, m *mutation, timeout time.Duration) error {
	plan, err := quorum.WritePlan(m.level, len(s.regions))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidLevel, err)
	}
	sync := plan.Sync()
	results := make(chan regionResult, len(sync))
	for _, i := range sync {
		r := s.regions[i]
		s.goBackground(func() {
			err := s.writeRegion(ctx, r, m, timeout)
			res := regionResult{idx: i, err: err}
			switch {
			case err == nil:
				m.wm.settle(r.idx, len(m.rows))
			case hintable(err):
				res.hinted = s.hint(r, m, err)
			default:
				// Refused, not unreachable: no hint (a replay would be
				// refused too); the waiter counts the region Failed and
				// the error reaches the caller if it decides the call.
				s.rejected(r, m, err, false)
				m.wm.stick(r.idx, len(m.rows))
			}
			results <- res
		})
	}
	for _, i := range plan.Async() {
		s.remote(s.regions[i], m, s.cfg.Timeout)
	}
	w := s.newWaiter(plan, m.op, sync)
	for plan.Result(w.outcomes) == quorum.ResultPending {
		select {
		case res := <-results:
			w.record(res)
		case <-ctx.Done():
			return w.err(ctx.Err())
		}
	}
	if plan.Result(w.outcomes) == quorum.Succeeded {
		return nil
	}
	return w.err(nil)
}

// waiter accumulates the outcomes of one call.
type waiter struct {
	plan     quorum.Plan
	op       string
	regions  []*region
	outcomes []quorum.Outcome
	failed   []*RegionError
	waited   []int
}

// newWaiter tallies the outcomes of one call that waits on the regions
// listed in waited.
func (s *Store) newWaiter(plan quorum.Plan, op string, waited []int) *waiter {
	return &waiter{plan: plan, op: op, regions: s.regions, outcomes: make([]quorum.Outcome, len(s.regions)),
		failed: make([]*RegionError, len(s.regions)), waited: waited}
}

func (w *waiter) record(res regionResult) {
	switch {
	case res.err == nil:
		w.outcomes[res.idx] = quorum.Acked
	case res.hinted:
		w.outcomes[res.idx] = quorum.Hinted
	default:
		w.outcomes[res.idx] = quorum.Failed
	}
	if res.err != nil {
		w.failed[res.idx] = &RegionError{Region: w.regions[res.idx].name, Op: w.op, Hinted: res.hinted, Err: res.err}
	}
}

// err makes the ConsistencyError for a call that lost, or whose context
// ended (ctxErr) before the result was decided.
func (w *waiter) err(ctxErr error) error {
	e := &ConsistencyError{Op: w.op, Level: w.plan.Level, Required: w.plan.Required(),
		Detail: w.plan.Describe(w.outcomes), ctxErr: ctxErr}
	for _, o := range w.outcomes {
		if o == quorum.Acked {
			e.Acked++
		}
	}
	for _, i := range w.waited {
		if w.failed[i] != nil {
			e.Failed = append(e.Failed, w.failed[i])
		}
	}
	// Then every region still pending: it did not ack either.
	for _, i := range w.waited {
		if w.failed[i] != nil || w.outcomes[i] != quorum.Pending {
			continue
		}
		cause := errors.New("no answer before the call failed on the other regions' answers; the request goes on in the background")
		if ctxErr != nil {
			cause = fmt.Errorf("no answer before the call's context ended: %w", ctxErr)
		}
		e.Failed = append(e.Failed, &RegionError{Region: w.regions[i].name, Op: w.op, Pending: true, Err: cause})
	}
	return e
}
