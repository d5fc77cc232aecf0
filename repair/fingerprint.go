package repair

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/internal/cells"
	"github.com/tidemark/tidemark/internal/cluster"
	"github.com/tidemark/tidemark/internal/schema"
)

// RangeFingerprint is what a region's database computes over a token range
// (schema.SelectFingerprintRange): how many rows it holds, how many of
// them carry a fingerprint, and three sums modulo 2^64.
type RangeFingerprint struct {
	// Rows is count(*): the rows whose cells are there (deletion markers
	// and rows past their absolute expiry included, as a digest scan
	// returns them).
	Rows int64
	// Fingerprinted is count(fp): the rows that carry a fingerprint. Rows
	// written before the fp column existed do not; a range holding any is
	// never judged in sync by its sums.
	Fingerprinted int64
	// Sum is sum(fp): the hash of the set of row versions.
	Sum int64
	// TimestampSum is sum(writetime(digest)) and DigestSum sum(digest):
	// guards against a row whose fp cell is not its version's (a writer
	// that does not set fp, a tie reconciled cell by cell).
	TimestampSum, DigestSum int64
	// FPTimestampSum is sum(writetime(fp)). Every current writer (store,
	// hints, repair, backfill) writes fp with the row's own timestamp, so
	// it equals TimestampSum unless some row's fp is older than its
	// digest: a writer that does not set fp rewrote it.
	FPTimestampSum int64
	// VersionTimestampSum is sum(writetime(ver)), in an answer of
	// FingerprintSince only (0 otherwise): it equals TimestampSum unless
	// a writer that does not set ver rewrote some row of the subset.
	VersionTimestampSum int64
}

// Complete reports whether every row of the range carries its version's
// fingerprint: every row has one, none older than the row's digest.
func (f RangeFingerprint) Complete() bool {
	return f.Rows == f.Fingerprinted && f.FPTimestampSum == f.TimestampSum
}

// fingerprintBytes is the payload of one aggregate answer: 6 bigint
// columns with their 4-byte lengths; sinceBytes FingerprintSince's 7.
const (
	fingerprintBytes = 6 * (4 + 8)
	sinceBytes       = fingerprintBytes + 4 + 8
)

// IncrementalFingerprinter is implemented by readers whose database can
// aggregate, through an index, only the rows of a token range at or above
// a version ([CQLRegion], [MemRegion]). An incremental run
// (Options.Since) needs every region's (docs/repair.md, "Incremental
// runs").
type IncrementalFingerprinter interface {
	// FingerprintSince aggregates the rows of r whose version (the ver
	// column) is at least since, as FingerprintRange does the whole
	// range, and sets VersionTimestampSum. An index that cannot answer
	// (not created, still building) is reported with an error wrapping
	// ErrNoVersionIndex.
	FingerprintSince(ctx context.Context, namespace string, r TokenRange, since int64) (RangeFingerprint, error)
	// EnsureVersionIndex creates the namespace's version index when it
	// is missing (schema.CreateVersionIndex); it returns once the schema
	// agrees, not once the index is built.
	EnsureVersionIndex(ctx context.Context, namespace string) error
}

// ErrNoVersionIndex reports a table whose version index cannot answer
// (not created yet, being built, or no ver column): an incremental run
// compares such a segment in full instead.
var ErrNoVersionIndex = errors.New("repair: the table's version index cannot answer")

// Fingerprinter is implemented by readers whose database can aggregate a
// token range ([CQLRegion], [MemRegion]). When every region's Reader is
// one (and Options.DisableFingerprints is false), repair compares a
// segment's fingerprints before it scans anything (docs/repair.md,
// "Fingerprints").
type Fingerprinter interface {
	// FingerprintRange aggregates the rows of r. A table without the fp
	// column is reported with an error wrapping ErrNoFingerprints.
	FingerprintRange(ctx context.Context, namespace string, r TokenRange) (RangeFingerprint, error)
}

