package integration

// A replay-only repaird (one region, no namespaces) whose region is
// unreachable when it starts: the hint lag and the oldest hint's age are
// there from the start (in /metrics, /status, /v1/hints and `repaird
// hints`), replay is paused, and once the region answers the hints are
// replayed and the lag falls to 0.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/cmd/repaird/config"
	"github.com/tidemark/tidemark/cmd/repaird/daemon"
	"github.com/tidemark/tidemark/hints/record"
)

func TestReplayOnlyDaemonReportsHintsFromTheStart(t *testing.T) {
	t.Parallel()
	start := time.Now()
	ks := newKeyspace(t, "c")
	hintsTable(t, ks, "c")
	prefix := newTopicPrefix(t)
	p := frontRegion(t, "c")
	if err := p.Refuse(); err != nil {
		t.Fatal(err)
	}
	producer := hintsProducer(t, prefix, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const n = 50
	ts := time.Now().UnixMicro()
	for i := 0; i < n; i++ {
		h := record.Hint{Target: "c", Origin: "a", Namespace: hintsNS, PK: fmt.Appendf(nil, "pk%03d", i), CK: []byte("ck"),
			Value: []byte("v"), Timestamp: ts + int64(i), CreatedAt: time.Now()}
		if err := producer.Hint(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	r := region(t, "c")
	var addrMap strings.Builder
	for from, to := range p.AddressMap() {
		fmt.Fprintf(&addrMap, "%q: %q, ", from, to)
	}
	yaml := fmt.Sprintf("home: c\nkeyspace: %s\nregions:\n  - name: c\n    contact_points: [%q]\n    local_dc: %s\n    address_map: {%s}\n    connect_timeout: 2s\nhints:\n  brokers: [%q]\n  topic_prefix: %q\n  group: %q\nhttp:\n  listen: 127.0.0.1:0\n",
		ks, p.ContactPoints()[0], r.DC, strings.TrimSuffix(addrMap.String(), ", "), testEnv(t).KafkaBrokers()[0], prefix, strings.TrimSuffix(prefix, ".")+"-ro")
	path := filepath.Join(t.TempDir(), "repaird.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runCLI("validate", "--config", path); code != 0 || !strings.Contains(out, "replay only") {
		t.Fatalf("validate a replay-only config: exit %d\n%s\n%s", code, out, errs)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	dm, err := daemon.New(cfg, daemon.Options{RetryDelay: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- dm.Run(rctx) }()
	defer func() {
		rcancel()
		<-done
	}()
	get := getter(t, dm)
	// While c refuses connections: the series exist, replay is paused.
	eventually(t, 60*time.Second, "hint lag and age reported while c is unreachable", func() error {
		m := get("/metrics")
		for _, want := range []string{`tidemark_hints_consumer_lag{region="c"}`, `tidemark_hints_oldest_unreplayed_age_seconds{region="c"}`, `tidemark_hints_replay_paused{region="c"} 1`} {
			if !strings.Contains(m, want) {
				return fmt.Errorf("/metrics lacks %s", want)
			}
		}
		st := dm.Status()
		if st.Regions["c"].Connected || len(st.Hints) != 1 || !st.Hints[0].Paused || st.Hints[0].OldestAgeSeconds <= 0 {
			return fmt.Errorf("/status %+v", st.Hints)
		}
		return nil
	})
	if !strings.Contains(get("/status"), `"oldest_age_seconds"`) || !strings.Contains(get("/v1/hints"), `"lag"`) {
		t.Error("/status or /v1/hints lacks the hint lag and age")
	}
	code, out, _ := runCLI("hints", "--addr", "http://"+dm.Addr())
	if code != 0 || !strings.Contains(out, "c") || !strings.Contains(out, "paused") {
		t.Errorf("repaird hints while c is down: exit %d\n%s", code, out)
	}
	t.Logf("repaird hints while c is down:\n%s", out)

	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}
	c := directSession(t, "c", ks)
	eventually(t, 90*time.Second, "the hints are replayed once c answers", func() error {
		if got := countRows(t, c, ks); got != n {
			return fmt.Errorf("%d rows in c", got)
		}
		hv := dm.Status().Hints
		if len(hv) != 1 || hv[0].Paused || hv[0].Replayed != n {
			return fmt.Errorf("hints %+v", hv)
		}
		return nil
	})
	eventually(t, 30*time.Second, "the lag falls to 0", func() error {
		if hv := dm.Status().Hints; hv[0].Lag == nil || *hv[0].Lag != 0 {
			return fmt.Errorf("lag %v", hv[0].Lag)
		}
		return nil
	})
	t.Logf("replay-only daemon test: %v", time.Since(start).Round(time.Second))
}
