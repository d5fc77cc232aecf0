package store_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/tidemark/tidemark/hints/record"
	"github.com/tidemark/tidemark/quorum"
	"github.com/tidemark/tidemark/store"
	"github.com/tidemark/tidemark/store/driver"
)

// openMemory opens a Store over three in-memory regions, "us", "eu" and
// "ap", with "us" home.
func openMemory(sink store.HintSink) (*store.Store, map[string]*driver.MemoryRegion) {
	mem := map[string]*driver.MemoryRegion{
		"us": driver.NewMemoryRegion(), "eu": driver.NewMemoryRegion(), "ap": driver.NewMemoryRegion(),
	}
	st, err := store.Open(context.Background(), store.Config{
		Regions: []store.RegionConfig{
			{Name: "us", ContactPoints: []string{"memory"}},
			{Name: "eu", ContactPoints: []string{"memory"}},
			{Name: "ap", ContactPoints: []string{"memory"}},
		},
		Home:        "us",
		Keyspace:    "app",
		HintSink:    sink,
		NewExecutor: driver.MemoryFactory(mem),
	})
	if err != nil {
		log.Fatal(err)
	}
	return st, mem
}

// A Store over in-memory regions: write at the default level (LocalQuorum,
// the home region), read it back.
func Example() {
	ctx := context.Background()
	st, _ := openMemory(nil)
	defer st.Close()

	carts, err := st.CreateNamespace(ctx, "carts")
	if err != nil {
		log.Fatal(err)
	}
	if err := carts.Put(ctx, []byte("user-42"), []byte("item-7"), []byte(`{"qty":2}`)); err != nil {
		log.Fatal(err)
	}
	it, err := carts.Get(ctx, []byte("user-42"), []byte("item-7"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", it.Value)

	_, err = carts.Get(ctx, []byte("user-42"), []byte("item-8"))
	fmt.Println(errors.Is(err, store.ErrNotFound))
	// Output:
	// {"qty":2}
	// true
}

// Opening a Store against real Cassandra clusters, one per region, with the
// Kafka hint producer as the hint sink. (Not run: it needs the clusters.)
func ExampleOpen() {
	ctx := context.Background()
	var producer store.HintSink // e.g. from hints.NewProducer
	st, err := store.Open(ctx, store.Config{
		Regions: []store.RegionConfig{
			{Name: "us-east", ContactPoints: []string{"10.0.0.1", "10.0.0.2"}, LocalDC: "us-east"},
			{Name: "eu-west", ContactPoints: []string{"10.1.0.1", "10.1.0.2"}, LocalDC: "eu-west"},
		},
		Home:         "us-east",
		Keyspace:     "orders",
		DefaultLevel: quorum.LocalQuorum,
		Timeout:      2 * time.Second,
		HintSink:     producer,
		Logger:       slog.Default(),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	// Register st.Metrics() with your Prometheus registry.
}

// Per-call options: a stronger level for a write that must be in a
// majority of regions before the call returns, and a TTL.
func ExampleWithConsistency() {
	ctx := context.Background()
	st, mem := openMemory(nil)
	defer st.Close()
	sessions, _ := st.CreateNamespace(ctx, "sessions")

	err := sessions.Put(ctx, []byte("user-42"), []byte("s1"), []byte("token"),
		store.WithConsistency(quorum.Quorum), store.WithTTL(time.Hour))
	fmt.Println(err)

	st.Close() // waits for the background write to the third region
	row, ok := mem["ap"].Lookup("app", "sessions", []byte("user-42"), []byte("s1"))
	fmt.Println(ok, string(row.Value), row.TTL > 3590)
	// Output:
	// <nil>
	// true token true
}

// When a level cannot be met, the error names each failed region and says
// whether its hint was stored.
func ExampleConsistencyError() {
	ctx := context.Background()
	var hinted []string
	sink := store.HintSinkFunc(func(_ context.Context, h record.Hint) error {
		hinted = append(hinted, h.Target)
		return nil
	})
	st, mem := openMemory(sink)
	defer st.Close()
	ns, _ := st.CreateNamespace(ctx, "orders")

	mem["eu"].SetFault(driver.Outage())
	err := ns.Put(ctx, []byte("o1"), []byte("line1"), []byte("x"), store.WithConsistency(quorum.EachQuorum))

	var ce *store.ConsistencyError
	if errors.As(err, &ce) {
		// Failed lists the regions that failed first; regions that had not
		// answered yet when the call was decided follow with Pending set.
		for _, re := range ce.Failed {
			if !re.Pending {
				fmt.Println(re.Region, "hinted:", re.Hinted)
			}
		}
		fmt.Println(errors.Is(err, store.ErrUnavailable))
	}
	fmt.Println(hinted)
	// Output:
	// eu hinted: true
	// true
	// [eu]
}

// Scanning a partition page by page; deleted rows are never returned.
func ExampleNamespace_Scan() {
	ctx := context.Background()
	st, _ := openMemory(nil)
	defer st.Close()
	events, _ := st.CreateNamespace(ctx, "events")
	for i := range 5 {
		_ = events.Put(ctx, []byte("day-1"), fmt.Appendf(nil, "%03d", i), fmt.Appendf(nil, "event %d", i))
	}
	_ = events.Delete(ctx, []byte("day-1"), []byte("002"))

	token := ""
	for {
		page, err := events.Scan(ctx, []byte("day-1"), store.WithPageSize(2), store.WithPageToken(token))
		if err != nil {
			log.Fatal(err)
		}
		for _, it := range page.Items {
			fmt.Printf("%s=%s ", it.CK, it.Value)
		}
		fmt.Println("|")
		if page.Next == "" {
			break
		}
		token = page.Next
	}
	// Output:
	// 000=event 0 001=event 1 |
	// 003=event 3 004=event 4 |
}

// A typed namespace stores your own structs as JSON.
func ExampleTyped() {
	ctx := context.Background()
	st, _ := openMemory(nil)
	defer st.Close()
	ns, _ := st.CreateNamespace(ctx, "profiles")

	type Profile struct {
		Name  string `json:"name"`
		Email string `json:"email"`
	}
	profiles := store.NewTyped[Profile](ns, store.JSONCodec[Profile]{})
	_ = profiles.Put(ctx, []byte("tenant-1"), []byte("ada"), Profile{Name: "Ada", Email: "ada@example.com"})

	p, err := profiles.Get(ctx, []byte("tenant-1"), []byte("ada"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(p.Value.Name, p.Value.Email)
	// Output:
	// Ada ada@example.com
}

// PutBatch writes rows of one partition atomically, with one version.
func ExampleNamespace_PutBatch() {
	ctx := context.Background()
	st, _ := openMemory(nil)
	defer st.Close()
	ns, _ := st.CreateNamespace(ctx, "carts")
	err := ns.PutBatch(ctx, []byte("user-42"), []store.Entry{
		{CK: []byte("item-1"), Value: []byte("1")},
		{CK: []byte("item-2"), Value: []byte("3")},
		{CK: []byte("item-3"), Delete: true},
	})
	fmt.Println(err)
	a, _ := ns.Get(ctx, []byte("user-42"), []byte("item-1"))
	b, _ := ns.Get(ctx, []byte("user-42"), []byte("item-2"))
	fmt.Println(a.Timestamp == b.Timestamp)
	// Output:
	// <nil>
	// true
}

// Bringing your own driver settings: a query observer for tracing or
// per-query metrics and a retry policy, applied to each region's gocql
// session. Every statement the store sends is idempotent (each write
// carries its own timestamp), so retries are safe. (Needs Cassandra, so it
// has no Output.)
func ExampleConfig_configureCQL() {
	st, err := store.Open(context.Background(), store.Config{
		Regions: []store.RegionConfig{
			{Name: "us-east", ContactPoints: []string{"10.0.0.1"}, LocalDC: "us-east"},
			{Name: "eu-west", ContactPoints: []string{"10.1.0.1"}, LocalDC: "eu-west"},
		},
		Home:     "us-east",
		Keyspace: "profiles",
		ConfigureCQL: func(region string, c *gocql.ClusterConfig) {
			c.QueryObserver = queryLogger{region: region}
			c.RetryPolicy = &gocql.ExponentialBackoffRetryPolicy{NumRetries: 2, Min: 10 * time.Millisecond, Max: 100 * time.Millisecond}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
}

// queryLogger is a gocql.QueryObserver that logs slow queries.
type queryLogger struct{ region string }

func (q queryLogger) ObserveQuery(_ context.Context, o gocql.ObservedQuery) {
	if d := o.End.Sub(o.Start); d > 100*time.Millisecond {
		slog.Warn("slow query", "region", q.region, "took", d, "statement", o.Statement)
	}
}

// A write's version: the timestamp it was given, the same in every region.
func ExampleWithVersionReport() {
	st, _ := openMemory(nil)
	defer st.Close()
	users, _ := st.CreateNamespace(context.Background(), "users")
	var v int64
	if err := users.Put(context.Background(), []byte("user-1"), []byte("name"), []byte("Ada"), store.WithVersionReport(&v)); err != nil {
		log.Fatal(err)
	}
	it, _ := users.Get(context.Background(), []byte("user-1"), []byte("name"))
	fmt.Println(it.Timestamp == v, v&store.MaxWriterID == int64(st.WriterID()))
	// Output: true true
}
