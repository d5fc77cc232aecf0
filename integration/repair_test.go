package integration

// Anti-entropy repair against the real regions: divergence injected by
// writing straight to single regions, then repaired and compared.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/cmd/repaird/cli"
	"github.com/tidemark/tidemark/cmd/repaird/config"
	"github.com/tidemark/tidemark/cmd/repaird/daemon"
	"github.com/tidemark/tidemark/internal/cluster"
	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/repair"
)

const repairNS = "things"

// repairRow is one row to write straight into a region.
type repairRow struct {
	pk, ck  []byte
	value   []byte
	deleted bool
	ts      int64
	ttl     int
}

type repairFixture struct {
	ks       string
	regions  []string
	sessions map[string]*gocql.Session
}

// newRepairFixture creates a keyspace and the namespace's table in regions.
func newRepairFixture(t testing.TB, regions ...string) *repairFixture {
	t.Helper()
	ks := newKeyspace(t, regions...)
	f := &repairFixture{ks: ks, regions: regions, sessions: map[string]*gocql.Session{}}
	for _, name := range regions {
		s := adminSession(t, region(t, name))
		f.sessions[name] = s
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		err := s.Query(schema.CreateTable(ks, repairNS, schema.DefaultRetention)).ExecContext(ctx)
		if err == nil {
			err = s.AwaitSchemaAgreement(ctx)
		}
		cancel()
		if err != nil {
			t.Fatalf("create table in %s: %v", name, err)
		}
	}
	return f
}

func (f *repairFixture) insertStmt() string { return schema.Insert(f.ks, repairNS) }

// bindRow binds a row as the store writes it (row format 2). Its absolute
// expiry is derived from its timestamp, so that the same row loaded into
// several regions is the same version everywhere.
func bindRow(r repairRow) []any {
	var expires int64
	if r.ttl > 0 {
		expires = r.ts/1_000_000 + int64(r.ttl)
	}
	ttl, _ := schema.TTLUntil(expires, time.Now())
	return schema.InsertValues(r.pk, r.ck, schema.RowCells(r.deleted, r.value, expires), r.ts, ttl)
}

// load writes rows to a region: one unlogged batch per partition, several
// batches in flight.
func (f *repairFixture) load(t testing.TB, regionName string, rows []repairRow) {
	t.Helper()
	s := f.sessions[regionName]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// group consecutive rows of a partition
	var groups [][]repairRow
	for i := 0; i < len(rows); {
		j := i + 1
		for j < len(rows) && bytes.Equal(rows[j].pk, rows[i].pk) && j-i < 50 {
			j++
		}
		groups = append(groups, rows[i:j])
		i = j
	}
	work := make(chan []repairRow)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	for w := 0; w < 24; w++ {
		wg.Go(func() {
			for g := range work {
				var err error
				if len(g) == 1 {
					err = s.Query(f.insertStmt(), bindRow(g[0])...).ExecContext(ctx)
				} else {
					b := s.Batch(gocql.UnloggedBatch)
					for _, r := range g {
						b.Query(f.insertStmt(), bindRow(r)...)
					}
					err = b.ExecContext(ctx)
				}
				if err != nil {
					select {
					case errc <- err:
					default:
					}
					cancel()
				}
			}
		})
	}
	for _, g := range groups {
		select {
		case work <- g:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatalf("load %d rows into %s: %v", len(rows), regionName, err)
	default:
	}
}

// scanAll returns every row of a region as a full-ring digest scan sees it.
func (f *repairFixture) scanAll(t testing.TB, regionName string) []repair.DigestRow {
	t.Helper()
	cr, err := repair.NewCQLRegion(f.sessions[regionName], f.ks)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st := cr.ScanDigests(ctx, repairNS, repair.Segments(1)[0], 5000)
	defer st.Close()
	var out []repair.DigestRow
	for st.Next() {
		r := *st.Row()
		r.PK, r.CK = bytes.Clone(r.PK), bytes.Clone(r.CK) // the stream reuses its buffers
		r.TTL = 0                                         // remaining TTLs tick; versions are compared
		out = append(out, r)
	}
	if err := st.Err(); err != nil {
		t.Fatalf("scan %s: %v", regionName, err)
	}
	return out
}

func (f *repairFixture) cqlRegions(t testing.TB) []repair.Region {
	t.Helper()
	var out []repair.Region
	for _, name := range f.regions {
		cr, err := repair.NewCQLRegion(f.sessions[name], f.ks)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, repair.Region{Name: name, Reader: cr, Writer: cr})
	}
	return out
}

