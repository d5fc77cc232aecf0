package integration

// Hinted handoff on the real environment: hints produced to the shared Kafka
// broker, replayed into real Cassandra regions, with fault proxies cutting
// regions and the broker stopped and restarted.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"

	"github.com/tidemark/tidemark/hints"
	"github.com/tidemark/tidemark/hints/record"
	"github.com/tidemark/tidemark/internal/cluster"
	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/store"
)

const hintsNS = "items"

// hintsTable creates the namespace table in each region of ks.
func hintsTable(t testing.TB, ks string, regions ...string) {
	t.Helper()
	createTable(t, ks, hintsNS, regions...)
}

// createTable creates the namespace table ns in keyspace ks in each of
// regions directly (as the store's CreateNamespace does), for tests that
// cannot reach every region through a Store.
func createTable(t testing.TB, ks, ns string, regions ...string) {
	t.Helper()
	for _, name := range regions {
		s := adminSession(t, region(t, name))
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		err := s.Query(schema.CreateTable(ks, ns, schema.DefaultRetention)).ExecContext(ctx)
		if err == nil {
			err = s.AwaitSchemaAgreement(ctx)
		}
		cancel()
		if err != nil {
			t.Fatalf("create table %s.%s in region %s: %v", ks, ns, name, err)
		}
	}
}

func hintsProducer(t testing.TB, prefix string, kr *record.Keyring) *hints.Producer {
	t.Helper()
	return hintsProducerWith(t, prefix, func(c *hints.ProducerConfig) { c.Keyring = kr })
}

// hintsProducerWith is hintsProducer with its configuration changed by
// change before the producer is made.
func hintsProducerWith(t testing.TB, prefix string, change func(*hints.ProducerConfig)) *hints.Producer {
	t.Helper()
	cfg := hints.ProducerConfig{
		Brokers:           testEnv(t).KafkaBrokers(),
		TopicPrefix:       prefix,
		Partitions:        4,
		ReplicationFactor: 1,
		ProduceTimeout:    5 * time.Second,
	}
	change(&cfg)
	p, err := hints.NewProducer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	deleteTopicsAtCleanup(t, prefix+"a", prefix+"b", prefix+"c", prefix+hints.DeadLetterSuffix)
	return p
}

func hintsReplayer(t testing.TB, prefix, regionName string, applier hints.Applier, kr *record.Keyring) *hints.Replayer {
	t.Helper()
	r, err := hints.NewReplayer(hints.ReplayerConfig{
		Brokers:           testEnv(t).KafkaBrokers(),
		TopicPrefix:       prefix,
		Region:            regionName,
		GroupID:           prefix + "replayer-" + regionName,
		Applier:           applier,
		Keyring:           kr,
		Partitions:        4,
		ReplicationFactor: 1,
		BackoffMin:        50 * time.Millisecond,
		BackoffMax:        time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// runReplayer runs r until the returned stop is called (or the test ends).
func runReplayer(t testing.TB, r *hints.Replayer) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("replayer Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("replayer did not stop within 30s of its context being canceled")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// gauge reads one metric (summed over label values) from a collector whose
// name is name, restricted to the series with the given label name/value
// pairs. It fails the test when the collector has no such series, so that a
// misspelt name or label cannot make a "== 0" check pass.
func gauge(t testing.TB, c prometheus.Collector, name string, labels ...string) float64 {
	t.Helper()
	sum, found := metricSum(t, c, name, labels...)
	if !found {
		t.Fatalf("no metric %s%v among the families the collector exports", name, labels)
	}
	return sum
}

// counter is gauge for a vector whose series appear with their first
// increment: no such series reads 0. The family itself must be
// exported, or it fails the test.
func counter(t testing.TB, c prometheus.Collector, name string, labels ...string) float64 {
	t.Helper()
	sum, _ := metricSum(t, c, name, labels...)
	return sum
}

// metricSum is the sum gauge reads and whether any series matched.
func metricSum(t testing.TB, c prometheus.Collector, name string, labels ...string) (float64, bool) {
	t.Helper()
	mfs := gather(t, c)
	if len(labels)%2 != 0 {
		t.Fatalf("metric %s: labels %q are not name/value pairs", name, labels)
	}
	var sum float64
	found, family := false, false
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		family = true
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue metrics
				}
			}
			found = true
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	if !family {
		// A vector with no series yet is not gathered at all: only a
		// described family counts as exported.
		family = describes(c, name)
	}
	if !family {
		t.Fatalf("the collector exports no metric family %s (among %d)", name, len(mfs))
	}
	return sum, found
}

// describes reports whether c describes a metric named name (a vector
// with no series yet is described but not gathered).
func describes(c prometheus.Collector, name string) bool {
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	want, found := fmt.Sprintf("fqName: %q", name), false
	for d := range ch {
		found = found || strings.Contains(d.String(), want)
	}
	return found
}

// gather returns the metric families c exports.
func gather(t testing.TB, c prometheus.Collector) []*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatalf("register collector: %v", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	return mfs
}

// histogramSummary describes the histogram name of c: how many
// observations, their mean, and the bucket bound under which 99% fall.
func histogramSummary(t testing.TB, c prometheus.Collector, name string) string {
	t.Helper()
	mfs := gather(t, c)
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) == 0 || mf.GetMetric()[0].Histogram == nil {
			continue
		}
		h := mf.GetMetric()[0].Histogram
		n := h.GetSampleCount()
		if n == 0 {
			return "no observation"
		}
		p99 := "above the largest bucket"
		for _, b := range h.GetBucket() {
			if float64(b.GetCumulativeCount()) >= 0.99*float64(n) {
				p99 = fmt.Sprintf("≤ %gs", b.GetUpperBound())
				break
			}
		}
		return fmt.Sprintf("%d observations, mean %.3fs, 99%% %s", n, h.GetSampleSum()/float64(n), p99)
	}
	t.Fatalf("no histogram %s among the %d families the collector exports", name, len(mfs))
	return ""
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// rowState is one row as the table holds it.
type rowState struct {
	value     []byte
	deleted   bool
	writetime int64
	ttl       int   // 0: none
	expires   int64 // the absolute expiry column; 0: never
	// The instant the cell's TTL ends (seconds since the epoch) lies in
	// [cellLo, cellHi]: ttl counted from the start of the read and from
	// the moment its page arrived. 0 without a TTL.
	cellLo, cellHi int64
}

// maxApplyLag bounds how long after the computation of its TTL a copy may
// reach a node in these tests. Cassandra counts a TTL from the moment a
// node applies the write, so a copy's cell outlives the row's expiry by
// that delay (docs/design.md "Expiry": reads honour the expires column;
// the TTL only reclaims space).
const maxApplyLag = 60

// cellProblem says how r's cell TTL contradicts its expiry, or "": a cell
// that dies before the row's expiry would drop the row (or the deletion
// marker) early; one that outlives it by more than maxApplyLag was not
// written with the TTL that remained (schema.TTLUntil).
func (r rowState) cellProblem() string {
	switch {
	case (r.expires == 0) != (r.ttl == 0):
		return fmt.Sprintf("expires %d with ttl %d", r.expires, r.ttl)
	case r.expires == 0: // neither: the row never expires
	case r.cellHi < r.expires:
		return fmt.Sprintf("cell ends by %d, before the row's expiry %d", r.cellHi, r.expires)
	case r.cellLo > r.expires+maxApplyLag:
		return fmt.Sprintf("cell ends after %d, %d s past the row's expiry %d", r.cellLo, r.cellLo-r.expires, r.expires)
	}
	return ""
}

func (r rowState) String() string {
	return fmt.Sprintf("{value=%q deleted=%v writetime=%d ttl=%d expires=%d}", r.value, r.deleted, r.writetime, r.ttl, r.expires)
}

// readTable reads every row of ks.items in a region.
func readTable(t testing.TB, s *gocql.Session, ks string) map[string]rowState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := map[string]rowState{}
	start := time.Now().Unix()
	it := s.Query(fmt.Sprintf(`SELECT pk, ck, value, deleted, writetime(digest), ttl(digest), expires FROM %s.%s`, ks, hintsNS)).
		PageSize(2000).IterContext(ctx)
	var (
		pk, ck, value []byte
		deleted       bool
		wt, expires   int64
		ttl           *int
	)
	for it.Scan(&pk, &ck, &value, &deleted, &wt, &ttl, &expires) {
		r := rowState{value: bytes.Clone(value), deleted: deleted, writetime: wt, expires: expires}
		if ttl != nil {
			r.ttl = *ttl
			// ttl() counts down in whole seconds on the server, somewhere
			// between the query's start and now.
			r.cellLo, r.cellHi = start+int64(r.ttl), time.Now().Unix()+int64(r.ttl)+1
		}
		out[string(pk)+"/"+string(ck)] = r
		ttl = nil
	}
	if err := it.Close(); err != nil {
		t.Fatalf("read table: %v", err)
	}
	return out
}