// Upgrader is implemented by readers that can bring a namespace's table to
// the current shape (schema.Upgrade: the expires and fp columns). A run
// that writes calls it for every region before its first segment, since
// repair's writes bind every column.
type Upgrader interface {
	Upgrade(ctx context.Context, namespace string) error
}

// ErrNoFingerprints reports a table that has no fp column (not upgraded
// yet, e.g. in a dry run): repair falls back to digest scans.
var ErrNoFingerprints = errors.New("repair: the table has no fingerprint column")

// FingerprintRange runs schema.SelectFingerprintRange over r at
// LOCAL_QUORUM. The coordinator reads every row of the range (paged
// internally), so a wide range takes a while: an answer that times out
// makes repair split the range and ask again.
func (c *CQLRegion) FingerprintRange(ctx context.Context, namespace string, r TokenRange) (RangeFingerprint, error) {
	stmt := schema.SelectFingerprintRange(c.keyspace, namespace)
	if r.IncludesStart() {
		stmt = schema.SelectFingerprintRangeFrom(c.keyspace, namespace)
	}
	var f RangeFingerprint
	err := c.s.Query(stmt, r.Start, r.End).Consistency(gocql.LocalQuorum).Idempotent(true).
		ScanContext(ctx, &f.Rows, &f.Fingerprinted, &f.Sum, &f.TimestampSum, &f.DigestSum, &f.FPTimestampSum)
	if err != nil && strings.Contains(err.Error(), "Undefined column name fp") {
		return RangeFingerprint{}, fmt.Errorf("%w: table %s.%s (run the store or a repair that writes once to add it): %v",
			ErrNoFingerprints, c.keyspace, namespace, err)
	}
	return f, err
}

// FingerprintSince runs schema.SelectFingerprintSince over r at
// LOCAL_QUORUM: the coordinator reads, through the version index, only
// the rows at or above since.
func (c *CQLRegion) FingerprintSince(ctx context.Context, namespace string, r TokenRange, since int64) (RangeFingerprint, error) {
	stmt := schema.SelectFingerprintSince(c.keyspace, namespace)
	if r.IncludesStart() {
		stmt = schema.SelectFingerprintSinceFrom(c.keyspace, namespace)
	}
	var f RangeFingerprint
	err := c.s.Query(stmt, r.Start, r.End, since).Consistency(gocql.LocalQuorum).Idempotent(true).
		ScanContext(ctx, &f.Rows, &f.Fingerprinted, &f.Sum, &f.TimestampSum, &f.DigestSum, &f.FPTimestampSum, &f.VersionTimestampSum)
	if err != nil && (schema.IsUndefinedColumn(err.Error()) || schema.IsIndexUnavailable(err.Error())) {
		return RangeFingerprint{}, fmt.Errorf("%w: table %s.%s, index %s: %v", ErrNoVersionIndex, c.keyspace, namespace, schema.VersionIndex(namespace), err)
	}
	return f, err
}

// EnsureVersionIndex creates the namespace's version index when
// system_schema.indexes does not list it, and waits for schema agreement.
func (c *CQLRegion) EnsureVersionIndex(ctx context.Context, namespace string) error {
	iter := c.s.Query(schema.SelectIndexes, c.keyspace, namespace).Consistency(gocql.LocalOne).IterContext(ctx)
	var name string
	for iter.Scan(&name) {
		if name == schema.VersionIndex(namespace) {
			_ = iter.Close()
			return nil
		}
	}
	if err := iter.Close(); err != nil {
		return fmt.Errorf("read the indexes of %s.%s: %w", c.keyspace, namespace, err)
	}
	stmt := schema.CreateVersionIndex(c.keyspace, namespace)
	if err := c.s.Query(stmt).ExecContext(ctx); err != nil && !strings.Contains(err.Error(), "already exists") {
		return fmt.Errorf("%q failed: %w", stmt, err)
	}
	return c.s.AwaitSchemaAgreement(ctx)
}