// assertIdentical compares full digest scans of every region.
func (f *repairFixture) assertIdentical(t testing.TB) []repair.DigestRow {
	t.Helper()
	first := f.scanAll(t, f.regions[0])
	for _, name := range f.regions[1:] {
		other := f.scanAll(t, name)
		if len(other) != len(first) {
			t.Fatalf("region %s has %d rows, region %s %d", name, len(other), f.regions[0], len(first))
		}
		for i := range first {
			a, b := first[i], other[i]
			if repair.CompareKeys(&a, &b) != 0 || a.Timestamp != b.Timestamp || a.Deleted != b.Deleted || a.Digest != b.Digest {
				t.Fatalf("row %d differs: %s has %s, %s has %s", i, f.regions[0], a, name, b)
			}
		}
	}
	return first
}

func rowKey(i int) (pk, ck []byte) {
	pk = []byte(fmt.Sprintf("p%06d", i/10))
	ck = binary.BigEndian.AppendUint32(nil, uint32(i%10))
	return pk, ck
}

func value(i int, version int, size int) []byte {
	v := bytes.Repeat([]byte{byte('a' + version%26)}, size)
	copy(v, fmt.Sprintf("row %d v%d ", i, version))
	return v
}

// baseRows returns n rows (10 per partition) at timestamp ts.
func baseRows(n int, ts int64, size int) []repairRow {
	rows := make([]repairRow, n)
	for i := range rows {
		pk, ck := rowKey(i)
		rows[i] = repairRow{pk: pk, ck: ck, value: value(i, 0, size), ts: ts}
	}
	return rows
}

// divergence describes what was injected and what repair must do.
type divergence struct {
	rows      int64            // distinct rows made divergent
	writes    map[string]int64 // rows each region lacks
	deletedPK [][2][]byte
}

// injectDivergence writes straight to single regions of a 3-region fixture
// (a, b, c): missed writes, missed deletes, older versions, extra rows.
func injectDivergence(t testing.TB, f *repairFixture, n int, ts int64, scale int) divergence {
	t.Helper()
	d := divergence{writes: map[string]int64{}}
	k := max(n/250, 1) * scale / 100 // per kind
	if k == 0 {
		return d
	}
	var onlyAB, onlyA, onlyAC, onlyC []repairRow
	idx := 0
	next := func() int { idx += 7; return idx % n }
	for i := 0; i < k; i++ { // missed write: c keeps the old version
		j := next()
		pk, ck := rowKey(j)
		onlyAB = append(onlyAB, repairRow{pk: pk, ck: ck, value: value(j, 1, 100), ts: ts + 10})
	}
	for i := 0; i < k; i++ { // missed delete: only a has the marker
		j := next()
		pk, ck := rowKey(j)
		onlyA = append(onlyA, repairRow{pk: pk, ck: ck, deleted: true, ts: ts + 20, ttl: int(schema.DefaultRetention / time.Second)})
		d.deletedPK = append(d.deletedPK, [2][]byte{pk, ck})
	}
	for i := 0; i < k; i++ { // older version in b
		j := next()
		pk, ck := rowKey(j)
		onlyAC = append(onlyAC, repairRow{pk: pk, ck: ck, value: value(j, 2, 100), ts: ts + 30})
	}
	for i := 0; i < k; i++ { // extra rows only in c, some with a TTL
		pk := []byte(fmt.Sprintf("x%06d", i/3))
		ck := binary.BigEndian.AppendUint32(nil, uint32(i%3))
		r := repairRow{pk: pk, ck: ck, value: value(i, 3, 100), ts: ts + 40}
		if i%2 == 0 {
			r.ttl = 3600
		}
		onlyC = append(onlyC, r)
	}
	f.load(t, "a", onlyAB)
	f.load(t, "b", onlyAB)
	f.load(t, "a", onlyA)
	f.load(t, "a", onlyAC)
	f.load(t, "c", onlyAC)
	f.load(t, "c", onlyC)
	d.rows = int64(4 * k)
	d.writes["a"] = int64(k)     // extra rows
	d.writes["b"] = int64(3 * k) // delete, older, extra
	d.writes["c"] = int64(2 * k) // missed write, delete
	return d
}

