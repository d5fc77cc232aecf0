package store

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/quorum"
	"github.com/tidemark/tidemark/store/driver"
)

// TestValidationDoesNoIO: every invalid call fails with its sentinel before
// any I/O. The mock executors and sink have no expectations, so any call to
// them fails the test.
func TestValidationDoesNoIO(t *testing.T) {
	e := newMockEnv(t)
	ns := e.ns
	bg := context.Background()
	canceled, cancel := context.WithCancel(bg)
	cancel()
	big := func(n int) []byte { return bytes.Repeat([]byte("x"), n) }
	pk, ck, v := []byte("pk"), []byte("ck"), []byte("v")
	cases := []struct {
		name string
		call func() error
		want error
	}{
		{"put empty pk", func() error { return ns.Put(bg, nil, ck, v) }, ErrEmptyKey},
		{"put empty ck", func() error { return ns.Put(bg, pk, []byte{}, v) }, ErrEmptyKey},
		{"put pk too large", func() error { return ns.Put(bg, big(schema.MaxPartitionKey+1), ck, v) }, ErrKeyTooLarge},
		{"put ck too large", func() error { return ns.Put(bg, pk, big(schema.MaxClusteringKey+1), v) }, ErrKeyTooLarge},
		{"put value too large", func() error { return ns.Put(bg, pk, ck, big(DefaultMaxValueSize+1)) }, ErrValueTooLarge},
		{"put zero TTL", func() error { return ns.Put(bg, pk, ck, v, WithTTL(0)) }, ErrInvalidTTL},
		{"put negative TTL", func() error { return ns.Put(bg, pk, ck, v, WithTTL(-time.Second)) }, ErrInvalidTTL},
		{"put TTL over 20y", func() error { return ns.Put(bg, pk, ck, v, WithTTL(21*365*24*time.Hour)) }, ErrInvalidTTL},
		{"put TTL of 20y", func() error { return ns.Put(bg, pk, ck, v, WithTTL(cassandraMaxTTL)) }, ErrInvalidTTL},
		{"put TTL just over the max", func() error { return ns.Put(bg, pk, ck, v, WithTTL(maxTTL+time.Nanosecond)) }, ErrInvalidTTL},
		{"delete with TTL", func() error { return ns.Delete(bg, pk, ck, WithTTL(time.Hour)) }, ErrInvalidTTL},
		{"put zero level", func() error { return ns.Put(bg, pk, ck, v, WithConsistency(0)) }, ErrInvalidLevel},
		{"put unknown level", func() error { return ns.Put(bg, pk, ck, v, WithConsistency(42)) }, quorum.ErrUnknownLevel},
		{"get at Any", func() error { _, err := ns.Get(bg, pk, ck, WithConsistency(quorum.Any)); return err }, ErrInvalidLevel},
		{"get at Any is write-only", func() error { _, err := ns.Get(bg, pk, ck, WithConsistency(quorum.Any)); return err }, quorum.ErrWriteOnly},
		{"scan at Any", func() error { _, err := ns.Scan(bg, pk, WithConsistency(quorum.Any)); return err }, ErrInvalidLevel},
		{"get with TTL", func() error { _, err := ns.Get(bg, pk, ck, WithTTL(time.Hour)); return err }, ErrInvalidTTL},
		{"get empty ck", func() error { _, err := ns.Get(bg, pk, nil); return err }, ErrEmptyKey},
		{"get pk too large", func() error { _, err := ns.Get(bg, big(70000), ck); return err }, ErrKeyTooLarge},
		{"scan empty pk", func() error { _, err := ns.Scan(bg, nil); return err }, ErrEmptyKey},
		{"scan bad token", func() error { _, err := ns.Scan(bg, pk, WithPageToken("!!")); return err }, ErrInvalidPageToken},
		{"scan other pk's token", func() error {
			_, err := ns.Scan(bg, pk, WithPageToken(encodePageToken("ns", []byte("other"), ck)))
			return err
		}, ErrInvalidPageToken},
		{"scan zero page size", func() error { _, err := ns.Scan(bg, pk, WithPageSize(0)); return err }, ErrInvalidOption},
		{"scan zero page bytes", func() error { _, err := ns.Scan(bg, pk, WithPageBytes(0)); return err }, ErrInvalidOption},
		{"put with paging option", func() error { return ns.Put(bg, pk, ck, v, WithPageSize(3)) }, ErrInvalidOption},
		{"get with paging option", func() error { _, err := ns.Get(bg, pk, ck, WithPageToken("x")); return err }, ErrInvalidOption},
		{"zero timeout", func() error { return ns.Put(bg, pk, ck, v, WithTimeout(0)) }, ErrInvalidOption},
		{"put canceled ctx", func() error { return ns.Put(canceled, pk, ck, v) }, context.Canceled},
		{"get canceled ctx", func() error { _, err := ns.Get(canceled, pk, ck); return err }, context.Canceled},
		{"scan canceled ctx", func() error { _, err := ns.Scan(canceled, pk); return err }, context.Canceled},
		{"batch empty", func() error { return ns.PutBatch(bg, pk, nil) }, ErrInvalidBatch},
		{"batch duplicate ck", func() error {
			return ns.PutBatch(bg, pk, []Entry{{CK: ck, Value: v}, {CK: []byte("b"), Value: v}, {CK: ck, Value: v}})
		}, ErrInvalidBatch},
		{"batch delete with value", func() error { return ns.PutBatch(bg, pk, []Entry{{CK: ck, Value: v, Delete: true}}) }, ErrInvalidBatch},
		{"batch too large", func() error {
			es := make([]Entry, 5)
			for i := range es {
				es[i] = Entry{CK: []byte{byte(i) + 1}, Value: big(DefaultMaxValueSize)}
			}
			return ns.PutBatch(bg, pk, es)
		}, ErrBatchTooLarge},
		{"batch one bad entry", func() error {
			return ns.PutBatch(bg, pk, []Entry{{CK: ck, Value: v}, {CK: nil, Value: v}})
		}, ErrEmptyKey},
		{"create namespace bad name", func() error { _, err := e.st.CreateNamespace(bg, "x; DROP KEYSPACE ks"); return err }, ErrInvalidNamespace},
		{"create namespace zero retention", func() error { _, err := e.st.CreateNamespace(bg, "ok", WithRetention(0)); return err }, ErrInvalidOption},
		{"create namespace retention over 20 years", func() error {
			_, err := e.st.CreateNamespace(bg, "ok", WithRetention(maxTTL+time.Second))
			return err
		}, ErrInvalidOption},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if len(err.Error()) < 20 {
				t.Errorf("message %q is too terse to act on", err)
			}
		})
	}
}