// diffTables returns a description of how b differs from a, or "". Rows
// agree when their value, deletion, timestamp and absolute expiry are
// equal; their remaining TTLs are not compared with each other (each copy's
// counts from its own apply, and the tables are read at different
// moments) but each is checked against the expiry (cellProblem).
func diffTables(a, b map[string]rowState) string {
	var diffs []string
	for k, ra := range a {
		rb, ok := b[k]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s: missing (want %v)", k, ra))
		case !bytes.Equal(ra.value, rb.value) || ra.deleted != rb.deleted || ra.writetime != rb.writetime ||
			ra.expires != rb.expires || (ra.ttl == 0) != (rb.ttl == 0):
			diffs = append(diffs, fmt.Sprintf("%s: %v, want %v", k, rb, ra))
		}
		if p := ra.cellProblem(); p != "" {
			diffs = append(diffs, fmt.Sprintf("%s: first table's %v: %s", k, ra, p))
		}
	}
	for k, rb := range b {
		if _, ok := a[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: unexpected %v", k, rb))
		}
		if p := rb.cellProblem(); p != "" {
			diffs = append(diffs, fmt.Sprintf("%s: second table's %v: %s", k, rb, p))
		}
	}
	if len(diffs) == 0 {
		return ""
	}
	sort.Strings(diffs)
	if len(diffs) > 10 {
		diffs = append(diffs[:10], fmt.Sprintf("... and %d more", len(diffs)-10))
	}
	return fmt.Sprintf("%d rows differ:\n  %s", len(diffs), strings.Join(diffs, "\n  "))
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// readTopic returns every record of topic, across its partitions.
func readTopic(t testing.TB, topic string) []kafka.Message {
	t.Helper()
	brokers := testEnv(t).KafkaBrokers()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// A transport of its own: the default one caches metadata from before
	// the topic existed.
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second, Transport: tr}
	// A topic created a moment ago may answer that its partition has no
	// leader yet (Not Leader For Partition, Leader Not Available): asked
	// again, for up to 30 s.
	var offs *kafka.ListOffsetsResponse
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		if err != nil || len(md.Topics) != 1 || md.Topics[0].Error != nil {
			t.Fatalf("metadata of %s: %v %+v", topic, err, md)
		}
		req := map[string][]kafka.OffsetRequest{}
		for _, p := range md.Topics[0].Partitions {
			req[topic] = append(req[topic], kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
		}
		offs, err = client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: req})
		if err != nil {
			t.Fatalf("list offsets of %s: %v", topic, err)
		}
		var perr error
		for _, po := range offs.Topics[topic] {
			if po.Error != nil {
				perr = fmt.Errorf("offsets of %s/%d: %w", topic, po.Partition, po.Error)
			}
		}
		if perr == nil {
			break
		}
		if !errors.Is(perr, kafka.NotLeaderForPartition) && !errors.Is(perr, kafka.LeaderNotAvailable) || time.Now().After(deadline) {
			t.Fatal(perr)
		}
	}
	var out []kafka.Message
	for _, po := range offs.Topics[topic] {
		if po.LastOffset <= po.FirstOffset {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: po.Partition, MaxBytes: 16 << 20, MaxWait: 200 * time.Millisecond})
		if err := r.SetOffset(po.FirstOffset); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				t.Fatalf("read %s/%d: %v", topic, po.Partition, err)
			}
			out = append(out, m)
			if m.Offset >= po.LastOffset-1 {
				break
			}
		}
		r.Close()
	}
	return out
}