func TestRepairConvergesThreeRegions(t *testing.T) {
	f := newRepairFixture(t, "a", "b", "c")
	const n = 50_000
	ts := time.Now().UnixMicro()
	start := time.Now()
	rows := baseRows(n, ts, 100)
	for _, r := range f.regions {
		f.load(t, r, rows)
	}
	d := injectDivergence(t, f, n, ts, 100)
	t.Logf("loaded %d rows x 3 regions and injected %d divergent rows in %s", n, d.rows, time.Since(start).Round(time.Millisecond))

	store, err := repair.NewCQLProgress(context.Background(), f.sessions["a"], f.ks)
	if err != nil {
		t.Fatal(err)
	}
	// Dry run first: it reports and writes nothing.
	dry, err := repair.New(f.cqlRegions(t), repair.Options{Segments: 16, DryRun: true, Parallelism: 2})
	if err != nil {
		t.Fatal(err)
	}
	drep, err := dry.Run(context.Background(), repairNS)
	if err != nil {
		t.Fatal(err)
	}
	if drep.RowsDiffering != d.rows || drep.RowsWritten != 0 {
		t.Fatalf("dry run: differing %d written %d, injected %d", drep.RowsDiffering, drep.RowsWritten, d.rows)
	}
	for _, rs := range drep.Regions {
		if rs.RowsDiffering != d.writes[rs.Region] || rs.ValueFetches != 0 {
			t.Errorf("dry run region %s: %+v, want %d differing and no value fetches", rs.Region, rs, d.writes[rs.Region])
		}
	}

	r, err := repair.New(f.cqlRegions(t), repair.Options{Segments: 16, Parallelism: 2, Progress: store, Owner: "itest"})
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	rep, err := r.Run(context.Background(), repairNS)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("repair: %d rows scanned, %d differing, %d written in %s", rep.RowsScanned, rep.RowsDiffering, rep.RowsWritten, time.Since(start).Round(time.Millisecond))
	if rep.RowsDiffering != d.rows || rep.RowsWritten != d.rows || rep.RowsSkipped != 0 || !rep.Complete {
		t.Fatalf("report: differing %d written %d skipped %d complete %v; injected %d", rep.RowsDiffering, rep.RowsWritten, rep.RowsSkipped, rep.Complete, d.rows)
	}
	if want := int64(n) + d.rows/4; rep.RowsScanned+rep.RowsInSync != want {
		t.Errorf("rows scanned %d + found in sync by fingerprints %d = %d, want %d", rep.RowsScanned, rep.RowsInSync, rep.RowsScanned+rep.RowsInSync, want)
	}
	for _, rs := range rep.Regions {
		if rs.RowsWritten != d.writes[rs.Region] || rs.RowsDiffering != d.writes[rs.Region] {
			t.Errorf("region %s: %+v, want %d differing and written", rs.Region, rs, d.writes[rs.Region])
		}
	}
	all := f.assertIdentical(t)
	deleted := map[string]bool{}
	for _, r := range all {
		if r.Deleted {
			deleted[string(r.PK)+"/"+string(r.CK)] = true
		}
	}
	for _, k := range d.deletedPK {
		if !deleted[string(k[0])+"/"+string(k[1])] {
			t.Errorf("deleted row %s/%x is not a deletion marker after repair", k[0], k[1])
		}
	}
	if len(deleted) != len(d.deletedPK) {
		t.Errorf("%d deletion markers after repair, injected %d", len(deleted), len(d.deletedPK))
	}
	// TTLs were kept: the extra rows with a TTL still have one in b.
	cr, _ := repair.NewCQLRegion(f.sessions["b"], f.ks)
	v, ok, err := cr.ReadRow(context.Background(), repairNS, []byte("x000000"), binary.BigEndian.AppendUint32(nil, 0))
	if err != nil || !ok || v.TTL <= 0 || v.TTL > 3600 {
		t.Errorf("copied TTL row in b = %+v %v %v, want a TTL in (0, 3600]", v, ok, err)
	}
	// A second run finds nothing and reads no values.
	rep2, err := r.Run(context.Background(), repairNS)
	if err != nil || rep2.RowsDiffering != 0 || rep2.RowsWritten != 0 || rep2.RunID == rep.RunID {
		t.Fatalf("second run: %+v %v", rep2, err)
	}
	for _, rs := range rep2.Regions {
		if rs.ValueFetches != 0 {
			t.Errorf("second run fetched %d values from %s", rs.ValueFetches, rs.Region)
		}
	}
	if last, ok, err := store.LastFinished(context.Background(), repairNS); err != nil || !ok || last.ID != rep2.RunID {
		t.Errorf("last finished run = %+v %v %v, want %s", last, ok, err, rep2.RunID)
	}
}

