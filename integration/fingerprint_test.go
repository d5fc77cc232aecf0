package integration

// Segment fingerprints against the real regions (docs/repair.md,
// "Fingerprints"): Cassandra's count(*), count(fp) and sum(fp) over a
// token range tell repair which segments are in sync without a digest
// scan, and a table written before the fp column existed is repaired by
// digest scans.

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/repair"
)

func bytesRead(rep *repair.Report) (n int64) {
	for _, rs := range rep.Regions {
		n += rs.BytesRead
	}
	return n
}

func TestFingerprintInSyncAndOneRowAmong100k(t *testing.T) {
	f := newRepairFixture(t, "a", "b")
	const n = 100_000
	ts := time.Now().UnixMicro()
	start := time.Now()
	rows := baseRows(n, ts, 100)
	// A few markers and rows with a TTL: they have fingerprints too.
	for i := 0; i < n; i += 997 {
		rows[i].deleted, rows[i].value = true, nil
	}
	for i := 5; i < n; i += 1009 {
		rows[i].ttl = 3600
	}
	f.load(t, "a", rows)
	f.load(t, "b", rows)
	t.Logf("loaded %d rows x 2 regions in %s", n, time.Since(start).Round(time.Millisecond))

	r, err := repair.New(f.cqlRegions(t), repair.Options{Segments: 16, Parallelism: 2})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Run(context.Background(), repairNS)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("in sync: %+v", rep.Regions)
	if rep.SegmentsInSync != 16 || rep.RowsInSync != n || rep.RowsScanned != 0 || rep.RangesScanned != 0 || rep.RowsDiffering != 0 || !rep.Complete {
		t.Fatalf("report: %d segments and %d rows in sync, %d rows scanned in %d ranges, %d differing; want 16, %d, 0, 0, 0",
			rep.SegmentsInSync, rep.RowsInSync, rep.RowsScanned, rep.RangesScanned, rep.RowsDiffering, n)
	}
	if b := bytesRead(rep); b != 2*16*6*12 {
		t.Errorf("read %d bytes, want %d (one aggregate of six bigints per segment and region)", b, 2*16*6*12)
	}

	// One row differs: region b misses its newest write.
	pk, ck := rowKey(54321)
	f.load(t, "a", []repairRow{{pk: pk, ck: ck, value: []byte("newer"), ts: ts + 100}})
	rep, err = r.Run(context.Background(), repairNS)
	if err != nil {
		t.Fatal(err)
	}
	var queries int64
	for _, rs := range rep.Regions {
		queries += rs.FingerprintQueries
	}
	t.Logf("one row differing: %d rows scanned in %d ranges, %d aggregate queries, %d bytes read (%.3f B/row)",
		rep.RowsScanned, rep.RangesScanned, queries, bytesRead(rep), float64(bytesRead(rep))/n)
	if rep.RowsDiffering != 1 || rep.RowsWritten != 1 || rep.SegmentsInSync != 15 {
		t.Fatalf("report: %d differing, %d written, %d segments in sync; want 1, 1, 15", rep.RowsDiffering, rep.RowsWritten, rep.SegmentsInSync)
	}
	if rep.RowsScanned > repair.DefaultFingerprintLeafRows || rep.RowsScanned+rep.RowsInSync != n {
		t.Errorf("scanned %d rows (want at most %d), %d in sync (want the rest of %d)", rep.RowsScanned, repair.DefaultFingerprintLeafRows, rep.RowsInSync, n)
	}
	if b := bytesRead(rep); b > n/10 { // a digest scan reads 136 bytes per row
		t.Errorf("read %d bytes to find one row among %d, want at most %d (0.1 B/row)", b, n, n/10)
	}
	cr, _ := repair.NewCQLRegion(f.sessions["b"], f.ks)
	if v, ok, err := cr.ReadRow(context.Background(), repairNS, pk, ck); err != nil || !ok || string(v.Value) != "newer" || v.Timestamp != ts+100 {
		t.Fatalf("region b holds %+v (found %v, %v), want the newer write", v, ok, err)
	}
	rep, err = r.Run(context.Background(), repairNS)
	if err != nil || rep.SegmentsInSync != 16 || rep.RowsScanned != 0 {
		t.Fatalf("after the repair: %d segments in sync, %d rows scanned (%v); want 16, 0", rep.SegmentsInSync, rep.RowsScanned, err)
	}
}