// mutation is one row written to region A, and hinted for B.
type mutation struct {
	pk, ck, value []byte
	deleted       bool
	ts            int64
	ttl           time.Duration // 0: none
	at            time.Time
}

func (m mutation) hint(target string) record.Hint {
	h := record.Hint{Target: target, Origin: "a", Namespace: hintsNS, PK: m.pk, CK: m.ck, Value: m.value, Deleted: m.deleted, Timestamp: m.ts, CreatedAt: m.at}
	if m.ttl > 0 {
		h.ExpiresAt = m.at.Add(m.ttl)
	}
	return h
}

// makeMutations returns n distinct rows: 60% plain puts, 20% puts with a
// TTL of 1-2 hours, 20% deletions (markers with the tombstone retention as
// TTL, as the store writes them).
func makeMutations(n int, seed uint64) []mutation {
	r := rand.New(rand.NewPCG(seed, 7))
	base := time.Now().UnixMicro()
	out := make([]mutation, n)
	for i := range out {
		m := mutation{
			pk: fmt.Appendf(nil, "p%05d", i/10),
			ck: fmt.Appendf(nil, "c%d", i%10),
			ts: base + int64(i),
		}
		switch k := i % 10; {
		case k < 6:
			m.value = fmt.Appendf(nil, "value-%d-%d", i, r.Uint32())
		case k < 8:
			m.value = fmt.Appendf(nil, "ttl-%d", i)
			m.ttl = time.Hour + time.Duration(r.IntN(3600))*time.Second
		default:
			m.deleted = true
			m.ttl = schema.DefaultRetention
		}
		out[i] = m
	}
	return out
}

// writeRow writes m to a region as the store does: every cell, one
// timestamp, the absolute expiry and the TTL left until it (row format 2).
func writeRow(ctx context.Context, s *gocql.Session, ks string, m mutation) error {
	return s.Query(schema.Insert(ks, hintsNS), m.bind(time.Now())...).
		Consistency(gocql.LocalQuorum).ExecContext(ctx)
}

// bind returns the Insert values of m written at now.
func (m mutation) bind(now time.Time) []any {
	expires := schema.ExpiryAfter(m.at, m.ttl)
	ttl, _ := schema.TTLUntil(expires, now)
	return schema.InsertValues(m.pk, m.ck, schema.RowCells(m.deleted, m.value, expires), m.ts, ttl)
}