// Upgrade adds the columns schema.AddedColumns that the table lacks (read
// from system_schema.columns, so a role that may not ALTER works on an
// upgraded table) and waits for schema agreement.
func (c *CQLRegion) Upgrade(ctx context.Context, namespace string) error {
	iter := c.s.Query(schema.SelectColumns, c.keyspace, namespace).Consistency(gocql.LocalOne).IterContext(ctx)
	have := map[string]bool{}
	var name string
	for iter.Scan(&name) {
		have[name] = true
	}
	if err := iter.Close(); err != nil {
		return fmt.Errorf("read the columns of %s.%s: %w", c.keyspace, namespace, err)
	}
	if len(have) == 0 {
		return nil // no table: Describe reports it
	}
	stmts := schema.Upgrade(c.keyspace, namespace)
	altered := false
	for i, col := range schema.AddedColumns {
		if have[col] {
			continue
		}
		if err := c.s.Query(stmts[i]).ExecContext(ctx); err != nil && !schema.IsColumnExists(err.Error()) {
			return fmt.Errorf("table %s.%s lacks column %s, which repair's writes set, and %q failed: %w",
				c.keyspace, namespace, col, stmts[i], err)
		}
		altered = true
	}
	if altered {
		return c.s.AwaitSchemaAgreement(ctx)
	}
	return nil
}

// FingerprintRange aggregates the rows of r whose cells are there at Now,
// as Cassandra does: count(*), count(fp) (rows written by
// InsertWithoutFingerprint have none), and the sums modulo 2^64.
func (m *MemRegion) FingerprintRange(_ context.Context, namespace string, r TokenRange) (RangeFingerprint, error) {
	if err := m.fault("fingerprint"); err != nil {
		return RangeFingerprint{}, err
	}
	return m.aggregate(namespace, r, nil)
}

// FingerprintSince aggregates, as FingerprintRange does, the rows of r
// whose ver cell is live and at least since (rows written without one are
// not seen, as the index does not hold them). The fault op is
// "fingerprint_since"; with IndexUnavailable set, it fails with
// ErrNoVersionIndex.
func (m *MemRegion) FingerprintSince(_ context.Context, namespace string, r TokenRange, since int64) (RangeFingerprint, error) {
	if err := m.fault("fingerprint_since"); err != nil {
		return RangeFingerprint{}, err
	}
	return m.aggregate(namespace, r, &since)
}

// aggregate is FingerprintRange, or with since FingerprintSince.
func (m *MemRegion) aggregate(namespace string, r TokenRange, since *int64) (RangeFingerprint, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if since != nil && m.IndexUnavailable {
		return RangeFingerprint{}, fmt.Errorf("%w: memory region, table %q", ErrNoVersionIndex, namespace)
	}
	t, err := m.table(namespace)
	if err != nil {
		return RangeFingerprint{}, err
	}
	now := m.now().Unix()
	var f RangeFingerprint
	for _, row := range t {
		c := &row.cells
		if !r.Contains(row.token) || !c.Visible(now) {
			continue
		}
		if since != nil {
			if !c.Version.Live(now) || cells.AsBigint(c.Version) < *since {
				continue
			}
			f.VersionTimestampSum += c.Version.Timestamp
		}
		f.Rows++
		if c.Fingerprint.Live(now) {
			f.Fingerprinted++
			f.Sum += cells.AsBigint(c.Fingerprint)
			f.FPTimestampSum += c.Fingerprint.Timestamp
		}
		if c.Digest.Live(now) {
			f.TimestampSum += c.Digest.Timestamp
			f.DigestSum += cells.AsBigint(c.Digest)
		}
	}
	return f, nil
}

// EnsureVersionIndex counts the call (IndexEnsured); the memory region
// needs no index.
func (m *MemRegion) EnsureVersionIndex(context.Context, string) error {
	if err := m.fault("ensure_index"); err != nil {
		return err
	}
	m.mu.Lock()
	m.IndexEnsured++
	m.mu.Unlock()
	return nil
}

