package integration

// repaird serve end to end: the daemon replays the hints of the regions in
// hints.regions from Kafka, authenticating them with the configured keys.

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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
	fmt.Fprintf(&b, "home: a\nkeyspace: %s\nnamespaces: [%s]\n%s", ks, hintsNS, regionsYAML(t, "a", "c"))
	fmt.Fprintf(&b, "repair:\n  interval: 1h\nhints:\n  brokers: [%q]\n  topic_prefix: %q\n  group: %q\n  regions: [c]\n  require_hmac: true\n  hmac_keys:\n    - id: k1\n      secret: %s\nhttp:\n  listen: 127.0.0.1:0\n",
		testEnv(t).KafkaBrokers()[0], prefix, strings.TrimSuffix(prefix, ".")+"-repaird", base64.StdEncoding.EncodeToString(secret))
	sd := serveDaemon(t, b.String())
	dm := sd.Daemon
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
	if err := sd.stop(); err != nil {
		t.Fatalf("serve stopped with %v", err)
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
