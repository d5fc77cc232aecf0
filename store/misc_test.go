package store

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/quorum"
	"github.com/tidemark/tidemark/store/driver"
)

// TestTypedJSON: structs round-trip through a Typed namespace, and decoding
// failures wrap ErrCodec.
func TestTypedJSON(t *testing.T) {
	ctx := context.Background()
	e := newMemEnv(t, nil)
	ns, mem := e.ns, e.mem
	type user struct {
		Name string `json:"name"`
		Age  int    `json:"age"`
	}
	users := NewTyped[user](ns, JSONCodec[user]{})
	if err := users.Put(ctx, []byte("org1"), []byte("u1"), user{"Ada", 36}); err != nil {
		t.Fatal(err)
	}
	err := users.PutBatch(ctx, []byte("org1"), []TypedEntry[user]{{CK: []byte("u2"), Value: user{"Bob", 40}}, {CK: []byte("u3"), Value: user{"Cy", 1}}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := users.Get(ctx, []byte("org1"), []byte("u1"))
	if err != nil || got.Value != (user{"Ada", 36}) {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	page, err := users.Scan(ctx, []byte("org1"))
	if err != nil || len(page.Items) != 3 || page.Items[1].Value.Name != "Bob" {
		t.Fatalf("Scan = %+v, %v", page, err)
	}
	if err := users.Delete(ctx, []byte("org1"), []byte("u3")); err != nil {
		t.Fatal(err)
	}
	var names []string
	for it, err := range users.All(ctx, []byte("org1")) {
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, it.Value.Name)
	}
	if strings.Join(names, ",") != "Ada,Bob" {
		t.Fatalf("All = %v", names)
	}
	// A value that is not JSON.
	if err := ns.Put(ctx, []byte("org1"), []byte("bad"), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if _, err := users.Get(ctx, []byte("org1"), []byte("bad")); !errors.Is(err, ErrCodec) {
		t.Fatalf("Get of a non-JSON value: %v, want ErrCodec", err)
	}
	// Encoding failure writes nothing.
	before := mem["a"].Writes()
	bad := NewTyped[chan int](ns, JSONCodec[chan int]{})
	if err := bad.Put(ctx, []byte("org1"), []byte("c"), make(chan int)); !errors.Is(err, ErrCodec) {
		t.Fatalf("Put of an unencodable value: %v, want ErrCodec", err)
	}
	if mem["a"].Writes() != before {
		t.Fatal("an encoding failure wrote to the region")
	}
	s := NewTyped[string](ns, StringCodec{})
	if err := s.Put(ctx, []byte("p"), []byte("c"), "hello"); err != nil {
		t.Fatal(err)
	}
	if it, err := s.Get(ctx, []byte("p"), []byte("c")); err != nil || it.Value != "hello" {
		t.Fatalf("string Get = %+v, %v", it, err)
	}
	b := NewTyped[[]byte](ns, BytesCodec{})
	if it, err := b.Get(ctx, []byte("p"), []byte("c")); err != nil || !bytes.Equal(it.Value, []byte("hello")) {
		t.Fatalf("bytes Get = %+v, %v", it, err)
	}
}

// TestMetricsRegister: the collector registers with a pedantic registry and
// reports per-region latency, hints and call results.
func TestMetricsRegister(t *testing.T) {
	ctx := context.Background()
	e := newMemEnv(t, nil)
	st, ns, mem := e.st, e.ns, e.mem
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(st.Metrics()); err != nil {
		t.Fatal(err)
	}
	mem["b"].SetFault(driver.Outage())
	if err := ns.Put(ctx, []byte("p"), []byte("c"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := ns.Get(ctx, []byte("p"), []byte("missing")); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	st.bg.Wait()
	waitFor(t, "queue drained", func() bool { return queuedCount(st) == 0 })
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, mf := range mfs {
		found[mf.GetName()] = true
	}
	for _, name := range []string{"tidemark_store_call_duration_seconds", "tidemark_store_region_duration_seconds",
		"tidemark_store_region_errors_total", "tidemark_store_hints_failed_total", "tidemark_store_breaker_state",
		"tidemark_store_background_queue_depth"} {
		if !found[name] {
			t.Errorf("metric %s not gathered", name)
		}
	}
	if got := metricValue(t, st.metrics.hintsFailed.WithLabelValues("b", lostNoSink)); got != 1 {
		t.Errorf("hints_failed_total{b} = %v, want 1 (no sink configured)", got)
	}
	if got := metricValue(t, st.metrics.regionErrors.WithLabelValues("b", "put", "unavailable")); got != 1 {
		t.Errorf("region_errors_total{b,put,unavailable} = %v, want 1", got)
	}
}

// TestErrorMessages: errors say which regions failed and at what level.
func TestErrorMessages(t *testing.T) {
	ctx := context.Background()
	e := newMemEnv(t, nil)
	ns, mem := e.ns, e.mem
	mem["c"].SetFault(driver.Outage())
	err := ns.Put(ctx, []byte("p"), []byte("c"), []byte("v"), WithConsistency(quorum.EachQuorum))
	var ce *ConsistencyError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want a ConsistencyError", err)
	}
	msg := err.Error()
	for _, want := range []string{"put at EACH_QUORUM", `region "c"`, "unavailable", "left to repair", "retry is safe"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	var re *RegionError
	if !errors.As(err, &re) || re.Region != "c" {
		t.Fatalf("errors.As RegionError: %v", re)
	}
}

// FuzzPageToken: decoding never panics, and every token it accepts
// re-encodes to itself.
func FuzzPageToken(f *testing.F) {
	f.Add("", "ns", []byte("pk"))
	f.Add(encodePageToken("ns", []byte("pk"), []byte("ck")), "ns", []byte("pk"))
	f.Add("AQAAAAA", "ns", []byte{})
	f.Add("!!!", "x", []byte("y"))
	f.Fuzz(func(t *testing.T, tok, ns string, pk []byte) {
		ck, err := decodePageToken(tok, ns, pk)
		if err != nil {
			if !errors.Is(err, ErrInvalidPageToken) {
				t.Fatalf("error %v does not wrap ErrInvalidPageToken", err)
			}
			return
		}
		if tok == "" {
			if ck != nil {
				t.Fatal("empty token gave a key")
			}
			return
		}
		if again := encodePageToken(ns, pk, ck); again != tok {
			t.Fatalf("token %q decoded to %q re-encodes as %q", tok, ck, again)
		}
	})
}

// TestClassify: region errors get the store's sentinels; only availability
// failures count for breakers and hints.
func TestClassify(t *testing.T) {
	live := context.Background()
	dead, cancel := context.WithCancel(live)
	cancel()
	cases := []struct {
		ctx   context.Context
		err   error
		avail bool
		is    error
	}{
		{live, context.DeadlineExceeded, true, ErrTimeout},
		{live, context.Canceled, true, ErrUnavailable}, // from the driver, not us
		{dead, context.Canceled, false, context.Canceled},
		{live, ErrNotFound, false, ErrNotFound},
		{live, errors.New("syntax error"), false, nil},
		{live, ErrCircuitOpen, true, ErrUnavailable},
	}
	for _, c := range cases {
		got := classify(c.ctx, c.err)
		if isAvailability(got) != c.avail {
			t.Errorf("classify(%v): availability %v, want %v", c.err, isAvailability(got), c.avail)
		}
		if c.is != nil && !errors.Is(got, c.is) {
			t.Errorf("classify(%v) = %v, want it to wrap %v", c.err, got, c.is)
		}
	}
}
