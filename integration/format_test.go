package integration

// Row format 2 against real Cassandra: empty values, tables created before
// the expires column, and the absolute expiry every region agrees on.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/quorum"
	"github.com/tidemark/tidemark/store"
)

// valueCellNull reports whether a region holds the row's value cell as a
// null (a cell tombstone has no writetime).
func valueCellNull(t *testing.T, regionName, ks string, pk, ck []byte) bool {
	t.Helper()
	s := adminSession(t, region(t, regionName))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wt *int64
	if err := s.Query(fmt.Sprintf(`SELECT writetime(value) FROM %s.%s WHERE pk = ? AND ck = ?`, ks, storeNS), pk, ck).
		ScanContext(ctx, &wt); err != nil {
		t.Fatalf("read %s in %s: %v", pk, regionName, err)
	}
	return wt == nil
}

// TestStoreEmptyValueRoundTrips: an empty value is written as an empty
// blob and read back as an empty (non-nil) value; read repair and the hint
// path write it as an empty blob too, never as a null (the driver returns
// an empty blob as nil, and the code before the fix wrote that nil back: a
// cell tombstone in the repaired region).
func TestStoreEmptyValueRoundTrips(t *testing.T) {
	t.Parallel()
	ks := newKeyspace(t, "a", "b", "c")
	e := openStore(t, ks, []string{"a", "b", "c"}, nil)
	ctx := context.Background()
	pk, ck := []byte("empty"), []byte("v")
	if err := e.proxies["c"].Refuse(); err != nil {
		t.Fatal(err)
	}
	if err := e.ns.Put(ctx, pk, ck, []byte{}, store.WithConsistency(quorum.Quorum)); err != nil {
		t.Fatal(err)
	}
	if err := e.proxies["c"].Heal(); err != nil {
		t.Fatal(err)
	}
	// c missed it; a read at All (once c answers again) repairs c.
	eventually(t, time.Minute, "c answers and is repaired", func() error {
		it, err := e.ns.Get(ctx, pk, ck, store.WithConsistency(quorum.All))
		if err != nil {
			return err
		}
		if it.Value == nil || len(it.Value) != 0 {
			return fmt.Errorf("Get returned %q (nil %v), want an empty value", it.Value, it.Value == nil)
		}
		if row := readRegionRow(t, "c", ks, pk, ck); !row.found || row.deleted {
			return fmt.Errorf("c holds %+v", row)
		}
		return nil
	})
	for _, r := range []string{"a", "b", "c"} {
		if valueCellNull(t, r, ks, pk, ck) {
			t.Errorf("region %s holds the empty value as a null (a cell tombstone)", r)
		}
	}
}

// TestStoreUpgradesOldTable: a namespace whose table was created before the
// expires column existed gets it from CreateNamespace, and its old rows
// (expires null) stay readable with their expiry taken from their TTL.
func TestStoreUpgradesOldTable(t *testing.T) {
	t.Parallel()
	ks := newKeyspace(t, "a", "b")
	old := fmt.Sprintf(`CREATE TABLE %s.%s (pk blob, ck blob, value blob, deleted boolean, digest bigint, PRIMARY KEY ((pk), ck)) WITH comment = '%s retention=%d'`,
		ks, storeNS, schema.CommentPrefix, int(schema.DefaultRetention/time.Second))
	ts := time.Now().UnixMicro()
	for _, r := range []string{"a", "b"} {
		s := adminSession(t, region(t, r))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := s.Query(old).ExecContext(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.AwaitSchemaAgreement(ctx); err != nil {
			t.Fatal(err)
		}
		// A row as the old format wrote it: no expires column, a TTL.
		if err := s.Query(fmt.Sprintf(`INSERT INTO %s.%s (pk, ck, value, deleted, digest) VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ? AND TTL 3600`, ks, storeNS),
			[]byte("old"), []byte("row"), []byte("v1"), false, schema.Digest(false, []byte("v1")), ts).ExecContext(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	e := openStore(t, ks, []string{"a", "b"}, nil) // CreateNamespace upgrades the table
	ctx := context.Background()
	it, err := e.ns.Get(ctx, []byte("old"), []byte("row"), store.WithConsistency(quorum.All))
	if err != nil || string(it.Value) != "v1" || it.TTL < 59*time.Minute || it.TTL > time.Hour {
		t.Fatalf("old row: %+v %v, want v1 with about an hour to live", it, err)
	}
	if err := e.ns.Put(ctx, []byte("new"), []byte("row"), []byte("v2"), store.WithTTL(time.Hour), store.WithConsistency(quorum.All)); err != nil {
		t.Fatalf("Put into the upgraded table: %v", err)
	}
	a, b := readRegionRow(t, "a", ks, []byte("new"), []byte("row")), readRegionRow(t, "b", ks, []byte("new"), []byte("row"))
	if a.expires == 0 || a.expires != b.expires {
		t.Fatalf("expires column a=%d b=%d, want one absolute expiry in both", a.expires, b.expires)
	}
}