// TestNamespaceNames: names that are not plain identifiers, including
// injection attempts, are ErrInvalidNamespace (and schema.ErrInvalidName).
func TestNamespaceNames(t *testing.T) {
	e := newMockEnv(t)
	for _, name := range []string{"", "x; DROP KEYSPACE ks", "Users", "1abc", "a-b", "a.b", `a"b`, "a b", strings.Repeat("a", 49), "ns'--", "ü"} {
		_, err := e.st.Namespace(name)
		if !errors.Is(err, ErrInvalidNamespace) || !errors.Is(err, schema.ErrInvalidName) {
			t.Errorf("Namespace(%q): %v, want ErrInvalidNamespace", name, err)
		}
	}
	for _, name := range []string{"a", "users", "user_events_2", strings.Repeat("a", 48)} {
		if _, err := e.st.Namespace(name); err != nil {
			t.Errorf("Namespace(%q): %v", name, err)
		}
	}
}

// TestConfigValidation: Open rejects bad configs, naming every problem, and
// never calls the executor factory.
func TestConfigValidation(t *testing.T) {
	factory := func(context.Context, driver.Config) (driver.Executor, error) {
		t.Error("executor factory called for an invalid config")
		return nil, errors.New("unreachable")
	}
	good := func() Config {
		return Config{
			Regions:     []RegionConfig{{Name: "a", ContactPoints: []string{"h"}}, {Name: "b", ContactPoints: []string{"h"}}},
			Home:        "a",
			Keyspace:    "ks",
			NewExecutor: factory,
		}
	}
	cases := []struct {
		name string
		mut  func(*Config)
		want string
	}{
		{"no regions", func(c *Config) { c.Regions = nil }, "no regions"},
		{"no home", func(c *Config) { c.Home = "" }, "no home region"},
		{"home not listed", func(c *Config) { c.Home = "z" }, `home region "z" is not one of`},
		{"duplicate region", func(c *Config) { c.Regions[1].Name = "a" }, `region "a" is listed twice`},
		{"unnamed region", func(c *Config) { c.Regions[1].Name = "" }, "region 1 has no name"},
		{"no contact points", func(c *Config) { c.Regions[1].ContactPoints = nil }, `region "b" has no contact points`},
		{"bad keyspace", func(c *Config) { c.Keyspace = "ks; DROP TABLE x" }, "keyspace"},
		{"empty keyspace", func(c *Config) { c.Keyspace = "" }, "keyspace"},
		{"bad level", func(c *Config) { c.DefaultLevel = 77 }, "default level"},
		{"create keyspace needs dc", func(c *Config) { c.CreateKeyspace = true }, "LocalDC"},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, "negative timeout"},
		{"negative clock drift", func(c *Config) { c.MaxClockDrift = -time.Second }, "negative MaxClockDrift"},
		{"negative breaker open timeout", func(c *Config) { c.Breaker.OpenTimeout = -time.Second }, "Breaker.OpenTimeout"},
		// It reached time.NewTicker, which panicked in a goroutine.
		{"negative heartbeat interval", func(c *Config) { c.Watermark.Interval = -time.Second }, "Watermark.Interval -1s is negative"},
		// Written as TTL 0: a registration that never expired, so a store
		// that stopped without closing held every watermark for good.
		{"negative registration TTL", func(c *Config) { c.Watermark.RegistrationTTL = -time.Minute }, "Watermark.RegistrationTTL -1m0s is not in"},
		{"registration TTL shorter than its refreshes", func(c *Config) { c.Watermark.RegistrationTTL = time.Second }, "Watermark.RegistrationTTL 1s is not in"},
		{"registration TTL over a day", func(c *Config) { c.Watermark.RegistrationTTL = 25 * time.Hour }, "Watermark.RegistrationTTL 25h0m0s is not in"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := good()
			c.mut(&cfg)
			_, err := Open(context.Background(), cfg)
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Open: %v, want ErrInvalidConfig mentioning %q", err, c.want)
			}
		})
	}
	t.Run("all problems at once", func(t *testing.T) {
		_, err := Open(context.Background(), Config{Keyspace: "Bad", NewExecutor: factory})
		for _, want := range []string{"no regions", "no home region", "keyspace"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
	})
	t.Run("level through errors.Is", func(t *testing.T) {
		cfg := good()
		cfg.DefaultLevel = 77
		if _, err := Open(context.Background(), cfg); !errors.Is(err, ErrInvalidLevel) {
			t.Fatalf("Open: %v, want ErrInvalidLevel", err)
		}
	})
}