func TestRepairResumesAfterCrash(t *testing.T) {
	f := newRepairFixture(t, "a", "b", "c")
	const n = 5000
	ts := time.Now().UnixMicro()
	for _, r := range f.regions {
		f.load(t, r, baseRows(n, ts, 100))
	}
	d := injectDivergence(t, f, n, ts, 500)
	store, err := repair.NewCQLProgress(context.Background(), f.sessions["a"], f.ks)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r1, _ := repair.New(f.cqlRegions(t), repair.Options{Segments: 20, Progress: store, Owner: "first",
		OnProgress: func(p repair.Progress) {
			if p.SegmentsDone >= 7 {
				cancel() // the process "crashes" half-way
			}
		}})
	rep1, err := r1.Run(ctx, repairNS)
	if !errors.Is(err, context.Canceled) || rep1.Complete || rep1.SegmentsDone < 7 || rep1.SegmentsDone >= 20 {
		t.Fatalf("first run: %v, %+v", err, rep1)
	}
	r2, _ := repair.New(f.cqlRegions(t), repair.Options{Segments: 64, Progress: store, Owner: "second"})
	rep2, err := r2.Run(context.Background(), repairNS)
	if err != nil {
		t.Fatal(err)
	}
	if rep2.RunID != rep1.RunID || rep2.Segments != 20 || rep2.SegmentsResumed != rep1.SegmentsDone || !rep2.Complete {
		t.Fatalf("resumed run: %+v (first %+v)", rep2, rep1)
	}
	if rep2.SegmentsRepaired != 20-rep1.SegmentsDone {
		t.Errorf("second run repaired %d segments, want %d", rep2.SegmentsRepaired, 20-rep1.SegmentsDone)
	}
	if got := rep1.RowsWritten + rep2.RowsWritten; got != d.rows {
		t.Errorf("rows written over both runs = %d, injected %d", got, d.rows)
	}
	f.assertIdentical(t)
}

func TestRepairRetriesRegionCut(t *testing.T) {
	f := newRepairFixture(t, "a", "b", "c")
	const n = 3000
	ts := time.Now().UnixMicro()
	for _, r := range f.regions {
		f.load(t, r, baseRows(n, ts, 100))
	}
	d := injectDivergence(t, f, n, ts, 500)
	// Region c is reached through a fault proxy.
	p := frontRegion(t, "c")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	cs, err := cluster.Connect(ctx, proxiedRegion(t, "c", p), "")
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	regions := f.cqlRegions(t)
	cc, _ := repair.NewCQLRegion(cs, f.ks)
	regions[2] = repair.Region{Name: "c", Reader: cc, Writer: cc}
	var mu sync.Mutex
	var failures []error
	cut, healed := false, false
	r, _ := repair.New(regions, repair.Options{Segments: 12, RetryBackoff: 300 * time.Millisecond, MaxAttempts: 12,
		OnProgress: func(pr repair.Progress) {
			mu.Lock()
			defer mu.Unlock()
			if pr.Err != nil {
				failures = append(failures, pr.Err)
			}
			switch {
			case !cut && pr.SegmentsDone >= 3:
				cut = true
				if err := p.Refuse(); err != nil {
					t.Error(err)
				}
			case cut && !healed && len(failures) >= 2:
				healed = true
				if err := p.Heal(); err != nil {
					t.Error(err)
				}
			}
		}})
	rep, err := r.Run(context.Background(), repairNS)
	if err != nil {
		t.Fatalf("run with a region cut and healed: %v (failures %v)", err, failures)
	}
	if len(failures) < 2 || rep.SegmentsFailed != 0 || !rep.Complete {
		t.Fatalf("failures %d, report %+v", len(failures), rep)
	}
	var re *repair.RegionError
	if !errors.As(failures[0], &re) || re.Region != "c" {
		t.Errorf("failure %v does not name region c", failures[0])
	}
	if rep.RowsWritten != d.rows {
		// A failed attempt may have written some rows before failing; the
		// retry then finds them repaired. Every injected row is written once.
		t.Errorf("rows written = %d, injected %d", rep.RowsWritten, d.rows)
	}
	f.assertIdentical(t)
}