// incrementals returns every region's IncrementalFingerprinter, or nil
// when some region has none.
func (r *Repairer) incrementals() []IncrementalFingerprinter {
	return readersAs[IncrementalFingerprinter](r.regions)
}

// readersAs returns every region's Reader as a T, or nil when some
// region's is not one.
func readersAs[T any](regions []Region) []T {
	out := make([]T, len(regions))
	for i, reg := range regions {
		f, ok := reg.Reader.(T)
		if !ok {
			return nil
		}
		out[i] = f
	}
	return out
}

// unchangedSince reports whether every region holds the same rows of seg
// at or above Options.Since (an incremental run): the same count and sums,
// every row of the subset carrying its version's fp and ver. Then seg is
// in sync, since below Since the watermark vouches for it
// (docs/design.md, "Incremental repair"), and nothing else is read. An
// index that cannot answer, or any failed answer, is not an error: seg is
// compared in full, as in a full run, whose reads then meet a region that
// is really down (an indexed read of many rows can time out on the
// server: Cassandra 5.0 answers UNKNOWN).
func (r *Repairer) unchangedSince(ctx context.Context, ns string, seg TokenRange, acc *accum, trk *tracker) (bool, error) {
	incs := r.incrementals()
	answers := make([]RangeFingerprint, len(incs))
	errs := make([]error, len(incs))
	var wg sync.WaitGroup
	for j, f := range incs {
		wg.Go(func() {
			answers[j], errs[j] = f.FingerprintSince(ctx, ns, seg, r.opts.Since)
			trk.touch()
			acc.do(func(rp *Report) {
				rp.Regions[j].FingerprintQueries++
				rp.Regions[j].BytesRead += sinceBytes
			})
			r.opts.Metrics.addFingerprintQuery(ns, r.regions[j].Name, sinceBytes)
		})
	}
	wg.Wait()
	for j, err := range errs {
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return false, context.Cause(ctx)
		case errors.Is(err, ErrNoVersionIndex):
			r.indexWarn.Do(func() {
				r.log.Warn("repair: the version index cannot answer yet; incremental runs compare the segments in full meanwhile",
					"namespace", ns, "region", r.regions[j].Name, "err", err)
			})
			return false, nil
		default:
			r.log.Debug("repair: indexed aggregate failed; the segment is compared in full", "namespace", ns,
				"segment", seg.String(), "region", r.regions[j].Name, "err", err)
			acc.do(func(rp *Report) { rp.IndexedFailures++ })
			return false, nil
		}
	}
	for _, f := range answers {
		if f != answers[0] || !f.Complete() || f.VersionTimestampSum != f.TimestampSum {
			return false, nil
		}
	}
	acc.do(func(rp *Report) {
		rp.SegmentsInSync++
		rp.SegmentsUnchanged++
		rp.RowsInSync += answers[0].Rows
	})
	r.opts.Metrics.addSegmentInSync(ns)
	r.opts.Metrics.addInSync(ns, answers[0].Rows)
	// The databases read the subset's rows alone: they take their share of
	// the scan rate, once per region.
	return true, r.charge(ctx, trk, answers[0].Rows*int64(len(r.regions)))
}

// fingerprinters returns every region's Fingerprinter, or nil when
// fingerprints are disabled or some region has none.
func (r *Repairer) fingerprinters() []Fingerprinter {
	if r.opts.DisableFingerprints {
		return nil
	}
	return readersAs[Fingerprinter](r.regions)
}