// TestClockMonotonicConcurrent: timestamps from many goroutines are unique,
// increasing per goroutine, and never behind the wall clock, even when the
// wall clock stands still or steps back.
func TestClockMonotonicConcurrent(t *testing.T) {
	var mu sync.Mutex
	wall := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return wall }
	c := newClock(now, time.Minute, 5)
	const goroutines, each = 8, 5000
	results := make([][]int64, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			out := make([]int64, each)
			for i := range out {
				if g == 0 && i%500 == 0 { // the wall clock steps back and forth
					mu.Lock()
					wall = wall.Add(time.Duration(i%1000-500) * time.Microsecond)
					mu.Unlock()
				}
				out[i] = c.Now()
			}
			results[g] = out
		})
	}
	wg.Wait()
	seen := make(map[int64]bool, goroutines*each)
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).Add(-500 * time.Microsecond).UnixMicro()
	for g, out := range results {
		for i, ts := range out {
			if seen[ts] {
				t.Fatalf("timestamp %d handed out twice", ts)
			}
			seen[ts] = true
			if i > 0 && ts <= out[i-1] {
				t.Fatalf("goroutine %d: %d after %d, not increasing", g, ts, out[i-1])
			}
			if ts < start {
				t.Fatalf("timestamp %d behind the wall clock %d", ts, start)
			}
			if ts&MaxWriterID != 5 {
				t.Fatalf("timestamp %d does not carry writer id 5", ts)
			}
		}
	}
	// Never behind the wall clock as it moves forward.
	mu.Lock()
	wall = wall.Add(time.Hour)
	mu.Unlock()
	if ts := c.Now(); ts < now().UnixMicro() {
		t.Fatalf("Now %d behind wall %d", ts, now().UnixMicro())
	}
}

// TestClockObserve: a version read from a writer with a faster clock moves
// this clock past it, unless it is beyond MaxClockDrift.
func TestClockObserve(t *testing.T) {
	wall := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newClock(func() time.Time { return wall }, time.Minute, 1)
	ahead := wall.Add(30 * time.Second).UnixMicro()
	if !c.observe(ahead) {
		t.Fatal("observe within the drift bound refused")
	}
	if ts := c.Now(); ts <= ahead {
		t.Fatalf("Now %d not after the observed %d", ts, ahead)
	}
	far := wall.Add(time.Hour).UnixMicro()
	if c.observe(far) {
		t.Fatal("observe beyond the drift bound accepted")
	}
	if ts := c.Now(); ts >= far {
		t.Fatalf("clock dragged to %d by a far-future version", ts)
	}
}

// TestClocksOfTwoWritersNeverTie: two Stores with different writer ids
// reading the same wall clock, both having observed the same version
// written by a third writer whose clock runs ahead, never issue the same
// timestamp (on the code before writer ids they both issued observed+1).
func TestClocksOfTwoWritersNeverTie(t *testing.T) {
	wall := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { return wall }
	a, b := newClock(now, time.Minute, 1), newClock(now, time.Minute, 2)
	ahead := wall.Add(10*time.Second).UnixMicro() | 3 // written by writer 3
	a.observe(ahead)
	b.observe(ahead)
	seen := map[int64]string{}
	for i := range 10_000 {
		for name, c := range map[string]*clock{"a": a, "b": b} {
			ts := c.Now()
			if other, dup := seen[ts]; dup {
				t.Fatalf("step %d: %s issued %d, which %s issued too", i, name, ts, other)
			}
			seen[ts] = name
			if ts <= ahead {
				t.Fatalf("%s issued %d, not after the observed %d", name, ts, ahead)
			}
		}
	}
}
