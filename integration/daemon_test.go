package integration

// repaird serve end to end: the daemon replays the hints of the regions in
// hints.regions from Kafka, authenticating them with the configured keys.

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/cmd/repaird/config"
	"github.com/tidemark/tidemark/cmd/repaird/daemon"
	"github.com/tidemark/tidemark/hints/record"
)

func TestRepairdServeReplaysSignedHints(t *testing.T) {
	t.Parallel()
	ks := newKeyspace(t, "a", "c")
	hintsTable(t, ks, "a", "c")
	prefix := newTopicPrefix(t)
	secret := []byte("0123456789abcdef0123456789abcdef")
	other := []byte("fedcba9876543210fedcba9876543210")
	signed, err := record.NewKeyring(record.KeyringConfig{Current: record.Key{ID: "k1", Secret: secret}})
	if err != nil {
		t.Fatal(err)
	}
	forged, err := record.NewKeyring(record.KeyringConfig{Current: record.Key{ID: "k1", Secret: other}})
	if err != nil {
		t.Fatal(err)
	}
	good := hintsProducer(t, prefix, signed)
	bad := hintsProducer(t, prefix, forged)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const n = 200
	ts := time.Now().UnixMicro()
	for i := 0; i < n; i++ {
		h := record.Hint{Target: "c", Origin: "a", Namespace: hintsNS, PK: fmt.Appendf(nil, "pk%03d", i), CK: []byte("ck"),
			Value: fmt.Appendf(nil, "v%d", i), Timestamp: ts + int64(i), CreatedAt: time.Now()}
		if err := good.Hint(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	// A hint signed with a key the daemon does not hold must never be applied.
	if err := bad.Hint(ctx, record.Hint{Target: "c", Origin: "a", Namespace: hintsNS, PK: []byte("forged"), CK: []byte("ck"),
		Value: []byte("evil"), Timestamp: ts, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "home: a\nkeyspace: %s\nnamespaces: [%s]\nregions:\n", ks, hintsNS)
	for _, name := range []string{"a", "c"} {
		r := region(t, name)
		fmt.Fprintf(&b, "  - name: %s\n    contact_points: [%q]\n    local_dc: %s\n", name, r.Hosts[0], r.DC)
	}
	fmt.Fprintf(&b, "repair:\n  interval: 1h\nhints:\n  brokers: [%q]\n  topic_prefix: %q\n  group: %q\n  regions: [c]\n  require_hmac: true\n  hmac_keys:\n    - id: k1\n      secret: %s\nhttp:\n  listen: 127.0.0.1:0\n",
		testEnv(t).KafkaBrokers()[0], prefix, strings.TrimSuffix(prefix, ".")+"-repaird", base64.StdEncoding.EncodeToString(secret))
	path := filepath.Join(t.TempDir(), "repaird.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
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
	rctx, rcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- dm.Run(rctx) }()
	c := directSession(t, "c", ks)
	eventually(t, 90*time.Second, "region c holds every signed hint", func() error {
		if got := countRows(t, c, ks); got != n {
			return fmt.Errorf("%d rows in c, want %d", got, n)
		}
		return nil
	})
	if !dm.Status().Replaying["c"] {
		t.Errorf("/status does not show region c replaying: %+v", dm.Status().Replaying)
	}
	srv := getter(t, dm)
	eventually(t, 30*time.Second, "metrics show the replay and the dead letter", func() error {
		metrics := srv("/metrics")
		if !strings.Contains(metrics, `tidemark_hints_replayed_total{region="c"} 200`) {
			return fmt.Errorf("replayed counter missing or wrong")
		}
		if !strings.Contains(metrics, `tidemark_hints_dead_lettered_total{reason="unauthenticated",region="c"} 1`) {
			return fmt.Errorf("dead-letter counter missing or wrong")
		}
		return nil
	})
	var v []byte
	if err := c.Query(fmt.Sprintf(`SELECT value FROM %s.%s WHERE pk = ? AND ck = ?`, ks, hintsNS), []byte("forged"), []byte("ck")).Scan(&v); err == nil {
		t.Fatalf("a hint signed with an unknown key was applied: %q", v)
	}
	rcancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve stopped with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop after cancel")
	}
}

// getter returns a function that GETs a path from the daemon's HTTP handler
// and returns the body.
func getter(t *testing.T, dm *daemon.Daemon) func(path string) string {
	h := dm.Handler()
	return func(path string) string {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Body.String()
	}
}