// A table created before the fp column existed, its rows written without
// fingerprints: a dry run (which does not alter the table) falls back to
// digest scans; a repair adds the column, repairs by digest scans the
// ranges that hold rows without fingerprints, and backfills them, so that
// the next run finds them in sync without a scan.
func TestFingerprintTableWithoutColumn(t *testing.T) {
	regions := []string{"a", "b"}
	ks := newKeyspace(t, regions...)
	f := &repairFixture{ks: ks, regions: regions, sessions: map[string]*gocql.Session{}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	oldInsert := fmt.Sprintf(`INSERT INTO %s.%s (pk, ck, value, deleted, digest, expires) VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ? AND TTL ?`, ks, repairNS)
	const n = 2000
	ts := time.Now().UnixMicro()
	for _, name := range regions {
		s := adminSession(t, region(t, name))
		f.sessions[name] = s
		// The shape of row format 2, before fingerprints.
		ddl := fmt.Sprintf(`CREATE TABLE %s.%s (pk blob, ck blob, value blob, deleted boolean, digest bigint, expires bigint, PRIMARY KEY ((pk), ck)) WITH comment = '%s retention=%d'`,
			ks, repairNS, schema.CommentPrefix, int64(schema.DefaultRetention/time.Second))
		if err := s.Query(ddl).ExecContext(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.AwaitSchemaAgreement(ctx); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			pk, ck := rowKey(i)
			v := value(i, 0, 50)
			if name == "b" && i%100 == 7 {
				v = value(i, 1, 50) // b holds newer versions of 20 rows
			}
			wts := ts
			if name == "b" && i%100 == 7 {
				wts = ts + 10
			}
			if err := s.Query(oldInsert, pk, ck, v, false, schema.Digest(false, v), int64(0), wts, 0).ExecContext(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}

	dry, err := repair.New(f.cqlRegions(t), repair.Options{Segments: 4, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	drep, err := dry.Run(ctx, repairNS)
	if err != nil {
		t.Fatal(err)
	}
	if drep.RowsDiffering != 20 || drep.RowsScanned != n || drep.SegmentsInSync != 0 {
		t.Fatalf("dry run: %d differing, %d scanned, %d segments in sync; want 20, %d, 0", drep.RowsDiffering, drep.RowsScanned, drep.SegmentsInSync, n)
	}

	r, err := repair.New(f.cqlRegions(t), repair.Options{Segments: 4})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Run(ctx, repairNS)
	if err != nil {
		t.Fatal(err)
	}
	if rep.RowsDiffering != 20 || rep.RowsWritten != 20 || rep.SegmentsInSync != 0 || rep.RowsScanned != n {
		t.Fatalf("repair: %d differing, %d written, %d segments in sync, %d scanned; want 20, 20, 0, %d", rep.RowsDiffering, rep.RowsWritten, rep.SegmentsInSync, rep.RowsScanned, n)
	}
	for _, name := range regions {
		var cols []string
		iter := f.sessions[name].Query(schema.SelectColumns, ks, repairNS).IterContext(ctx)
		var c string
		for iter.Scan(&c) {
			cols = append(cols, c)
		}
		if err := iter.Close(); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(cols, "fp") {
			t.Errorf("region %s: columns %v, want fp added by the repair", name, cols)
		}
	}
	all := f.assertIdentical(t)
	if len(all) != n {
		t.Fatalf("%d rows after the repair, want %d", len(all), n)
	}
	// The 20 rows repair wrote carry fingerprints in region a; every other
	// row, in both regions, got its fingerprint from the backfill.
	if want := int64(2*n - 20); rep.FingerprintsBackfilled != want {
		t.Errorf("backfilled %d rows, want %d (all but the 20 repair wrote)", rep.FingerprintsBackfilled, want)
	}
	// So the next run finds every segment in sync by its fingerprints and
	// scans nothing: region a's 20 repaired rows (fp written by repair)
	// and region b's same versions (fp written by the backfill) sum alike.
	rep, err = r.Run(ctx, repairNS)
	if err != nil || rep.RowsDiffering != 0 || rep.RowsScanned != 0 || rep.SegmentsInSync != 4 || rep.FingerprintsBackfilled != 0 {
		t.Fatalf("second run: %d differing, %d scanned, %d segments in sync, %d backfilled (%v); want 0, 0, 4, 0",
			rep.RowsDiffering, rep.RowsScanned, rep.SegmentsInSync, rep.FingerprintsBackfilled, err)
	}
}