// writeRepairConfig writes a repaird config for the environment's regions
// a, b, c (c's contact point replaced when cAddr is set).
func writeRepairConfig(t *testing.T, ks string, regions []string, cAddr string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "home: a\nkeyspace: %s\nnamespaces: [%s]\nregions:\n", ks, repairNS)
	for _, name := range regions {
		r := region(t, name)
		hosts := r.Hosts
		if name == "c" && cAddr != "" {
			hosts = []string{cAddr}
		}
		fmt.Fprintf(&b, "  - name: %s\n    contact_points: [%q]\n    local_dc: %s\n    connect_timeout: 3s\n", name, strings.Join(hosts, `", "`), r.DC)
	}
	b.WriteString("repair:\n  segments: 8\n  interval: 1h\n")
	p := filepath.Join(t.TempDir(), "repaird.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := cli.Execute(context.Background(), args, cli.Env{Stdout: &out, Stderr: &errb, ConnectTimeout: 20 * time.Second})
	return code, out.String(), errb.String()
}

func TestRepairCLI(t *testing.T) {
	f := newRepairFixture(t, "a", "b", "c")
	ts := time.Now().UnixMicro()
	for _, r := range f.regions {
		f.load(t, r, baseRows(500, ts, 50))
	}
	d := injectDivergence(t, f, 500, ts, 1000)
	good := writeRepairConfig(t, f.ks, []string{"a", "b", "c"}, "")

	t.Run("dry run", func(t *testing.T) {
		code, out, errs := runCLI("repair", "--config", good, "--namespace", repairNS, "--dry-run")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		t.Logf("repaird repair --dry-run output:\n%s", out)
		for _, want := range []string{"dry run (nothing written)", fmt.Sprintf("%d differing, 0 written", d.rows), "a <> b:", "sample differing rows:", "segment #7"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("repair", func(t *testing.T) {
		code, out, errs := runCLI("repair", "--config", good, "--namespace", repairNS, "--segments", "4")
		if code != 0 || !strings.Contains(out, fmt.Sprintf("%d differing, %d written", d.rows, d.rows)) || !strings.Contains(out, "segments 4/4 done") {
			t.Fatalf("exit %d\n%s\n%s", code, out, errs)
		}
		t.Logf("repaird repair output:\n%s", out)
		f.assertIdentical(t)
	})
	store, err := repair.NewCQLProgress(context.Background(), f.sessions["a"], f.ks)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("resume says --segments is ignored", func(t *testing.T) {
		run, err := store.Begin(context.Background(), repairNS, 8) // an unfinished run of 8 segments
		if err != nil {
			t.Fatal(err)
		}
		code, out, errs := runCLI("repair", "--config", good, "--namespace", repairNS, "--segments", "4")
		warning := fmt.Sprintf("WARNING: resuming run %s with its 8 segments; --segments 4 ignored", run.ID)
		if code != 0 || !strings.HasPrefix(out, warning) || !strings.Contains(out, "segments 8/8 done") || !strings.Contains(out, "resumed run "+run.ID) {
			t.Fatalf("exit %d, want output starting with %q and the 8 segments done:\n%s\n%s", code, warning, out, errs)
		}
	})
	t.Run("fresh abandons the unfinished run", func(t *testing.T) {
		run, err := store.Begin(context.Background(), repairNS, 8)
		if err != nil {
			t.Fatal(err)
		}
		code, out, errs := runCLI("repair", "--config", good, "--namespace", repairNS, "--segments", "4", "--fresh")
		if code != 0 || !strings.Contains(out, "segments 4/4 done (0 resumed") || !strings.Contains(out, "WARNING: abandoned unfinished run "+run.ID) {
			t.Fatalf("exit %d\n%s\n%s", code, out, errs)
		}
		last, ok, err := store.LastFinished(context.Background(), repairNS)
		if err != nil || !ok || last.ID == run.ID || last.Segments != 4 {
			t.Fatalf("last finished run = %+v %v %v; want a new 4-segment run", last, ok, err)
		}
	})
	oneLineErr := func(t *testing.T, errs, want string) {
		t.Helper()
		lines := strings.Split(strings.TrimSpace(errs), "\n")
		last := lines[len(lines)-1]
		if !strings.HasPrefix(last, "repaird: error: ") || !strings.Contains(last, want) {
			t.Errorf("last stderr line %q does not contain %q", last, want)
		}
		if strings.Contains(errs, "goroutine ") {
			t.Errorf("stack trace in stderr: %s", errs)
		}
	}
	t.Run("unknown namespace", func(t *testing.T) {
		code, _, errs := runCLI("repair", "--config", good, "--namespace", "nosuch")
		if code != 1 {
			t.Errorf("exit %d", code)
		}
		oneLineErr(t, errs, fmt.Sprintf("unknown namespace: table %s.nosuch does not exist", f.ks))
	})
	t.Run("namespace missing in one region", func(t *testing.T) {
		s := f.sessions["c"]
		if err := s.Query(schema.CreateTable(f.ks, "onlyc", schema.DefaultRetention)).Exec(); err != nil {
			t.Fatal(err)
		}
		code, _, errs := runCLI("repair", "--config", good, "--namespace", "onlyc")
		if code != 1 {
			t.Errorf("exit %d", code)
		}
		oneLineErr(t, errs, `region "a": describe: unknown namespace`)
	})
	t.Run("one region", func(t *testing.T) {
		code, _, errs := runCLI("repair", "--config", writeRepairConfig(t, f.ks, []string{"a"}, ""), "--namespace", repairNS)
		if code != 1 {
			t.Errorf("exit %d", code)
		}
		oneLineErr(t, errs, "repair needs at least 2 regions, the file lists 1")
	})
	t.Run("region unreachable at start", func(t *testing.T) {
		code, _, errs := runCLI("repair", "--config", writeRepairConfig(t, f.ks, []string{"a", "b", "c"}, "127.0.0.1:1"), "--namespace", repairNS)
		if code != 1 {
			t.Errorf("exit %d", code)
		}
		oneLineErr(t, errs, `region unreachable: region "c" (contact points 127.0.0.1:1)`)
	})
}

func TestRepairLeasesAreLWTWithTTL(t *testing.T) {
	f := newRepairFixture(t, "a")
	ctx := context.Background()
	store, err := repair.NewCQLProgress(ctx, f.sessions["a"], f.ks)
	if err != nil {
		t.Fatal(err)
	}
	run, err := store.Begin(ctx, repairNS, 8)
	if err != nil {
		t.Fatal(err)
	}
	if run.Resumed {
		t.Fatalf("first Begin = %+v: a created run is marked resumed", run)
	}
	if again, err := store.Begin(ctx, repairNS, 99); err != nil || again.ID != run.ID || again.Segments != 8 || !again.Resumed {
		t.Fatalf("second Begin = %+v, %v; want run %s with 8 segments, resumed", again, err, run.ID)
	}
	mustBe := func(what string, got bool, err error, want bool) {
		t.Helper()
		if err != nil || got != want {
			t.Fatalf("%s = %v, %v; want %v", what, got, err, want)
		}
	}
	ok, err := store.Acquire(ctx, run, 3, "x", 2*time.Second)
	mustBe("x acquires", ok, err, true)
	ok, err = store.Acquire(ctx, run, 3, "y", 2*time.Second)
	mustBe("y acquires a held lease", ok, err, false)
	ok, err = store.Acquire(ctx, run, 3, "x", 2*time.Second)
	mustBe("x re-acquires its own", ok, err, true)
	ok, err = store.Renew(ctx, run, 3, "y", 2*time.Second)
	mustBe("y renews x's lease", ok, err, false)
	time.Sleep(2500 * time.Millisecond) // the lease's TTL runs out
	ok, err = store.Renew(ctx, run, 3, "x", 2*time.Second)
	mustBe("x renews an expired lease", ok, err, false)
	ok, err = store.Acquire(ctx, run, 3, "y", time.Minute)
	mustBe("y acquires the expired lease", ok, err, true)
	if owner, held, err := store.LeaseOwner(ctx, run, 3); err != nil || !held || owner != "y" {
		t.Fatalf("LeaseOwner = %q, %v, %v; want y's live lease", owner, held, err)
	}
	if owner, held, err := store.LeaseOwner(ctx, run, 4); err != nil || held {
		t.Fatalf("LeaseOwner of an unleased segment = %q, %v, %v; want none", owner, held, err)
	}
	if err := store.Release(ctx, run, 3, "x"); err != nil {
		t.Fatal(err)
	}
	ok, err = store.Acquire(ctx, run, 3, "z", time.Minute)
	mustBe("z acquires after x's (no-op) release", ok, err, false)
	if err := store.Release(ctx, run, 3, "y"); err != nil {
		t.Fatal(err)
	}
	ok, err = store.Acquire(ctx, run, 3, "z", time.Minute)
	mustBe("z acquires after y's release", ok, err, true)
	if err := store.Record(ctx, run, repair.SegmentRecord{Index: 3, Done: true, FinishedAt: time.Now(), Owner: "z", RowsScanned: 5}); err != nil {
		t.Fatal(err)
	}
	if err := store.Record(ctx, run, repair.SegmentRecord{Index: 3, Owner: "w", Attempts: 2, LastError: "late"}); err != nil {
		t.Fatal(err)
	}
	recs, err := store.Segments(ctx, run)
	if err != nil || !recs[3].Done || recs[3].RowsScanned != 5 || recs[3].LastError != "late" {
		t.Fatalf("segment records = %+v, %v", recs, err)
	}
	if err := store.Finish(ctx, run, time.Now()); err != nil {
		t.Fatal(err)
	}
	next, err := store.Begin(ctx, repairNS, 4)
	if err != nil || next.ID == run.ID || next.Segments != 4 {
		t.Fatalf("Begin after Finish = %+v, %v", next, err)
	}
	last, ok, err := store.LastFinished(ctx, repairNS)
	if err != nil || !ok || last.ID != run.ID || last.FinishedAt.IsZero() || !last.StartedAt.Equal(run.StartedAt) {
		t.Fatalf("LastFinished = %+v %v %v; want run %s started %v", last, ok, err, run.ID, run.StartedAt)
	}
	// Abandoning the current run makes the next Begin create a new one;
	// abandoning a run that is no longer current does nothing.
	if err := store.Abandon(ctx, next); err != nil {
		t.Fatal(err)
	}
	third, err := store.Begin(ctx, repairNS, 2)
	if err != nil || third.ID == next.ID || third.Resumed || third.Segments != 2 {
		t.Fatalf("Begin after Abandon = %+v, %v", third, err)
	}
	if err := store.Abandon(ctx, next); err != nil {
		t.Fatal(err)
	}
	if cur, err := store.Begin(ctx, repairNS, 5); err != nil || cur.ID != third.ID {
		t.Fatalf("abandoning an old run ended the current one: %+v, %v", cur, err)
	}
	if last, _, _ := store.LastFinished(ctx, repairNS); last.ID != run.ID {
		t.Errorf("an abandoned run counts as finished: %+v", last)
	}
}

// A table comment whose retention cannot be read does not stop repair but
// is reported, naming the region, the table and the comment.
func TestRepairWarnsUnreadableRetention(t *testing.T) {
	f := newRepairFixture(t, "a", "b")
	ts := time.Now().UnixMicro()
	for _, r := range f.regions {
		f.load(t, r, baseRows(100, ts, 20))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := f.sessions["b"]
	if err := s.Query(fmt.Sprintf(`ALTER TABLE %s.%s WITH comment = 'tidemark:v1 retention=ten-days'`, f.ks, repairNS)).ExecContext(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.AwaitSchemaAgreement(ctx); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI("repair", "--config", writeRepairConfig(t, f.ks, f.regions, ""), "--namespace", repairNS)
	want := fmt.Sprintf(`WARNING: region "b": table %s.%s: table comment "tidemark:v1 retention=ten-days": bad retention`, f.ks, repairNS)
	if code != 0 || !strings.Contains(out, want) || !strings.Contains(out, ": complete,") {
		t.Fatalf("exit %d, want a complete repair and %q:\n%s\n%s", code, want, out, errs)
	}
}

func TestRepairDaemonsShareRun(t *testing.T) {
	f := newRepairFixture(t, "a", "b", "c")
	const n = 4000
	ts := time.Now().UnixMicro()
	for _, r := range f.regions {
		f.load(t, r, baseRows(n, ts, 64))
	}
	d := injectDivergence(t, f, n, ts, 500)
	store, err := repair.NewCQLProgress(context.Background(), f.sessions["a"], f.ks)
	if err != nil {
		t.Fatal(err)
	}
	reps := make([]*repair.Report, 3)
	var wg sync.WaitGroup
	for i := range reps {
		r, _ := repair.New(f.cqlRegions(t), repair.Options{Segments: 24, Progress: store, Owner: fmt.Sprintf("daemon%d", i), LeaseTTL: 5 * time.Second})
		wg.Go(func() {
			var err error
			if reps[i], err = r.Run(context.Background(), repairNS); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	segs, written := 0, int64(0)
	for _, rp := range reps {
		segs += rp.SegmentsRepaired
		written += rp.RowsWritten
		if rp.RunID != reps[0].RunID || !rp.Complete {
			t.Errorf("daemon report %+v", rp)
		}
	}
	if segs != 24 {
		t.Errorf("segments repaired by the three daemons = %d, want 24 (each once)", segs)
	}
	if written != d.rows {
		t.Errorf("rows written = %d, injected %d", written, d.rows)
	}
	f.assertIdentical(t)
}

func TestRepairDaemonServe(t *testing.T) {
	f := newRepairFixture(t, "a", "b", "c")
	ts := time.Now().UnixMicro()
	for _, r := range f.regions {
		f.load(t, r, baseRows(1000, ts, 64))
	}
	d := injectDivergence(t, f, 1000, ts, 1000)
	path := writeRepairConfig(t, f.ks, []string{"a", "b", "c"}, "")
	body, _ := os.ReadFile(path)
	if err := os.WriteFile(path, append(body, []byte("http:\n  listen: 127.0.0.1:0\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	dm, err := daemon.New(cfg, daemon.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // a failing test must not leave its daemon running
	done := make(chan error, 1)
	go func() { done <- dm.Run(ctx) }()
	store, err := repair.NewCQLProgress(context.Background(), f.sessions["a"], f.ks)
	if err != nil {
		t.Fatal(err)
	}
	// The last full repair is the run's start, in /status and the gauge.
	checkLastFull := func(dm *daemon.Daemon) error {
		last, ok, err := store.LastFinished(context.Background(), repairNS)
		if err != nil || !ok {
			return fmt.Errorf("no finished run in the store (%v)", err)
		}
		ns := dm.Status().Namespaces[repairNS]
		if ns == nil || !ns.LastFullRepair.Equal(last.StartedAt) || ns.LastFullRepairRun != last.ID {
			return fmt.Errorf("/status last full repair %+v, want run %s started %v", ns, last.ID, last.StartedAt)
		}
		want := float64(last.StartedAt.UnixNano()) / 1e9
		mfs, err := dm.Registry().Gather()
		if err != nil {
			return err
		}
		for _, mf := range mfs {
			if mf.GetName() != "tidemark_repair_last_full_repair_timestamp_seconds" {
				continue
			}
			for _, m := range mf.GetMetric() {
				if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == repairNS {
					if got := m.GetGauge().GetValue(); got != want {
						return fmt.Errorf("gauge = %v, want the run's start %v", got, want)
					}
					return nil
				}
			}
		}
		return fmt.Errorf("no tidemark_repair_last_full_repair_timestamp_seconds series for %s", repairNS)
	}
	eventually(t, 60*time.Second, "a full repair in /status", func() error {
		st := dm.Status()
		ns := st.Namespaces[repairNS]
		if ns == nil || ns.LastFullRepair.IsZero() || ns.LastRun == nil {
			return fmt.Errorf("status %+v", ns)
		}
		if ns.LastRun.RowsWritten != d.rows {
			return fmt.Errorf("rows written %d, injected %d", ns.LastRun.RowsWritten, d.rows)
		}
		if ns.Retention != schema.DefaultRetention.String() || ns.Warning != "" {
			return fmt.Errorf("retention %q warning %q", ns.Retention, ns.Warning)
		}
		if !st.Regions["c"].Connected {
			return fmt.Errorf("region c not connected")
		}
		return checkLastFull(dm)
	})
	stop := func(cancel func(), done chan error) {
		t.Helper()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("serve stopped with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("serve did not stop after cancel")
		}
	}
	stop(cancel, done)
	f.assertIdentical(t)

	// Restarted with region c unreachable, the daemon cannot run a repair
	// but still publishes the last full repair from the progress store.
	cfg2, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range cfg2.Regions {
		if cfg2.Regions[i].Name == "c" {
			cfg2.Regions[i].ContactPoints = []string{"127.0.0.1:1"}
		}
	}
	dm2, err := daemon.New(cfg2, daemon.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	t.Cleanup(cancel2)
	done2 := make(chan error, 1)
	go func() { done2 <- dm2.Run(ctx2) }()
	eventually(t, 60*time.Second, "the last full repair restored after a restart", func() error {
		if dm2.Status().Regions["c"].Connected {
			t.Fatal("region c connected through an unreachable address")
		}
		return checkLastFull(dm2)
	})
	stop(cancel2, done2)
}
