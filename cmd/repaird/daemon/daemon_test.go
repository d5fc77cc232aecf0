package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/cmd/repaird/config"
	"github.com/tidemark/tidemark/internal/cluster"
)

func TestSuperviseStopsAllOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var stopped atomic.Int32
	w := func(ctx context.Context) error { <-ctx.Done(); stopped.Add(1); return nil }
	done := make(chan error)
	go func() { done <- Supervise(ctx, []Worker{{"a", w}, {"b", w}, {"c", w}}) }()
	cancel()
	if err := <-done; err != nil || stopped.Load() != 3 {
		t.Fatalf("Supervise = %v, %d stopped", err, stopped.Load())
	}
}

func TestSuperviseFailureStopsOthers(t *testing.T) {
	boom := errors.New("boom")
	var stopped atomic.Int32
	err := Supervise(context.Background(), []Worker{
		{"waits", func(ctx context.Context) error { <-ctx.Done(); stopped.Add(1); return nil }},
		{"fails", func(context.Context) error { return boom }},
	})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "worker fails") || stopped.Load() != 1 {
		t.Fatalf("Supervise = %v (stopped %d)", err, stopped.Load())
	}
}

const baseYAML = `
home: a
keyspace: ks
namespaces: [users, orders]
regions:
  - {name: a, contact_points: ["127.0.0.1:1"], local_dc: a}
  - {name: b, contact_points: ["127.0.0.2:1"], local_dc: b}
repair: {interval: 1m}
http: {listen: "127.0.0.1:0"}
`

func parseConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testConfig(t *testing.T) *config.Config { return parseConfig(t, baseYAML) }

func unreachable(calls *atomic.Int32) ConnectFunc {
	return func(_ context.Context, r cluster.Region, _ string) (*gocql.Session, error) {
		calls.Add(1)
		return nil, errors.New("connection refused")
	}
}

func TestHandlerEndpoints(t *testing.T) {
	var calls atomic.Int32
	d, err := New(testConfig(t), Options{Connect: unreachable(&calls)})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.RunOnce(context.Background(), "users"); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("RunOnce = %v, want ErrUnreachable", err)
	}
	srv := httptest.NewServer(d.Handler())
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return resp.StatusCode, b.String()
	}
	if code, body := get("/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "region a not connected: connection refused") {
		t.Errorf("/readyz = %d %q", code, body)
	}
	code, body := get("/status")
	var st Status
	if err := json.Unmarshal([]byte(body), &st); code != 200 || err != nil {
		t.Fatalf("/status = %d %q (%v)", code, body, err)
	}
	users := st.Namespaces["users"]
	if users == nil || users.LastRun == nil || len(users.LastRun.Errors) == 0 || !strings.Contains(users.LastRun.Errors[0], "region unreachable") {
		t.Errorf("/status users = %+v", users)
	}
	if st.Namespaces["orders"] == nil || st.Regions["b"].Connected {
		t.Errorf("/status = %+v", st)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics = %d", code)
	}
}

func TestRunShutsDownGracefully(t *testing.T) {
	var calls atomic.Int32
	d, err := New(testConfig(t), Options{Connect: unreachable(&calls), RetryDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	extra := make(chan struct{})
	d.AddWorker(Worker{Name: "extra", Run: func(ctx context.Context) error { <-ctx.Done(); close(extra); return nil }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	// The scheduled runs keep retrying the unreachable regions.
	deadline := time.Now().Add(5 * time.Second)
	for calls.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	select {
	case <-extra:
	default:
		t.Fatal("added worker was not stopped before Run returned")
	}
	if calls.Load() < 4 {
		t.Fatalf("scheduled repair retried only %d connects", calls.Load())
	}
	if !d.Status().Stopping {
		t.Error("status not stopping")
	}
}

func TestRunFailsOnBusyAddress(t *testing.T) {
	cfg := testConfig(t)
	ln := httptest.NewServer(http.NotFoundHandler())
	defer ln.Close()
	cfg.HTTP.Listen = strings.TrimPrefix(ln.URL, "http://")
	d, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "http.listen") {
		t.Fatalf("Run on a busy port = %v", err)
	}
}