// parallel runs f(i) for i in [0, n) on workers goroutines and returns the
// first error.
func parallel(n, workers int, f func(i int) error) error {
	var (
		next  atomic.Int64
		first error
		mu    sync.Mutex
		wg    sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("item %d: %w", i, err)
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

func countRows(t testing.TB, s *gocql.Session, ks string) int {
	t.Helper()
	var n int
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Query(fmt.Sprintf("SELECT COUNT(*) FROM %s.%s", ks, hintsNS)).ScanContext(ctx, &n); err != nil {
		t.Fatalf("count rows: %v", err)
	}
	return n
}

// TestHintsCutRegionReplayConverges is the scenario: region B is
// cut, 10,000 rows (puts, deletions, TTLs) are written to region A and
// hinted for B; B has none of them and B's topic holds exactly their hints.
// A replayer started while B is still cut pauses without committing; B is
// healed; the replayer is killed halfway and a new one finishes; then B
// equals A row for row (values, deletion markers, writetime, TTL within 1s).
func TestHintsCutRegionReplayConverges(t *testing.T) {
	t.Parallel()
	const n = 10000
	ks := newKeyspace(t, "a", "b")
	hintsTable(t, ks, "a", "b")
	prefix := newTopicPrefix(t)
	prod := hintsProducer(t, prefix, nil)
	sa := directSession(t, "a", ks)
	sbDirect := directSession(t, "b", ks)

	// B behind a fault proxy; the session is made while B is healthy, then
	// B is cut.
	proxyB := frontRegion(t, "b")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	rb := proxiedRegion(t, "b", proxyB)
	rb.Timeout = time.Second
	sb, err := cluster.Connect(ctx, rb, ks)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	if err := proxyB.Refuse(); err != nil {
		t.Fatal(err)
	}

	muts := makeMutations(n, 1)
	var writesToB atomic.Int64
	err = parallel(n, 16, func(i int) error {
		m := muts[i]
		m.at = time.Now()
		muts[i] = m
		if err := writeRow(ctx, sa, ks, m); err != nil {
			return fmt.Errorf("write A: %w", err)
		}
		// What the store does: try B, hint on failure.
		wctx, wcancel := context.WithTimeout(ctx, time.Second)
		err := writeRow(wctx, sb, ks, m)
		wcancel()
		if err == nil {
			writesToB.Add(1)
			return nil
		}
		return prod.Hint(ctx, m.hint("b"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if w := writesToB.Load(); w != 0 {
		t.Fatalf("%d writes reached the cut region B", w)
	}
	if got := gauge(t, prod, "tidemark_hints_produced_total", "region", "b"); got != n {
		t.Fatalf("produced metric = %v, want %d", got, n)
	}
	if c := countRows(t, sbDirect, ks); c != 0 {
		t.Fatalf("cut region B has %d rows, want none", c)
	}
	a := readTable(t, sa, ks)
	if len(a) != n {
		t.Fatalf("region A has %d rows, want %d", len(a), n)
	}

	// B's topic holds exactly the hints of those writes.
	recs := readTopic(t, prod.Topic("b"))
	if len(recs) != n {
		t.Fatalf("topic %s holds %d records, want %d", prod.Topic("b"), len(recs), n)
	}
	want := map[string]record.Hint{}
	for _, m := range muts {
		want[string(m.pk)+"/"+string(m.ck)] = m.hint("b")
	}
	for _, rec := range recs {
		h, err := record.Decode(rec.Value, nil)
		if err != nil {
			t.Fatalf("record %d/%d: %v", rec.Partition, rec.Offset, err)
		}
		k := string(h.PK) + "/" + string(h.CK)
		w, ok := want[k]
		if !ok {
			t.Fatalf("unexpected or duplicate hint for %s", k)
		}
		delete(want, k)
		if !bytes.Equal(rec.Key, h.PK) || h.Timestamp != w.Timestamp || h.Deleted != w.Deleted ||
			(!h.Deleted && !bytes.Equal(h.Value, w.Value)) || !h.ExpiresAt.Equal(w.ExpiresAt.Truncate(time.Microsecond)) {
			t.Fatalf("hint for %s does not match its write: got ts=%d deleted=%v value=%q expires=%v", k, h.Timestamp, h.Deleted, h.Value, h.ExpiresAt)
		}
	}

	// A replayer started while B is still cut pauses: nothing applied,
	// nothing committed, the pause visible in the metrics.
	r1 := hintsReplayer(t, prefix, "b", hints.NewCQLApplier(sb, ks), nil)
	stop1 := runReplayer(t, r1)
	eventually(t, 2*time.Minute, "replayer paused on the cut region", func() error {
		if p := gauge(t, r1, "tidemark_hints_replay_paused"); p != 1 {
			return fmt.Errorf("paused = %v", p)
		}
		if f := gauge(t, r1, "tidemark_hints_apply_failures_total"); f == 0 {
			return errors.New("no apply failures counted")
		}
		return nil
	})
	if age := gauge(t, r1, "tidemark_hints_oldest_unreplayed_age_seconds"); age <= 0 {
		t.Errorf("oldest unreplayed age = %v while paused, want > 0", age)
	}
	if got := gauge(t, r1, "tidemark_hints_replayed_total"); got != 0 {
		t.Fatalf("replayed %v hints into a cut region", got)
	}

	// Heal B; kill the replayer after some progress; a new one finishes.
	if err := proxyB.Heal(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Minute, "replay resumed by itself after heal", func() error {
		if got := gauge(t, r1, "tidemark_hints_replayed_total"); got < n/4 {
			return fmt.Errorf("replayed %v", got)
		}
		return nil
	})
	stop1()
	first := gauge(t, r1, "tidemark_hints_replayed_total")
	if first >= n {
		t.Logf("first replayer finished everything (%v) before it was stopped", first)
	}
	r2 := hintsReplayer(t, prefix, "b", hints.NewCQLApplier(sb, ks), nil)
	runReplayer(t, r2)
	eventually(t, 5*time.Minute, "B equals A", func() error {
		// Read A again each time: remaining TTLs shrink as time passes.
		if d := diffTables(readTable(t, sa, ks), readTable(t, sbDirect, ks)); d != "" {
			return errors.New(d)
		}
		return nil
	})
	second := gauge(t, r2, "tidemark_hints_replayed_total")
	t.Logf("replayed: %v by the first replayer, %v by the second (overlap = re-applied, harmless)", first, second)
	if first+second < n {
		t.Fatalf("replayed %v + %v < %d hints", first, second, n)
	}
	if dl := gauge(t, r2, "tidemark_hints_dead_lettered_total"); dl != 0 {
		t.Fatalf("%v hints dead-lettered", dl)
	}
	eventually(t, time.Minute, "consumer lag drains", func() error {
		if lag := gauge(t, r2, "tidemark_hints_consumer_lag"); lag != 0 {
			return fmt.Errorf("lag = %v", lag)
		}
		return nil
	})
}

// TestHintsOlderHintNeverOverwritesNewerWrite: B already holds newer
// versions of rows; replaying older hints (a put and a delete) changes
// nothing, while a newer hint does overwrite an older row.
func TestHintsOlderHintNeverOverwritesNewerWrite(t *testing.T) {
	t.Parallel()
	ks := newKeyspace(t, "b")
	hintsTable(t, ks, "b")
	prefix := newTopicPrefix(t)
	prod := hintsProducer(t, prefix, nil)
	sb := directSession(t, "b", ks)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	now := time.Now()
	ts := now.UnixMicro()
	newer := []mutation{
		{pk: []byte("k1"), ck: []byte("c"), value: []byte("new-1"), ts: ts + 100},
		{pk: []byte("k2"), ck: []byte("c"), value: []byte("new-2"), ts: ts + 100},
		{pk: []byte("k3"), ck: []byte("c"), value: []byte("old-3"), ts: ts},
	}
	for _, m := range newer {
		if err := writeRow(ctx, sb, ks, m); err != nil {
			t.Fatal(err)
		}
	}
	hs := []mutation{
		{pk: []byte("k1"), ck: []byte("c"), value: []byte("stale-1"), ts: ts, at: now},                         // older put
		{pk: []byte("k2"), ck: []byte("c"), deleted: true, ts: ts + 50, ttl: schema.DefaultRetention, at: now}, // older delete
		{pk: []byte("k3"), ck: []byte("c"), value: []byte("newer-3"), ts: ts + 200, ttl: time.Hour, at: now},   // newer put
		{pk: []byte("k1"), ck: []byte("c"), value: []byte("new-1"), ts: ts + 100, at: now},                     // same version again
	}
	for _, m := range hs {
		if err := prod.Hint(ctx, m.hint("b")); err != nil {
			t.Fatal(err)
		}
	}
	r := hintsReplayer(t, prefix, "b", hints.NewCQLApplier(sb, ks), nil)
	runReplayer(t, r)
	eventually(t, 2*time.Minute, "all hints replayed", func() error {
		if got := gauge(t, r, "tidemark_hints_replayed_total"); got != float64(len(hs)) {
			return fmt.Errorf("replayed %v of %d", got, len(hs))
		}
		return nil
	})
	got := readTable(t, sb, ks)
	check := func(k string, value string, deleted bool, wt int64, hasTTL bool) {
		t.Helper()
		r, ok := got[k]
		if !ok {
			t.Fatalf("%s: missing", k)
		}
		if string(r.value) != value || r.deleted != deleted || r.writetime != wt || (r.ttl > 0) != hasTTL {
			t.Errorf("%s = %v, want value=%q deleted=%v writetime=%d ttl=%v", k, r, value, deleted, wt, hasTTL)
		}
	}
	check("k1/c", "new-1", false, ts+100, false)
	check("k2/c", "new-2", false, ts+100, false)
	check("k3/c", "newer-3", false, ts+200, true)
}

// TestHintsDeadLetters: a corrupt record, a record signed with the wrong
// key and an expired hint land in the dead-letter topic with their reasons
// and original bytes, and replay carries on with the good hints around them.
func TestHintsDeadLetters(t *testing.T) {
	t.Parallel()
	ks := newKeyspace(t, "b")
	hintsTable(t, ks, "b")
	prefix := newTopicPrefix(t)
	secret := []byte("integration-secret-0123456789abcdef")
	good, err := record.NewKeyring(record.KeyringConfig{Current: record.Key{ID: "k1", Secret: secret}})
	if err != nil {
		t.Fatal(err)
	}
	forged, err := record.NewKeyring(record.KeyringConfig{Current: record.Key{ID: "k1", Secret: []byte("an-attacker-guessed-this-secret")}})
	if err != nil {
		t.Fatal(err)
	}
	prod := hintsProducer(t, prefix, good)
	sb := directSession(t, "b", ks)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	now := time.Now()
	put := func(i int) mutation {
		return mutation{pk: fmt.Appendf(nil, "good%d", i), ck: []byte("c"), value: fmt.Appendf(nil, "v%d", i), ts: now.UnixMicro() + int64(i), at: now}
	}
	for i := range 5 {
		if err := prod.Hint(ctx, put(i).hint("b")); err != nil {
			t.Fatal(err)
		}
	}
	// Records the producer would never write, appended straight to the topic.
	corrupt := []byte("\x89TMH\x01 this is not a hint")
	forgedRec, err := record.Encode(mutation{pk: []byte("forged"), ck: []byte("c"), value: []byte("evil"), ts: now.UnixMicro() + 1000, at: now}.hint("b"), forged)
	if err != nil {
		t.Fatal(err)
	}
	expired := mutation{pk: []byte("expired"), ck: []byte("c"), value: []byte("gone"), ts: now.UnixMicro(), at: now.Add(-2 * time.Hour), ttl: time.Hour}
	expiredRec, err := record.Encode(expired.hint("b"), good)
	if err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(testEnv(t).KafkaBrokers()...), Topic: prod.Topic("b"), RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	for _, rec := range []kafka.Message{
		{Key: []byte("corrupt"), Value: corrupt},
		{Key: []byte("forged"), Value: forgedRec},
		{Key: []byte("expired"), Value: expiredRec},
	} {
		// The topic was created a moment ago by the producer; a second client
		// can see "unknown topic" until the broker's metadata catches up.
		eventually(t, 30*time.Second, "write a raw record to "+prod.Topic("b"), func() error {
			return w.WriteMessages(ctx, rec)
		})
	}
	for i := 5; i < 10; i++ {
		if err := prod.Hint(ctx, put(i).hint("b")); err != nil {
			t.Fatal(err)
		}
	}

	r := hintsReplayer(t, prefix, "b", hints.NewCQLApplier(sb, ks), good)
	runReplayer(t, r)
	eventually(t, 2*time.Minute, "good hints replayed and bad ones dead-lettered", func() error {
		replayed := gauge(t, r, "tidemark_hints_replayed_total")
		dead := gauge(t, r, "tidemark_hints_dead_lettered_total")
		if replayed != 10 || dead != 3 {
			return fmt.Errorf("replayed %v (want 10), dead-lettered %v (want 3)", replayed, dead)
		}
		return nil
	})
	for _, reason := range []string{hints.ReasonCorrupt, hints.ReasonUnauthenticated, hints.ReasonExpired} {
		if got := gauge(t, r, "tidemark_hints_dead_lettered_total", "reason", reason); got != 1 {
			t.Errorf("dead_lettered{reason=%s} = %v, want 1", reason, got)
		}
	}
	rows := readTable(t, sb, ks)
	if len(rows) != 10 {
		t.Errorf("region B has %d rows, want the 10 good ones", len(rows))
	}
	for _, k := range []string{"forged/c", "expired/c"} {
		if _, ok := rows[k]; ok {
			t.Errorf("%s was applied", k)
		}
	}
	dead := readTopic(t, prefix+hints.DeadLetterSuffix)
	byReason := map[string]kafka.Message{}
	for _, m := range dead {
		for _, h := range m.Headers {
			if h.Key == hints.HeaderReason {
				byReason[string(h.Value)] = m
			}
		}
	}
	for reason, orig := range map[string][]byte{hints.ReasonCorrupt: corrupt, hints.ReasonUnauthenticated: forgedRec, hints.ReasonExpired: expiredRec} {
		m, ok := byReason[reason]
		if !ok {
			t.Errorf("no dead letter with reason %q in %s (have %d records)", reason, prefix+hints.DeadLetterSuffix, len(dead))
			continue
		}
		if !bytes.Equal(m.Value, orig) {
			t.Errorf("dead letter %q does not carry the original bytes", reason)
		}
	}
}

// TestHintsReplayersShareGroup: two replayers of one region in one
// consumer group split the partitions and together apply every hint.
func TestHintsReplayersShareGroup(t *testing.T) {
	t.Parallel()
	const n = 2000
	ks := newKeyspace(t, "b")
	hintsTable(t, ks, "b")
	prefix := newTopicPrefix(t)
	prod := hintsProducer(t, prefix, nil)
	sb := directSession(t, "b", ks)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := prod.EnsureTopic(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	r1 := hintsReplayer(t, prefix, "b", hints.NewCQLApplier(sb, ks), nil)
	r2 := hintsReplayer(t, prefix, "b", hints.NewCQLApplier(sb, ks), nil)
	runReplayer(t, r1)
	runReplayer(t, r2)
	time.Sleep(3 * time.Second) // let both join before the hints arrive
	muts := makeMutations(n, 2)
	if err := parallel(n, 16, func(i int) error {
		m := muts[i]
		m.at = time.Now()
		return prod.Hint(ctx, m.hint("b"))
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Minute, "every row in B", func() error {
		if c := countRows(t, sb, ks); c != n {
			return fmt.Errorf("%d rows", c)
		}
		return nil
	})
	c1, c2 := gauge(t, r1, "tidemark_hints_replayed_total"), gauge(t, r2, "tidemark_hints_replayed_total")
	t.Logf("replayer 1 applied %v, replayer 2 applied %v", c1, c2)
	if c1 == 0 || c2 == 0 {
		t.Errorf("one replayer did all the work (%v, %v): the group did not share partitions", c1, c2)
	}
	if c1+c2 < n {
		t.Errorf("applied %v in all, want >= %d", c1+c2, n)
	}
}

// TestHintsKafkaDownProducerFailsFast stops the shared broker while hints
// are being produced: Hint returns ErrUnavailable promptly (well inside its
// deadline once the breaker is open), the failures metric counts them, and
// after the broker is back hints are stored again. Not parallel: it stops
// the shared broker.
func TestHintsKafkaDownProducerFailsFast(t *testing.T) {
	l := localEnv(t)
	prefix := newTopicPrefix(t)
	p, err := hints.NewProducer(hints.ProducerConfig{
		Brokers:           l.KafkaBrokers(),
		TopicPrefix:       prefix,
		Partitions:        2,
		ReplicationFactor: 1,
		ProduceTimeout:    3 * time.Second,
		BreakerOpenFor:    2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	deleteTopicsAtCleanup(t, prefix+"b")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	h := func(i int) record.Hint {
		return record.Hint{Target: "b", Origin: "a", Namespace: hintsNS, PK: fmt.Appendf(nil, "k%d", i), Value: []byte("v"), Timestamp: int64(i)}
	}
	for i := range 10 {
		if err := p.Hint(ctx, h(i)); err != nil {
			t.Fatalf("hint before the outage: %v", err)
		}
	}

	if err := l.Broker().Kill(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			rctx, rcancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer rcancel()
			if err := l.RestartKafka(rctx); err != nil {
				t.Errorf("restart kafka after the test: %v", err)
			}
		}
	}()

	const calls = 50
	var slowest time.Duration
	var unavailable int
	for i := range calls {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		begin := time.Now()
		err := p.Hint(cctx, h(100+i))
		d := time.Since(begin)
		ccancel()
		if err == nil {
			t.Fatalf("hint %d succeeded with the broker down", i)
		}
		if errors.Is(err, hints.ErrUnavailable) {
			unavailable++
		} else {
			t.Errorf("hint %d: %v, want ErrUnavailable", i, err)
		}
		if i >= 10 {
			slowest = max(slowest, d)
		}
	}
	t.Logf("with the broker down: %d/%d ErrUnavailable, slowest of the later calls %v", unavailable, calls, slowest)
	if slowest > 2100*time.Millisecond {
		t.Errorf("a hint took %v with the broker down, past its 2s deadline", slowest)
	}
	if got := gauge(t, p, "tidemark_hints_produce_failures_total", "region", "b", "reason", "unavailable"); got != calls {
		t.Errorf("failures{reason=unavailable} = %v, want %d", got, calls)
	}

	if err := l.RestartKafka(ctx); err != nil {
		t.Fatalf("restart kafka: %v", err)
	}
	restarted = true
	eventually(t, 2*time.Minute, "hints stored again after the broker came back", func() error {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		return p.Hint(cctx, h(1000))
	})
	// Recovered means recovered for everyone: concurrent hints all go
	// through (a breaker stuck half-open would let one at a time).
	const concurrent = 32
	before := gauge(t, p, "tidemark_hints_produced_total", "region", "b")
	if err := parallel(concurrent, concurrent, func(i int) error {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		return p.Hint(cctx, h(2000+i))
	}); err != nil {
		t.Fatalf("concurrent hints after recovery: %v", err)
	}
	if got := gauge(t, p, "tidemark_hints_produced_total", "region", "b"); got != before+concurrent {
		t.Errorf("produced = %v after %d concurrent hints, want %v", got, concurrent, before+concurrent)
	}
	if got := gauge(t, p, "tidemark_hints_produced_total", "region", "b"); got < 11+concurrent {
		t.Errorf("produced = %v, want >= %d", got, 11+concurrent)
	}
}

// TestHintsThroughStore writes through store.Open with the Kafka producer as
// its hint sink while region B is cut, then replays B's hints and checks B
// equals A.
func TestHintsThroughStore(t *testing.T) {
	t.Parallel()
	const n = 300
	ks := newKeyspace(t, "a", "b")
	prefix := newTopicPrefix(t)
	// This test is about replay, not timeouts: under a loaded CI run a
	// burst of hints may take longer than 5 s, and each hint is bounded by
	// the producer's ProduceTimeout as well as the store's HintTimeout (a
	// longer HintTimeout alone changed nothing: hints still timed out at
	// 5 s, and the store counted them uncertain and left them to repair).
	prod := hintsProducerWith(t, prefix, func(c *hints.ProducerConfig) { c.ProduceTimeout = 30 * time.Second })
	proxyB := frontRegion(t, "b")
	ra, rb := region(t, "a"), proxiedRegion(t, "b", proxyB)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	st, err := store.Open(ctx, store.Config{
		Regions: []store.RegionConfig{
			{Name: "a", ContactPoints: ra.Hosts, LocalDC: ra.DC},
			{Name: "b", ContactPoints: rb.ContactPoints, LocalDC: rb.LocalDC, AddressMap: rb.AddressMap},
		},
		Home:        "a",
		Keyspace:    ks,
		Timeout:     2 * time.Second,
		HintSink:    prod,
		HintTimeout: 30 * time.Second, // as the producer's, above
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	defer st.Close()
	ns, err := st.CreateNamespace(ctx, hintsNS)
	if err != nil {
		t.Fatalf("CreateNamespace: %v", err)
	}
	if err := proxyB.Refuse(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		pk, ck := fmt.Appendf(nil, "p%03d", i/5), fmt.Appendf(nil, "c%d", i%5)
		var err error
		switch i % 3 {
		case 0:
			err = ns.Put(ctx, pk, ck, fmt.Appendf(nil, "v%d", i))
		case 1:
			err = ns.Put(ctx, pk, ck, fmt.Appendf(nil, "t%d", i), store.WithTTL(time.Hour))
		default:
			err = ns.Delete(ctx, pk, ck)
		}
		if err != nil {
			t.Fatalf("write %d with B cut: %v", i, err)
		}
	}
	sa, sbDirect := directSession(t, "a", ks), directSession(t, "b", ks)
	a := readTable(t, sa, ks)
	if len(a) != n {
		t.Fatalf("A has %d rows, want %d", len(a), n)
	}
	eventually(t, 2*time.Minute, "every missed write hinted", func() error {
		if got := gauge(t, prod, "tidemark_hints_produced_total", "region", "b"); got != n {
			// Hints that will never come say why.
			return fmt.Errorf("%v hints for B; the store left %v to repair and counted %v uncertain; the producer's failures: %v",
				got, counter(t, st.Metrics(), "tidemark_store_hints_failed_total"), counter(t, st.Metrics(), "tidemark_store_hints_uncertain_total"),
				counter(t, prod, "tidemark_hints_produce_failures_total"))
		}
		return nil
	})
	if c := countRows(t, sbDirect, ks); c != 0 {
		t.Fatalf("cut region B has %d rows", c)
	}
	if err := proxyB.Heal(); err != nil {
		t.Fatal(err)
	}
	r := hintsReplayer(t, prefix, "b", hints.NewCQLApplier(sbDirect, ks), nil)
	runReplayer(t, r)
	eventually(t, 3*time.Minute, "B equals A", func() error {
		if d := diffTables(readTable(t, sa, ks), readTable(t, sbDirect, ks)); d != "" {
			return errors.New(d)
		}
		return nil
	})
}

// TestHintsTableRetentionBoundsReplay: a namespace created with a 1-hour
// tombstone retention must never take a hint older than an hour, whatever
// the replayer's global Retention (10 days here): a put whose row was then
// deleted could otherwise come back after the deletion marker expired. The
// hint of a 2-hour-old write to that table is dead-lettered as expired and
// not applied, while a fresh hint to it and a 2-hour-old hint to a table
// with the default retention are applied.
func TestHintsTableRetentionBoundsReplay(t *testing.T) {
	t.Parallel()
	const shortNS = "shortlived"
	ks := newKeyspace(t, "b")
	hintsTable(t, ks, "b")
	s := adminSession(t, region(t, "b"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := s.Query(schema.CreateTable(ks, shortNS, time.Hour)).ExecContext(ctx); err != nil {
		t.Fatalf("create table: %v", err)
	}
	if err := s.AwaitSchemaAgreement(ctx); err != nil {
		t.Fatal(err)
	}
	prefix := newTopicPrefix(t)
	prod := hintsProducer(t, prefix, nil)
	sb := directSession(t, "b", ks)

	now := time.Now()
	twoHoursAgo := now.Add(-2 * time.Hour).UnixMicro()
	stale := record.Hint{Target: "b", Origin: "a", Namespace: shortNS, PK: []byte("stale"), CK: []byte("c"),
		Value: []byte("deleted-long-ago"), Timestamp: twoHoursAgo, CreatedAt: now}
	for _, h := range []record.Hint{
		stale,
		{Target: "b", Origin: "a", Namespace: shortNS, PK: []byte("fresh"), CK: []byte("c"), Value: []byte("new"), Timestamp: now.UnixMicro(), CreatedAt: now},
		{Target: "b", Origin: "a", Namespace: hintsNS, PK: []byte("old-ok"), CK: []byte("c"), Value: []byte("within-10d"), Timestamp: twoHoursAgo, CreatedAt: now},
	} {
		if err := prod.Hint(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	r := hintsReplayer(t, prefix, "b", hints.NewCQLApplier(sb, ks), nil)
	runReplayer(t, r)
	eventually(t, 2*time.Minute, "fresh hints applied, the stale one dead-lettered", func() error {
		replayed := gauge(t, r, "tidemark_hints_replayed_total")
		dead := gauge(t, r, "tidemark_hints_dead_lettered_total", "reason", hints.ReasonExpired)
		if replayed != 2 || dead != 1 {
			return fmt.Errorf("replayed %v (want 2), dead-lettered as expired %v (want 1)", replayed, dead)
		}
		return nil
	})
	if got := gauge(t, r, "tidemark_hints_dead_lettered_total"); got != 1 {
		t.Errorf("dead letters = %v in all, want 1", got)
	}
	var n int
	if err := sb.Query(fmt.Sprintf("SELECT COUNT(*) FROM %s.%s WHERE pk = ?", ks, shortNS), []byte("stale")).ScanContext(ctx, &n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatal("the hint older than its table's 1h retention was applied")
	}
	if err := sb.Query(fmt.Sprintf("SELECT COUNT(*) FROM %s.%s WHERE pk = ?", ks, shortNS), []byte("fresh")).ScanContext(ctx, &n); err != nil || n != 1 {
		t.Fatalf("fresh hint: %d rows, %v", n, err)
	}
	if rows := readTable(t, sb, ks); rows["old-ok/c"].writetime != twoHoursAgo {
		t.Errorf("2h-old hint to the 10-day table: row %v, want writetime %d", rows["old-ok/c"], twoHoursAgo)
	}
	var found bool
	for _, m := range readTopic(t, prefix+hints.DeadLetterSuffix) {
		h, err := record.Decode(m.Value, nil)
		if err == nil && string(h.PK) == "stale" {
			found = true
		}
	}
	if !found {
		t.Error("the stale hint is not in the dead-letter topic")
	}
}

// TestHintsLargestStoreRow: the largest row a store with default limits
// accepts — a 1 MiB value with a partition key and a clustering key of
// 64 KiB - 1 each — is hinted with the producer's defaults, goes through
// the real broker and is replayed into region B intact.
func TestHintsLargestStoreRow(t *testing.T) {
	t.Parallel()
	ks := newKeyspace(t, "b")
	hintsTable(t, ks, "b")
	prefix := newTopicPrefix(t)
	prod := hintsProducer(t, prefix, nil)
	sb := directSession(t, "b", ks)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	now := time.Now()
	pk := bytes.Repeat([]byte("p"), schema.MaxPartitionKey)
	ck := bytes.Repeat([]byte("c"), schema.MaxClusteringKey)
	value := make([]byte, store.DefaultMaxValueSize)
	for i := range value {
		value[i] = byte(i * 7)
	}
	big := record.Hint{Target: "b", Origin: "a", Namespace: hintsNS, PK: pk, CK: ck, Value: value, Timestamp: now.UnixMicro(), CreatedAt: now}
	if err := prod.Hint(ctx, big); err != nil {
		t.Fatalf("hint of the largest legal row: %v", err)
	}
	small := record.Hint{Target: "b", Origin: "a", Namespace: hintsNS, PK: []byte("small"), CK: []byte("c"), Value: []byte("v"), Timestamp: now.UnixMicro(), CreatedAt: now}
	if err := prod.Hint(ctx, small); err != nil {
		t.Fatal(err)
	}
	recs := readTopic(t, prod.Topic("b"))
	if len(recs) != 2 {
		t.Fatalf("topic holds %d records, want 2", len(recs))
	}

	r := hintsReplayer(t, prefix, "b", hints.NewCQLApplier(sb, ks), nil)
	runReplayer(t, r)
	eventually(t, 2*time.Minute, "both hints replayed", func() error {
		if got := gauge(t, r, "tidemark_hints_replayed_total"); got != 2 {
			return fmt.Errorf("replayed %v", got)
		}
		return nil
	})
	var got []byte
	var wt int64
	if err := sb.Query(schema.SelectRow(ks, hintsNS), pk, ck).ScanContext(ctx, &got, new(bool), &wt, new(*int), new(int64)); err != nil {
		t.Fatalf("read the large row: %v", err)
	}
	if !bytes.Equal(got, value) || wt != big.Timestamp {
		t.Fatalf("large row: %d bytes at %d, want %d bytes at %d", len(got), wt, len(value), big.Timestamp)
	}
	if dl := gauge(t, r, "tidemark_hints_dead_lettered_total"); dl != 0 {
		t.Fatalf("%v dead letters", dl)
	}
}

// fatalRecorder is a testing.TB whose Fatalf records the failure and ends
// the calling goroutine, as the real one does, without failing the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// TestHintsGaugeRefusesUnknownMetrics: the gauge helper fails the test for
// a metric name or label that the collector does not export, instead of
// reading 0 (which would make "== 0" checks pass by accident).
func TestHintsGaugeRefusesUnknownMetrics(t *testing.T) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_test_total", Help: "test"}, []string{"region"})
	c.WithLabelValues("a").Add(0)
	if got := gauge(t, c, "tidemark_test_total", "region", "a"); got != 0 {
		t.Fatalf("gauge = %v, want 0", got)
	}
	c.WithLabelValues("a").Add(2)
	if got := gauge(t, c, "tidemark_test_total"); got != 2 {
		t.Fatalf("gauge = %v, want 2", got)
	}
	for name, args := range map[string][]string{
		"misspelt name":   {"tidemark_test_totl"},
		"unknown label":   {"tidemark_test_total", "region", "b"},
		"odd label pairs": {"tidemark_test_total", "region"},
	} {
		rec := &fatalRecorder{TB: t}
		result := make(chan float64, 1)
		finished := make(chan struct{})
		go func() {
			defer close(finished) // also runs after Goexit
			result <- gauge(rec, c, args[0], args[1:]...)
		}()
		<-finished
		var got float64
		returned := false
		select {
		case got = <-result:
			returned = true
		default:
		}
		if returned || rec.msg == "" {
			t.Errorf("%s: gauge%q returned %v instead of failing the test", name, args, got)
		} else {
			t.Logf("%s: %s", name, rec.msg)
		}
	}
}

// TestCellProblem: diffTables accepts a copy whose cell outlives the row's
// expiry by its apply delay, and flags one that dies before it or was
// written with a fresh TTL instead of the one that remained.
func TestCellProblem(t *testing.T) {
	const exp = 1_800_000_000
	cases := []struct {
		name   string
		r      rowState
		flawed bool
	}{
		{"no expiry", rowState{}, false},
		{"cell at the expiry", rowState{expires: exp, ttl: 100, cellLo: exp - 1, cellHi: exp + 1}, false},
		{"applied 2 s late", rowState{expires: exp, ttl: 100, cellLo: exp + 2, cellHi: exp + 3}, false},
		{"dies a second early", rowState{expires: exp, ttl: 100, cellLo: exp - 3, cellHi: exp - 1}, true},
		{"fresh TTL, written 2 minutes later", rowState{expires: exp, ttl: 100, cellLo: exp + 120, cellHi: exp + 121}, true},
		{"expiry without a TTL", rowState{expires: exp}, true},
		{"TTL without an expiry", rowState{ttl: 100, cellLo: exp, cellHi: exp + 1}, true},
	}
	for _, c := range cases {
		if p := c.r.cellProblem(); (p != "") != c.flawed {
			t.Errorf("%s: cellProblem() = %q, want a problem: %v", c.name, p, c.flawed)
		}
	}
}
