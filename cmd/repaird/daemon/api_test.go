package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidemark/tidemark/repair"
)

const apiToken = "the-test-token-0123456789"

// slowWriter writes like w, slowly, counting the rows.
type slowWriter struct {
	repair.RegionWriter
	n atomic.Int64
}

func (s *slowWriter) WriteRow(ctx context.Context, ns string, w *repair.Write) error {
	time.Sleep(time.Millisecond)
	s.n.Add(1)
	return s.RegionWriter.WriteRow(ctx, ns, w)
}

type apiFixture struct {
	d      *Daemon
	srv    *httptest.Server
	a, b   *repair.MemRegion
	w      *slowWriter
	store  *repair.MemProgress
	cancel context.CancelFunc
	done   chan error
}

// fill puts n rows (from first on) in region a only.
func (f *apiFixture) fill(first, n int) {
	for i := first; i < first+n; i++ {
		f.a.Put("users", fmt.Appendf(nil, "k%05d", i), nil, 10, false, []byte("v"), 0)
	}
}

func newAPIFixture(t *testing.T, token bool) *apiFixture {
	t.Helper()
	yaml := "home: a\nkeyspace: ks\nnamespaces: [users]\nregions:\n  - {name: a, contact_points: [\"127.0.0.1:1\"], local_dc: a}\n  - {name: b, contact_points: [\"127.0.0.2:1\"], local_dc: b}\nrepair: {interval: 1h, segments: 8, concurrency: 1}\nhttp: {listen: \"127.0.0.1:0\"}\n"
	if token {
		t.Setenv("REPAIRD_TEST_TOKEN", apiToken)
		yaml = strings.Replace(yaml, `listen: "127.0.0.1:0"`, `listen: "127.0.0.1:0", token_env: REPAIRD_TEST_TOKEN`, 1)
	}
	f := &apiFixture{a: repair.NewMemRegion("users"), b: repair.NewMemRegion("users"), store: repair.NewMemProgress()}
	f.w = &slowWriter{RegionWriter: f.b}
	f.fill(0, 1500)
	d, err := New(parseConfig(t, yaml), Options{RetryDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	d.locator = nil
	d.openProgress = func(context.Context) (repair.ProgressStore, error) { return f.store, nil }
	d.openRegions = func(context.Context) ([]repair.Region, error) {
		return []repair.Region{{Name: "a", Reader: f.a, Writer: f.a}, {Name: "b", Reader: f.b, Writer: f.w}}, nil
	}
	f.d = d
	f.srv = httptest.NewServer(d.Handler())
	t.Cleanup(f.srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan error, 1)
	go func() { f.done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-f.done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	return f
}

// call sends a request and decodes the JSON answer into out.
func (f *apiFixture) call(t *testing.T, method, path, token string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, f.srv.URL+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %q: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

func (f *apiFixture) current(t *testing.T) RunView {
	t.Helper()
	var v RunView
	f.call(t, "GET", "/v1/namespaces/users/runs/current", "", nil, &v)
	return v
}

func eventuallyTrue(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestControlAPI(t *testing.T) {
	f := newAPIFixture(t, true)
	// The schedule starts the namespace's first run at once.
	eventuallyTrue(t, "the first run writes", 5*time.Second, func() bool { return f.w.n.Load() > 50 })
	var apiErr APIError

	// No token, a wrong token: 401 with a JSON error, nothing changed.
	for _, tok := range []string{"", "wrong-token-0123456789"} {
		before := f.w.n.Load()
		if code := f.call(t, "POST", "/v1/namespaces/users/runs/current/pause", tok, nil, &apiErr); code != 401 || apiErr.Error == "" {
			t.Fatalf("pause with token %q = %d %+v, want 401", tok, code, apiErr)
		}
		eventuallyTrue(t, "the run goes on", 2*time.Second, func() bool { return f.w.n.Load() > before+10 })
		if v := f.current(t); v.State != "running" || v.ControlledBy != "" {
			t.Fatalf("after a refused pause: %+v", v)
		}
	}

	// Pause holds: no row written until resumed.
	var v RunView
	if code := f.call(t, "POST", "/v1/namespaces/users/runs/current/pause", apiToken, nil, &v); code != 200 || v.State != "paused" || !v.Here {
		t.Fatalf("pause = %d %+v", code, v)
	}
	held := f.w.n.Load()
	time.Sleep(300 * time.Millisecond)
	if got := f.w.n.Load(); got != held {
		t.Fatalf("%d rows written while paused", got-held)
	}
	if v := f.current(t); v.State != "paused" || len(v.Holds) != 1 || v.Holds[0] != repair.HoldOperator {
		t.Fatalf("current run while paused: %+v", v)
	}
	if st := f.d.runState("users"); st != "paused" {
		t.Errorf("run state metric %q", st)
	}

	// Tuning: bad values are 400, good ones stick.
	if code := f.call(t, "PATCH", "/v1/namespaces/users/runs/current", apiToken, map[string]any{"intensity": 2}, &apiErr); code != 400 || !strings.Contains(apiErr.Error, "intensity") {
		t.Fatalf("intensity 2 = %d %+v", code, apiErr)
	}
	if code := f.call(t, "PATCH", "/v1/namespaces/users/runs/current", apiToken, map[string]any{"rows_per_second": 100000, "intensity": 0.9}, &v); code != 200 ||
		v.RowsPerSecond == nil || *v.RowsPerSecond != 100000 || v.Intensity == nil || *v.Intensity != 0.9 {
		t.Fatalf("tune = %d %+v", code, v)
	}
	if code := f.call(t, "PATCH", "/v1/namespaces/users/runs/current", apiToken, map[string]any{"rows": 1}, &apiErr); code != 400 {
		t.Fatalf("unknown field = %d", code)
	}

	// Resume: the run finishes.
	if code := f.call(t, "POST", "/v1/namespaces/users/runs/current/resume", apiToken, nil, &v); code != 200 || v.State != "running" {
		t.Fatalf("resume = %d %+v", code, v)
	}
	eventuallyTrue(t, "the run completes", 20*time.Second, func() bool { return f.b.Len("users") == 1500 && f.d.runs.get("users", kindFull) == nil })
	var runs RunsResponse
	if code := f.call(t, "GET", "/v1/runs", "", nil, &runs); code != 200 || len(runs.Runs) == 0 || runs.Runs[0].State != "finished" || runs.Runs[0].SegmentsDone != 8 {
		t.Fatalf("runs = %d %+v", code, runs)
	}
	if code := f.call(t, "POST", "/v1/namespaces/users/runs/current/pause", apiToken, nil, &apiErr); code != 404 {
		t.Errorf("pause with no unfinished run = %d %+v", code, apiErr)
	}
	if code := f.call(t, "POST", "/v1/namespaces/users/runs/"+runs.Runs[0].RunID+"/pause", apiToken, nil, &apiErr); code != 409 {
		t.Errorf("pause of a finished run = %d %+v", code, apiErr)
	}

	// A token-range run repairs only that range.
	f.fill(1500, 500)
	if code := f.call(t, "POST", "/v1/namespaces/users/runs", apiToken, map[string]any{"token_range": map[string]any{"start": 1, "end": 0}}, &apiErr); code != 400 {
		t.Fatalf("empty range = %d %+v", code, apiErr)
	}
	if code := f.call(t, "POST", "/v1/namespaces/users/runs", apiToken, map[string]any{"regions": []string{"a"}}, &apiErr); code != 400 {
		t.Fatalf("one region = %d %+v", code, apiErr)
	}
	if code := f.call(t, "POST", "/v1/namespaces/users/runs", apiToken, map[string]any{"token_range": map[string]any{"start": 0, "end": int64(1) << 62}}, &v); code != 201 ||
		v.Kind != "partial" || v.Scope == "" {
		t.Fatalf("start partial = %d %+v", code, v)
	}
	eventuallyTrue(t, "the partial run ends", 20*time.Second, func() bool { return f.d.runs.get("users", kindPartial) == nil })
	inRange := 0
	for i := 1500; i < 2000; i++ {
		pk := fmt.Appendf(nil, "k%05d", i)
		tok := f.a.Token(pk)
		_, _, ok := f.b.Get("users", pk, nil)
		if in := tok > 0 && tok <= 1<<62; ok != in {
			t.Fatalf("row %s (token %d) repaired = %v, in range = %v", pk, tok, ok, in)
		}
		if ok {
			inRange++
		}
	}
	if inRange == 0 {
		t.Fatal("no row in the range")
	}

	// Start a full run now, then abort it: leases released, run abandoned.
	if code := f.call(t, "POST", "/v1/namespaces/users/runs", apiToken, nil, &v); code != 201 || v.Kind != "full" || v.RunID == "" {
		t.Fatalf("start = %d %+v", code, v)
	}
	run := v.RunID
	if code := f.call(t, "POST", "/v1/namespaces/users/runs", apiToken, nil, &apiErr); code != 409 {
		t.Errorf("a second start while running = %d %+v", code, apiErr)
	}
	if code := f.call(t, "POST", "/v1/namespaces/users/runs/"+run+"/abort", apiToken, nil, &v); code != 200 || v.State != "aborted" {
		t.Fatalf("abort = %d %+v", code, v)
	}
	if f.d.runs.get("users", kindFull) != nil {
		t.Error("the aborted run still works here")
	}
	// The schedule does not start another run at once.
	time.Sleep(200 * time.Millisecond)
	if a := f.d.runs.get("users", kindFull); a != nil {
		t.Error("a new scheduled run began right after the abort")
	}
	if _, ok, _ := f.store.Current(context.Background(), "users"); ok {
		t.Error("the aborted run is still current")
	}
	for i := 0; i < 8; i++ {
		if ok, _ := f.store.Acquire(context.Background(), repair.RunInfo{ID: run, Namespace: "users"}, i, "probe", time.Minute); !ok {
			t.Errorf("segment %d still leased after the abort", i)
		}
	}
	if got := counter(t, f.d, "tidemark_repaird_control_actions_total", "abort", "ok"); got != 1 {
		t.Errorf("abort actions counted %v", got)
	}
	if got := counter(t, f.d, "tidemark_repaird_control_actions_total", "pause", "unauthorized"); got != 2 {
		t.Errorf("unauthorized pauses counted %v", got)
	}
	if code := f.call(t, "GET", "/v1/namespaces/nope/runs", "", nil, &apiErr); code != 404 {
		t.Errorf("unknown namespace = %d", code)
	}
	// The status page renders the state.
	resp, err := http.Get(f.srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`data-region="a"`, `data-namespace="users"`, "connected", "Bearer token"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("status page lacks %q", want)
		}
	}
}

func TestControlAPIDisabledWithoutToken(t *testing.T) {
	f := newAPIFixture(t, false)
	var apiErr APIError
	if code := f.call(t, "POST", "/v1/namespaces/users/runs", "anything-at-all-0123", nil, &apiErr); code != 403 || !strings.Contains(apiErr.Error, "http.token_file") {
		t.Fatalf("start without a configured token = %d %+v", code, apiErr)
	}
	if code := f.call(t, "GET", "/v1/status", "", nil, &Status{}); code != 200 {
		t.Fatalf("status = %d", code)
	}
}

// counter returns the value of a counter with the given label values.
func counter(t *testing.T, d *Daemon, name string, values ...string) float64 {
	t.Helper()
	mfs, err := d.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i, l := range m.GetLabel() {
				if i >= len(values) || l.GetValue() != values[i] {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// An abort waits for ended: by then the run must have left the board, or
// the abort answers while the schedule still sees the run (the flake
// "the aborted run still works here").
func TestRunBoardEndedMeansOffTheBoard(t *testing.T) {
	b := newRunBoard()
	a, err := b.add("users", repair.Scope{})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		a.end(nil, nil)
		time.Sleep(50 * time.Millisecond) // what runFull does between its run's end and the deferred remove
		b.remove(a)
	}()
	<-a.ended
	if b.get("users", kindFull) != nil {
		t.Fatal("ended is closed while the run is still on the board")
	}
	if _, err := b.add("users", repair.Scope{}); err != nil {
		t.Fatalf("the next run cannot start after ended: %v", err)
	}
}

// A run the progress store has finished but whose result this daemon has
// not recorded yet is still running here: listing it as finished while a
// start is refused as "already running" was the flake of
// integration/control_test.go ("repaird start: 409 Conflict").
func TestRunListedFinishedOnlyOnceOver(t *testing.T) {
	ctx := context.Background()
	store := repair.NewMemProgress()
	run, err := store.Begin(ctx, "users", 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Finish(ctx, run, time.Now()); err != nil {
		t.Fatal(err)
	}
	run, _, _ = store.LastFinished(ctx, "users")
	d := &Daemon{runs: newRunBoard()}
	a, err := d.runs.add("users", repair.Scope{})
	if err != nil {
		t.Fatal(err)
	}
	a.begin(run)
	if v := d.runView(ctx, store, "users", run, false); v.State != "running" || !v.Here {
		t.Fatalf("finished in the store, result not recorded here: state %q here %v, want running here", v.State, v.Here)
	}
	a.end(nil, nil)
	if v := d.runView(ctx, store, "users", run, false); v.State != "finished" {
		t.Fatalf("once over: state %q, want finished", v.State)
	}
}

// TestStartWithARegionTwiceIs400: a partial run naming one region twice
// is a bad value, 400 (it answered 500: the run was started and the
// repair refused its scope).
func TestStartWithARegionTwiceIs400(t *testing.T) {
	f := newAPIFixture(t, true)
	var e APIError
	code := f.call(t, "POST", "/v1/namespaces/users/runs", apiToken, map[string]any{"regions": []string{"a", "a"}}, &e)
	if code != http.StatusBadRequest {
		t.Fatalf("start with regions [a, a] = %d %q, want 400 (a bad value: one region named twice)", code, e.Error)
	}
	if !strings.Contains(e.Error, `regions: "a" is listed twice`) {
		t.Errorf("error %q does not name the region listed twice", e.Error)
	}
	if a := f.d.runs.get("users", kindPartial); a != nil {
		t.Errorf("a partial run was started for the refused scope")
	}
}
