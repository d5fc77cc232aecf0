package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/quorum"
	"github.com/tidemark/tidemark/store/driver"
)

// unreachable is a Factory over memory regions in which the regions named
// in down fail to connect (an availability failure) until let go.
type unreachable struct {
	mem      map[string]*driver.MemoryRegion
	mu       sync.Mutex
	down     map[string]bool
	attempts map[string]int
}

func newUnreachable(down ...string) *unreachable {
	u := &unreachable{mem: map[string]*driver.MemoryRegion{}, down: map[string]bool{}, attempts: map[string]int{}}
	for _, n := range regionNamesABC {
		u.mem[n] = driver.NewMemoryRegion()
		_ = u.mem[n].CreateTable(context.Background(), "ks", "ns", time.Hour)
	}
	for _, n := range down {
		u.down[n] = true
	}
	return u
}

func (u *unreachable) factory(ctx context.Context, cfg driver.Config) (driver.Executor, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.attempts[cfg.Region]++
	if u.down[cfg.Region] {
		return nil, fmt.Errorf("%w: dial %s: connection refused (test)", ErrUnavailable, cfg.Region)
	}
	return u.mem[cfg.Region], nil
}

func (u *unreachable) heal(region string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.down, region)
}

func (u *unreachable) open(t *testing.T, sink HintSink) *Store {
	t.Helper()
	cfg := Config{Home: "a", Keyspace: "ks", HintSink: sink, NewExecutor: u.factory, Timeout: 2 * time.Second}
	for _, n := range regionNamesABC {
		cfg.Regions = append(cfg.Regions, RegionConfig{Name: n, ContactPoints: []string{n + ".invalid"}})
	}
	st, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open with unreachable regions: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func health(st *Store, region string) RegionHealth {
	for _, h := range st.Health() {
		if h.Region == region {
			return h
		}
	}
	return RegionHealth{}
}

// TestOpenWithRemoteRegionUnreachable: Open succeeds with a remote region
// down; calls that do not need it succeed and hint it, calls that need it
// fail fast naming it; once it answers it is connected in the background
// and used again. (Before, Open failed: "store: open region "c": … region
// unavailable".)
func TestOpenWithRemoteRegionUnreachable(t *testing.T) {
	u := newUnreachable("c")
	sink := &recordingSink{}
	st := u.open(t, sink)
	if h := health(st, "c"); h.Connected || h.Breaker != "open" || !errors.Is(h.LastError, ErrUnavailable) {
		t.Fatalf("Health of c: %+v, want unconnected, open, with its error", h)
	}
	if h := health(st, "a"); !h.Connected || h.Breaker != "closed" {
		t.Fatalf("Health of a: %+v", h)
	}
	if got := metricValue(t, st.metrics.connected.WithLabelValues("c")); got != 0 {
		t.Errorf("region_connected{c} = %v, want 0", got)
	}
	ns, err := st.Namespace("ns")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := ns.Put(ctx, []byte("pk"), []byte("1"), []byte("v")); err != nil {
		t.Fatalf("LocalQuorum Put with c unconnected: %v", err)
	}
	start := time.Now()
	err = ns.Put(ctx, []byte("pk"), []byte("2"), []byte("v"), WithConsistency(quorum.EachQuorum))
	var ce *ConsistencyError
	if !errors.As(err, &ce) || !errors.Is(err, ErrNotConnected) || ce.Failed[0].Region != "c" || !ce.Failed[0].Hinted {
		t.Fatalf("EachQuorum Put: %v, want a ConsistencyError naming c, not connected, hinted", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("EachQuorum Put took %v with c unconnected, want it to fail fast", took)
	}
	waitFor(t, "hints for c", func() bool { return len(sink.all()) == 2 })

	u.heal("c")
	waitFor(t, "c connected in the background", func() bool { return health(st, "c").Connected })
	if h := health(st, "c"); h.Breaker != "closed" || h.LastError != nil {
		t.Fatalf("Health of c after it answered: %+v", h)
	}
	if got := metricValue(t, st.metrics.connected.WithLabelValues("c")); got != 1 {
		t.Errorf("region_connected{c} = %v, want 1", got)
	}
	if err := ns.Put(ctx, []byte("pk"), []byte("3"), []byte("v"), WithConsistency(quorum.All)); err != nil {
		t.Fatalf("All Put after c connected: %v", err)
	}
	if _, ok := u.mem["c"].Lookup("ks", "ns", []byte("pk"), []byte("3")); !ok {
		t.Fatal("c does not hold the write made after it connected")
	}
}

// TestOpenWithHomeUnreachable: with the home region down at Open, Any
// succeeds on the home's durable hint and LocalQuorum fails fast naming it.
func TestOpenWithHomeUnreachable(t *testing.T) {
	u := newUnreachable("a")
	sink := &recordingSink{}
	st := u.open(t, sink)
	ns, _ := st.Namespace("ns")
	ctx := context.Background()
	if err := ns.Put(ctx, []byte("pk"), []byte("1"), []byte("v"), WithConsistency(quorum.Any)); err != nil {
		t.Fatalf("Any with the home region unconnected: %v", err)
	}
	start := time.Now()
	err := ns.Put(ctx, []byte("pk"), []byte("2"), []byte("v"))
	var re *RegionError
	if !errors.As(err, &re) || re.Region != "a" || !errors.Is(err, ErrNotConnected) {
		t.Fatalf("LocalQuorum Put: %v, want an error naming a, not connected", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("LocalQuorum Put took %v, want it to fail fast", took)
	}
	if _, err := ns.Get(ctx, []byte("pk"), []byte("1")); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Get at LocalQuorum: %v, want ErrNotConnected", err)
	}
}

// TestOpenFailsOnRefusal: what waiting cannot heal fails Open at once: a
// region that refuses (bad credentials), a keyspace that does not exist.
func TestOpenFailsOnRefusal(t *testing.T) {
	cfg := Config{Home: "a", Keyspace: "ks"}
	for _, n := range regionNamesABC {
		cfg.Regions = append(cfg.Regions, RegionConfig{Name: n, ContactPoints: []string{n}})
	}
	refused := errors.New("Provided username tidemark and/or password are incorrect (test)")
	cfg.NewExecutor = func(_ context.Context, c driver.Config) (driver.Executor, error) {
		if c.Region == "b" {
			return nil, refused
		}
		return driver.NewMemoryRegion(), nil
	}
	if _, err := Open(context.Background(), cfg); !errors.Is(err, refused) {
		t.Fatalf("Open with b refusing: %v, want its error", err)
	}
	cfg.NewExecutor = func(_ context.Context, c driver.Config) (driver.Executor, error) {
		return noKeyspace{driver.NewMemoryRegion()}, nil
	}
	if _, err := Open(context.Background(), cfg); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Open without the keyspace: %v, want ErrInvalidConfig", err)
	}
}

type noKeyspace struct{ *driver.MemoryRegion }

func (noKeyspace) KeyspaceExists(context.Context, string) (bool, error) { return false, nil }

// TestCloseStopsReconnecting: a Store whose region never answers closes
// promptly, and its background connection attempts stop.
func TestCloseStopsReconnecting(t *testing.T) {
	u := newUnreachable("b", "c")
	st := u.open(t, nil)
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Close took %v", took)
	}
	u.mu.Lock()
	before := u.attempts["b"]
	u.mu.Unlock()
	time.Sleep(2 * reconnectFirst)
	u.mu.Lock()
	after := u.attempts["b"]
	u.mu.Unlock()
	if after != before {
		t.Fatalf("connection attempts went on after Close: %d then %d", before, after)
	}
}