// ensureIndexes creates the version index in every region before an
// incremental run that writes (IncrementalFingerprinter.EnsureVersionIndex),
// concurrently. A region whose index is still building answers with
// ErrNoVersionIndex meanwhile, and its segments are compared in full.
func (r *Repairer) ensureIndexes(ctx context.Context, namespace string) error {
	if r.opts.Since == 0 || r.opts.DryRun {
		return nil
	}
	incs := r.incrementals()
	errs := make([]error, len(incs))
	var wg sync.WaitGroup
	for i, f := range incs {
		wg.Go(func() {
			if err := f.EnsureVersionIndex(ctx, namespace); err != nil {
				errs[i] = &RegionError{Region: r.regions[i].Name, Op: "create the version index", Err: err}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// upgrade brings every region's table to the current shape before a run
// that writes (Upgrader), concurrently.
func (r *Repairer) upgrade(ctx context.Context, namespace string) error {
	if r.opts.DryRun {
		return nil
	}
	errs := make([]error, len(r.regions))
	var wg sync.WaitGroup
	for i, reg := range r.regions {
		u, ok := reg.Reader.(Upgrader)
		if !ok {
			continue
		}
		wg.Go(func() {
			if err := u.Upgrade(ctx, namespace); err != nil {
				errs[i] = &RegionError{Region: reg.Name, Op: "upgrade", Err: err}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// verdict is what a range's fingerprints say.
type verdict int

const (
	inSync  verdict = iota // equal everywhere, every row fingerprinted
	scanIt                 // small enough, or mostly without fingerprints: digest scan
	splitIt                // differs: split and ask again
)

// judge compares one range's fingerprints across regions.
func (r *Repairer) judge(fs []RangeFingerprint) verdict {
	same := true
	var rows, unprinted int64
	for _, f := range fs {
		same = same && f == fs[0] && f.Complete()
		rows = max(rows, f.Rows)
		unprinted = max(unprinted, f.Rows-f.Fingerprinted)
	}
	switch {
	case same:
		return inSync
	case rows <= r.opts.FingerprintLeafRows:
		return scanIt
	case unprinted*int64(r.opts.FingerprintFanout) > rows:
		// Many rows without fingerprints: splitting would not find
		// in-sync pieces, the scan reads them anyway.
		return scanIt
	}
	return splitIt
}

// narrow compares seg's fingerprints across the regions and returns the
// sub-ranges of seg that need a digest scan, in token order, adjacent ones
// merged: none when seg is in sync; seg itself when fingerprints cannot be
// used (a region without them, a table without the column). A range that
// differs is split into FingerprintFanout parts, level by level, while it
// holds more than FingerprintLeafRows rows, down to FingerprintMaxDepth
// levels; a range whose answer timed out is split without comparing. The
// last part of a parent is not asked: its fingerprints are the parent's
// less its siblings' (a write between the queries can only make a range
// look different, never hide a difference, short of a 2^-64 collision).
//
// It also returns the scanned ranges whose answers showed, in some
// regions, rows without fingerprints: once scanned and fixed, they are
// backfilled (Repairer.backfill).
func (r *Repairer) narrow(ctx context.Context, ns string, seg TokenRange, acc *accum, ctl *Control, trk *tracker) ([]TokenRange, []backfillRange, error) {
	if r.opts.Since > 0 {
		// Dense change at or above Since (most segments asked differed):
		// asking costs more than it saves — an indexed read of many rows
		// reads them one by one — so the segment is compared in full
		// without asking.
		if acc.changed.descend() {
			same, err := r.unchangedSince(ctx, ns, seg, acc, trk)
			if err != nil || same {
				acc.changed.record(0, 1)
				return nil, nil, err
			}
			acc.changed.record(1, 1)
		} else {
			acc.do(func(rp *Report) { rp.SegmentsComparedOutright++ })
		}
		// Something at or above Since differs: the segment is compared in
		// full, as a full run compares it.
	}
	fps := r.fingerprinters()
	if fps == nil {
		return []TokenRange{seg}, nil, nil
	}
	if !acc.density.descend() {
		acc.do(func(rp *Report) { rp.SegmentsScannedOutright++ })
		return []TokenRange{seg}, nil, nil
	}
	var leaves []TokenRange
	var unprinted []backfillRange
	// segRows is the segment's rows, scanned the rows of the ranges
	// handed to the digest scan (in the region holding most): their
	// ratio is what the density estimate learns from this segment.
	var segRows, scanned int64
	answeredRows := func(answers []RangeFingerprint) int64 {
		var n int64
		for _, f := range answers {
			n = max(n, f.Rows)
		}
		return n
	}
	defer func() {
		if segRows > 0 {
			acc.density.record(min(scanned, segRows), segRows)
		}
	}()
	leaf := func(rg TokenRange, answers []RangeFingerprint, answered bool) {
		leaves = append(leaves, rg)
		if !answered {
			scanned = segRows // unknown: count it all
			return
		}
		b := backfillRange{TokenRange: rg, regions: make([]bool, len(answers))}
		need := false
		for j, f := range answers {
			b.regions[j] = !f.Complete()
			need = need || b.regions[j]
		}
		if need {
			// Scanned for want of fingerprints, not for divergence: not
			// evidence of density (a table written before the column
			// would otherwise stop descending, and so stop being
			// backfilled, after its first segments).
			unprinted = append(unprinted, b)
			return
		}
		scanned += answeredRows(answers)
	}
	level := []TokenRange{seg}
	// derived[i], when set, says level[i] is the last part of a parent
	// whose answers are known: its own are the parent's less its
	// siblings' (sums and counts are additive), so it is not asked.
	derived := []*derivation{nil}
	// timeouts[i] is how many of level[i]'s ancestors in a row timed
	// out: splitting narrows a range whose aggregate is too wide to
	// answer in time, but not a region whose every read times out, whose
	// ranges would otherwise be split (all parts asked, none derived)
	// down to FingerprintMaxDepth.
	timeouts := []int{0}
	for depth := 0; len(level) > 0; depth++ {
		if err := ctl.Wait(ctx); err != nil {
			return nil, nil, err
		}
		answers, timedOut, err := r.askFingerprints(ctx, ns, fps, level, derived, acc, trk)
		if errors.Is(err, ErrNoFingerprints) {
			r.log.Debug("repair: no fingerprints, digest scan", "namespace", ns, "segment", seg.String(), "err", err)
			return mergeRanges(append(leaves, level...)), nil, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if depth == 0 && !timedOut[0] {
			segRows = answeredRows(answers[0])
		}
		var next []TokenRange
		var nextDerived []*derivation
		var nextTimeouts []int
		var synced int64
		verdicts := make([]verdict, len(level))
		for i := range level {
			verdicts[i] = splitIt
			if !timedOut[i] {
				verdicts[i] = r.judge(answers[i])
			}
		}
		dense := depth > 0 && !slices.Contains(timedOut, true) && denseLevel(verdicts, answers, r.opts.FingerprintFanout)
		for i, rg := range level {
			v := verdicts[i]
			if dense && v == splitIt {
				v = scanIt
			}
			switch {
			case v == inSync:
				synced += answers[i][0].Rows
				if depth == 0 {
					acc.do(func(rp *Report) { rp.SegmentsInSync++ })
					r.opts.Metrics.addSegmentInSync(ns)
				}
			case v == scanIt || depth+1 >= r.opts.FingerprintMaxDepth || (timedOut[i] && timeouts[i] >= timeoutSplits):
				leaf(rg, answers[i], !timedOut[i])
			default:
				parts := SplitRange(rg, r.opts.FingerprintFanout)
				if len(parts) < 2 {
					leaf(rg, answers[i], !timedOut[i])
					continue
				}
				first := len(next)
				next = append(next, parts...)
				chain := 0
				if timedOut[i] {
					chain = timeouts[i] + 1
				}
				for range parts {
					nextTimeouts = append(nextTimeouts, chain)
				}
				for range parts[1:] {
					nextDerived = append(nextDerived, nil)
				}
				var d *derivation
				if !timedOut[i] {
					d = &derivation{parent: answers[i], first: first}
				}
				nextDerived = append(nextDerived, d)
			}
		}
		if synced > 0 {
			acc.do(func(rp *Report) { rp.RowsInSync += synced })
			r.opts.Metrics.addInSync(ns, synced)
			// Every region's database read these rows: they take their
			// share of the scan rate as scanned rows do, once per region
			// (a digest scan charges each region's stream).
			if err := r.charge(ctx, trk, synced*int64(len(r.regions))); err != nil {
				return nil, nil, err
			}
		}
		level, derived, timeouts = next, nextDerived, nextTimeouts
	}
	return mergeRanges(leaves), unprinted, nil
}

// timeoutSplits is how many times in a row a range whose aggregate timed
// out is split and asked again (its parts 4^timeoutSplits times narrower
// at the default fanout) before it is digest-scanned, paged, instead.
const timeoutSplits = 3

// Dense divergence: when the ranges of a level show that more than
// denseRowFraction of the rows differ, splitting further costs more round
// trips than scanning the differing ranges saves, so they are scanned.
const (
	// denseRowFraction is the estimated fraction of differing rows above
	// which differing ranges are scanned, not split: at 1/64 a scan reads
	// about 64 × 136 bytes per differing row, about what the descent
	// costs.
	denseRowFraction = 1.0 / 64
	// denseMinRanges is how many ranges a level needs for the estimate.
	denseMinRanges = 16
	// denseMinRows is how many differing rows per differing parent the
	// estimate must find.
	denseMinRows = 2
)

// denseLevel estimates the fraction of differing rows from a level below
// the segment, whose ranges are the fanout parts of differing parents:
// with D differing rows in a parent, 1-(1-1/fanout)^D of its parts differ,
// so the share q of differing parts gives D, and D over the parent's rows
// (fanout × the parts' mean) the fraction. It reports a fraction above
// denseRowFraction. All parts differing counts as q = (k-½)/k.
func denseLevel(vs []verdict, answers [][]RangeFingerprint, fanout int) bool {
	if len(vs) < denseMinRanges {
		return false
	}
	var differ, rows int64
	for i, v := range vs {
		if v != inSync {
			differ++
		}
		var m int64
		for _, f := range answers[i] {
			m = max(m, f.Rows)
		}
		rows += m
	}
	k := float64(len(vs))
	parent := float64(fanout) * float64(rows) / k
	if differ == 0 || parent < 1 {
		return false
	}
	q := float64(differ) / k
	if q == 1 {
		q = (k - 0.5) / k
	}
	d := math.Log(1-q) / math.Log(1-1/float64(fanout))
	// About one differing row per parent is the sparse case the descent
	// is for, however small the parts: only several count as dense.
	return d >= denseMinRows && d/parent > denseRowFraction
}

// askFingerprints asks every region for the fingerprints of every range,
// at most Options.Concurrency queries at once. answers[i][j] is range i in
// region j; timedOut[i] is set when some region did not answer range i in
// time (cluster.Classify: Timeout), which is not an error.
func (r *Repairer) askFingerprints(ctx context.Context, ns string, fps []Fingerprinter, ranges []TokenRange, derived []*derivation, acc *accum, trk *tracker) ([][]RangeFingerprint, []bool, error) {
	answers := make([][]RangeFingerprint, len(ranges))
	timedOut := make([]bool, len(ranges))
	errs := make([]error, len(ranges)*len(fps))
	var mu sync.Mutex
	sem := make(chan struct{}, r.opts.Concurrency)
	var wg sync.WaitGroup
	for i, rg := range ranges {
		answers[i] = make([]RangeFingerprint, len(fps))
		if derived[i] != nil {
			continue
		}
		for j, f := range fps {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				fp, err := f.FingerprintRange(ctx, ns, rg)
				trk.touch()
				name := r.regions[j].Name
				acc.do(func(rp *Report) {
					rp.Regions[j].FingerprintQueries++
					rp.Regions[j].BytesRead += fingerprintBytes
				})
				r.opts.Metrics.addFingerprintQuery(ns, name, fingerprintBytes)
				switch {
				case err == nil:
					answers[i][j] = fp
				case ctx.Err() == nil && !errors.Is(err, ErrNoFingerprints) && cluster.Classify(ctx, err) == cluster.Timeout:
					mu.Lock()
					timedOut[i] = true
					mu.Unlock()
				case errors.Is(err, ErrNoFingerprints):
					errs[i*len(fps)+j] = err
				default:
					errs[i*len(fps)+j] = &RegionError{Region: name, Op: "fingerprint", Err: err}
				}
			})
		}
	}
	wg.Wait()
	for _, err := range errs {
		if errors.Is(err, ErrNoFingerprints) {
			return nil, nil, err
		}
	}
	if err := errors.Join(errs...); err != nil {
		if ctx.Err() != nil {
			return nil, nil, context.Cause(ctx)
		}
		return nil, nil, err
	}
	for i, d := range derived {
		if d == nil {
			continue
		}
		for j := range fps {
			f := d.parent[j]
			for k := d.first; k < i; k++ {
				timedOut[i] = timedOut[i] || timedOut[k]
				s := answers[k][j]
				f.Rows -= s.Rows
				f.Fingerprinted -= s.Fingerprinted
				f.Sum -= s.Sum
				f.TimestampSum -= s.TimestampSum
				f.FPTimestampSum -= s.FPTimestampSum
				f.DigestSum -= s.DigestSum
			}
			answers[i][j] = f
		}
	}
	return answers, timedOut, nil
}

// derivation is how a range's fingerprints follow from its parent's and
// its siblings' (level[first:i]), without a query.
type derivation struct {
	parent []RangeFingerprint
	first  int
}

// mergeRanges sorts ranges by token and joins adjacent ones.
func mergeRanges(rs []TokenRange) []TokenRange {
	slices.SortFunc(rs, func(a, b TokenRange) int {
		if a.Start == b.Start {
			return 0
		}
		if a.Start < b.Start {
			return -1
		}
		return 1
	})
	var out []TokenRange
	for _, rg := range rs {
		if n := len(out); n > 0 && out[n-1].End == rg.Start {
			out[n-1].End = rg.End
			continue
		}
		out = append(out, rg)
	}
	return out
}

// leafScans is how many differing sub-ranges of a segment are scanned at
// once.
const leafScans = 4

// repairSegment repairs one segment (or piece): its fingerprints first
// (narrow), then a digest scan, diff and fix of each sub-range that
// differs, then the backfill of the fingerprints those ranges lacked.
func (r *Repairer) repairSegment(ctx context.Context, ns string, seg TokenRange, acc *accum, ctl *Control, trk *tracker) (segStats, error) {
	leaves, unprinted, err := r.narrow(ctx, ns, seg, acc, ctl, trk)
	if err != nil {
		return segStats{}, err
	}
	// The ranges are scanned a few at once: at low divergence each is a
	// handful of rows, and its round trips are the cost.
	var st segStats
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, leafScans)
	var wg sync.WaitGroup
	for _, lr := range leaves {
		sem <- struct{}{}
		mu.Lock()
		stop := firstErr != nil
		mu.Unlock()
		if stop {
			<-sem
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			ps, err := r.scanRange(ctx, ns, lr, acc, ctl, trk)
			mu.Lock()
			defer mu.Unlock()
			st.rows, st.differing, st.written = st.rows+ps.rows, st.differing+ps.differing, st.written+ps.written
			if err != nil && firstErr == nil {
				firstErr = err
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return st, firstErr
	}
	if len(leaves) > 0 {
		acc.do(func(rp *Report) { rp.RangesScanned += int64(len(leaves)) })
	}
	// Every region holds the winners now: the fingerprints written are
	// those of the versions the regions agree on.
	return st, r.backfill(ctx, ns, unprinted, acc, ctl, trk)
}
