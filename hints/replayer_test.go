package hints

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tidemark/tidemark/hints/record"
	"github.com/tidemark/tidemark/internal/schema"
)

// fakeTopic is an in-memory stand-in for a hint topic and its consumer
// group's committed offsets. It records the order of applies, dead letters
// and commits so tests can check that nothing is committed before it is
// settled.
type fakeTopic struct {
	mu        sync.Mutex
	msgs      []kafka.Message  // in offset order per partition
	committed map[int]int64    // partition -> next offset to read
	settledAt map[[2]int64]int // (partition, offset) -> event index when applied/dead-lettered
	commitAt  map[[2]int64]int // (partition, offset) -> event index of the commit that covered it
	events    int              // event counter
	commits   int              // CommitMessages calls
	failNext  atomic.Int32     // CommitMessages failures to inject
}

func newFakeTopic() *fakeTopic {
	return &fakeTopic{committed: map[int]int64{}, settledAt: map[[2]int64]int{}, commitAt: map[[2]int64]int{}}
}

func (t *fakeTopic) add(partition int, value []byte, key []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var off int64
	for _, m := range t.msgs {
		if m.Partition == partition {
			off++
		}
	}
	t.msgs = append(t.msgs, kafka.Message{Topic: "tidemark.hints.b", Partition: partition, Offset: off, Key: key, Value: value})
}

func (t *fakeTopic) settle(m kafka.Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.events++
	k := [2]int64{int64(m.Partition), m.Offset}
	if _, ok := t.settledAt[k]; !ok {
		t.settledAt[k] = t.events
	}
}

func (t *fakeTopic) allCommitted() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range t.msgs {
		if t.committed[m.Partition] <= m.Offset {
			return false
		}
	}
	return true
}

// lag is what groupAdmin.lag measures on a real topic: the records at or
// past their partition's committed offset.
func (t *fakeTopic) lag(context.Context) (int64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var n int64
	for _, m := range t.msgs {
		if m.Offset >= t.committed[m.Partition] {
			n++
		}
	}
	return n, nil
}

func (t *fakeTopic) commitCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.commits
}

// fetcher returns a consumer that starts at the committed offsets and
// also delivers records added later.
func (t *fakeTopic) fetcher() fetcher {
	t.mu.Lock()
	defer t.mu.Unlock()
	return &fakeFetcher{t: t, from: maps.Clone(t.committed)}
}

type fakeFetcher struct {
	t    *fakeTopic
	from map[int]int64 // partition -> first offset to deliver
	mu   sync.Mutex
	next int // index into t.msgs
}

func (f *fakeFetcher) FetchMessage(ctx context.Context) (kafka.Message, error) {
	for {
		f.mu.Lock()
		f.t.mu.Lock()
		for f.next < len(f.t.msgs) {
			m := f.t.msgs[f.next]
			f.next++
			if m.Offset >= f.from[m.Partition] {
				f.t.mu.Unlock()
				f.mu.Unlock()
				return m, nil
			}
		}
		f.t.mu.Unlock()
		f.mu.Unlock()
		select {
		case <-ctx.Done():
			return kafka.Message{}, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

func (f *fakeFetcher) CommitMessages(ctx context.Context, msgs ...kafka.Message) error {
	t := f.t
	if t.failNext.Load() > 0 {
		t.failNext.Add(-1)
		return errors.New("injected commit failure")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.events++
	t.commits++
	for _, m := range msgs {
		if m.Offset+1 > t.committed[m.Partition] {
			t.committed[m.Partition] = m.Offset + 1
		}
	}
	// Every message at or below a committed offset is now covered.
	for _, m := range t.msgs {
		k := [2]int64{int64(m.Partition), m.Offset}
		if _, done := t.commitAt[k]; !done && m.Offset < t.committed[m.Partition] {
			t.commitAt[k] = t.events
		}
	}
	return nil
}

func (f *fakeFetcher) Close() error { return nil }

// fakeDead is the dead-letter topic.
type fakeDead struct {
	t    *fakeTopic
	mu   sync.Mutex
	got  []kafka.Message
	down atomic.Bool
}

func (d *fakeDead) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	if d.down.Load() {
		return errors.New("dead-letter topic unreachable")
	}
	d.mu.Lock()
	d.got = append(d.got, msgs...)
	d.mu.Unlock()
	for _, m := range msgs {
		p, o := headerInt(m, HeaderPartition), headerInt(m, HeaderOffset)
		d.t.settle(kafka.Message{Partition: int(p), Offset: o})
	}
	return nil
}

func (d *fakeDead) Close() error { return nil }

func (d *fakeDead) reasons() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]int{}
	for _, m := range d.got {
		out[header(m, HeaderReason)]++
	}
	return out
}

func header(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func headerInt(m kafka.Message, key string) int64 {
	var n int64
	fmt.Sscan(header(m, key), &n)
	return n
}

// fakeRegion applies hints with last-write-wins, can be "down", and
// records every attempt.
type fakeRegion struct {
	t        *fakeTopic
	mu       sync.Mutex
	rows     map[string]record.Hint
	applied  map[string]int // key -> times applied
	attempts atomic.Int64
	probes   atomic.Int64 // Probe calls (probingRegion)
	down     atomic.Bool
	delay    time.Duration
	reject   string // namespace refused permanently
	msgOf    func(h record.Hint) kafka.Message
	poison   map[string]error // pk -> error every apply of that hint fails with
	tries    map[string]int   // pk -> Apply calls
}

func rowKey(h record.Hint) string { return fmt.Sprintf("%s/%x/%x", h.Namespace, h.PK, h.CK) }

func (r *fakeRegion) Apply(ctx context.Context, h record.Hint) error {
	r.attempts.Add(1)
	if r.delay > 0 {
		select {
		case <-time.After(r.delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	if r.tries == nil {
		r.tries = map[string]int{}
	}
	r.tries[string(h.PK)]++
	poison := r.poison[string(h.PK)]
	r.mu.Unlock()
	if r.down.Load() {
		return errors.New("region b unreachable")
	}
	if poison != nil {
		return poison
	}
	if h.Namespace == r.reject {
		return fmt.Errorf("%w: unconfigured table %s", ErrPermanent, h.Namespace)
	}
	r.mu.Lock()
	k := rowKey(h)
	if cur, ok := r.rows[k]; !ok || cur.Timestamp < h.Timestamp {
		r.rows[k] = h
	}
	r.applied[k]++
	r.mu.Unlock()
	if r.msgOf != nil {
		r.t.settle(r.msgOf(h))
	}
	return nil
}

func (r *fakeRegion) triesOf(pk string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tries[pk]
}

func (r *fakeRegion) rowCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.rows)
}

// probingRegion is a fakeRegion whose Applier implements Prober: the
// replicas answer unless the region is down.
type probingRegion struct {
	*fakeRegion
}

func (p *probingRegion) Probe(ctx context.Context, h record.Hint) error {
	p.probes.Add(1)
	if p.down.Load() {
		return errors.New("region b unreachable")
	}
	return nil
}

type harness struct {
	t      *testing.T
	topic  *fakeTopic
	region *fakeRegion
	dead   *fakeDead
	byPK   map[string]kafka.Message // pk -> message, to map applies to offsets
	mu     sync.Mutex
	now    atomic.Int64 // unix µs of the replayer's clock
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, topic: newFakeTopic(), byPK: map[string]kafka.Message{}}
	h.region = &fakeRegion{t: h.topic, rows: map[string]record.Hint{}, applied: map[string]int{}}
	h.region.msgOf = func(x record.Hint) kafka.Message {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.byPK[string(x.PK)]
	}
	h.dead = &fakeDead{t: h.topic}
	h.now.Store(t0.UnixMicro())
	return h
}

// addHint appends an encoded hint (unique pk) to the fake topic.
func (h *harness) addHint(partition int, x record.Hint, kr *record.Keyring) {
	h.t.Helper()
	b, err := record.Encode(x, kr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.addRaw(partition, x.PK, b)
}

func (h *harness) addRaw(partition int, pk, b []byte) {
	h.topic.add(partition, b, pk)
	h.topic.mu.Lock()
	m := h.topic.msgs[len(h.topic.msgs)-1]
	h.topic.mu.Unlock()
	h.mu.Lock()
	h.byPK[string(pk)] = m
	h.mu.Unlock()
}

func (h *harness) replayer(mod func(*ReplayerConfig)) *Replayer {
	h.t.Helper()
	cfg := ReplayerConfig{
		Brokers:    []string{"127.0.0.1:1"},
		Region:     "b",
		Applier:    h.region,
		BatchSize:  8,
		BackoffMin: 2 * time.Millisecond,
		BackoffMax: 10 * time.Millisecond,
		Retention:  240 * time.Hour,
	}
	if mod != nil {
		mod(&cfg)
	}
	r, err := NewReplayer(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	r.newFetcher = h.topic.fetcher
	r.dead = h.dead
	r.ensureTopics = func(context.Context) error { return nil }
	r.measureLag = h.topic.lag
	r.evictPrevious = func(context.Context) (int, error) { return 0, nil }
	r.transport = nil
	r.now = func() time.Time { return time.UnixMicro(h.now.Load()) }
	return r
}

// start runs r in the background; the returned stop cancels it and waits.
func start(t *testing.T, r *Replayer) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	return func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Run returned %v, want nil after cancel", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after its context was canceled")
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func goodHint(i int) record.Hint {
	return record.Hint{Target: "b", Origin: "a", Namespace: "users", PK: []byte(fmt.Sprintf("pk%04d", i)), CK: []byte("c"),
		Value: []byte(fmt.Sprintf("v%d", i)), Timestamp: t0.Add(-2*time.Minute).UnixMicro() + int64(i), CreatedAt: t0.Add(-time.Minute)}
}

// checkCommitOrder fails if any record was committed before it was applied
// or dead-lettered.
func checkCommitOrder(t *testing.T, ft *fakeTopic) {
	t.Helper()
	ft.mu.Lock()
	defer ft.mu.Unlock()
	for k, c := range ft.commitAt {
		s, ok := ft.settledAt[k]
		if !ok {
			t.Errorf("partition %d offset %d committed (event %d) but never applied or dead-lettered", k[0], k[1], c)
		} else if s > c {
			t.Errorf("partition %d offset %d committed at event %d before it was settled at event %d", k[0], k[1], c, s)
		}
	}
}

func TestReplayerAppliesThenCommits(t *testing.T) {
	h := newHarness(t)
	const n = 50
	for i := range n {
		h.addHint(i%3, goodHint(i), nil)
	}
	r := h.replayer(nil)
	stop := start(t, r)
	waitFor(t, "all offsets committed", h.topic.allCommitted)
	stop()
	if got := len(h.region.rows); got != n {
		t.Fatalf("region has %d rows, want %d", got, n)
	}
	checkCommitOrder(t, h.topic)
	if got := metricValue(r.metrics.replayed); got != n {
		t.Errorf("replayed metric = %v, want %d", got, n)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close = %v, want ErrClosed", err)
	}
}

func TestReplayerPausesWhileRegionDown(t *testing.T) {
	h := newHarness(t)
	const n = 20
	for i := range n {
		h.addHint(i%2, goodHint(i), nil)
	}
	h.region.down.Store(true)
	r := h.replayer(func(c *ReplayerConfig) { c.BatchSize = 32 })
	stop := start(t, r)
	defer stop()

	waitFor(t, "pause", func() bool { return metricValue(r.metrics.paused) == 1 })
	time.Sleep(200 * time.Millisecond)
	if c := h.topic.commitCount(); c != 0 {
		t.Fatalf("%d commits while the region was down, want 0", c)
	}
	// Not a busy loop: one round of n attempts, then single probes spaced
	// by at least BackoffMin/2 = 1ms; a busy loop would make tens of
	// thousands in 200ms.
	if a := h.region.attempts.Load(); a > n+250 {
		t.Fatalf("%d apply attempts in ~200ms while down: replayer is busy-looping", a)
	}
	if f := metricValue(r.metrics.applyFailures); f < n {
		t.Fatalf("apply failures metric = %v, want >= %d", f, n)
	}
	if age := metricValue(r.metrics.oldestAge); age < 59 {
		t.Errorf("oldest unreplayed age = %vs while paused, want >= 60s", age)
	}

	h.region.down.Store(false)
	waitFor(t, "all offsets committed after the region came back", h.topic.allCommitted)
	if got := len(h.region.rows); got != n {
		t.Fatalf("region has %d rows after resuming, want %d", got, n)
	}
	if metricValue(r.metrics.paused) != 0 {
		t.Error("still reported paused after resuming")
	}
	checkCommitOrder(t, h.topic)
}

func TestReplayerDeadLetters(t *testing.T) {
	h := newHarness(t)
	good := mustKeyring(t, record.KeyringConfig{Current: testKey("k1")})
	wrong := mustKeyring(t, record.KeyringConfig{Current: record.Key{ID: "k1", Secret: []byte("not-the-real-secret!")}})

	want := map[string]int{}
	add := func(reason string, x record.Hint, kr *record.Keyring) {
		h.addHint(len(h.topic.msgs)%2, x, kr)
		if reason != "" {
			want[reason]++
		}
	}
	add("", goodHint(0), good)
	h.addRaw(1, []byte("corrupt-1"), []byte("definitely not a hint"))
	want[ReasonCorrupt]++
	h.addRaw(0, []byte("corrupt-2"), append([]byte{0x89, 'T', 'M', 'H', 9}, make([]byte, 20)...)) // future version
	want[ReasonCorrupt]++
	add(ReasonUnauthenticated, goodHint(1), wrong)
	add(ReasonUnauthenticated, goodHint(2), nil) // unsigned
	expired := goodHint(3)
	expired.ExpiresAt = t0.Add(-time.Second)
	add(ReasonExpired, expired, good)
	old := goodHint(4)
	old.CreatedAt = t0.Add(-241 * time.Hour)
	add(ReasonExpired, old, good)
	oldWrite := goodHint(8) // hinted recently, but the write itself is older than the retention
	oldWrite.Timestamp = t0.Add(-241 * time.Hour).UnixMicro()
	add(ReasonExpired, oldWrite, good)
	noCreated := goodHint(9) // no CreatedAt: the age is the write's
	noCreated.CreatedAt = time.Time{}
	noCreated.Timestamp = t0.Add(-241 * time.Hour).UnixMicro()
	add(ReasonExpired, noCreated, good)
	mis := goodHint(5)
	mis.Target = "c"
	add(ReasonMisrouted, mis, good)
	rej := goodHint(6)
	rej.Namespace = "dropped"
	add(ReasonRejected, rej, good)
	add("", goodHint(7), good)
	h.region.reject = "dropped"

	r := h.replayer(func(c *ReplayerConfig) { c.Keyring = good })
	stop := start(t, r)
	waitFor(t, "all offsets committed", h.topic.allCommitted)
	stop()

	if got := h.dead.reasons(); !mapsEqual(got, want) {
		t.Fatalf("dead-letter reasons = %v, want %v", got, want)
	}
	for reason, n := range want {
		if got := metricValue(r.metrics.deadLettered.WithLabelValues(reason)); got != float64(n) {
			t.Errorf("dead_lettered{reason=%q} = %v, want %d", reason, got, n)
		}
	}
	if len(h.region.rows) != 2 {
		t.Fatalf("region has %d rows, want the 2 good hints", len(h.region.rows))
	}
	// A dead letter carries the original bytes and where they came from.
	for _, m := range h.dead.got {
		src := h.topic.msgs[slices.IndexFunc(h.topic.msgs, func(o kafka.Message) bool {
			return int64(o.Partition) == headerInt(m, HeaderPartition) && o.Offset == headerInt(m, HeaderOffset)
		})]
		if string(m.Value) != string(src.Value) || string(m.Key) != string(src.Key) {
			t.Errorf("dead letter %s does not carry the original record", header(m, HeaderReason))
		}
		if header(m, HeaderError) == "" || header(m, HeaderRegion) != "b" || header(m, HeaderTopic) == "" {
			t.Errorf("dead letter lacks headers: %v", m.Headers)
		}
	}
	checkCommitOrder(t, h.topic)
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestReplayerDeadLetterOutageBlocksCommit(t *testing.T) {
	h := newHarness(t)
	h.addHint(0, goodHint(0), nil)
	h.addRaw(0, []byte("x"), []byte("garbage"))
	h.addHint(0, goodHint(1), nil)
	h.dead.down.Store(true)
	r := h.replayer(nil)
	stop := start(t, r)
	defer stop()
	waitFor(t, "pause on dead-letter outage", func() bool { return metricValue(r.metrics.paused) == 1 })
	time.Sleep(50 * time.Millisecond)
	// Hint 0 may be committed alone, when a fetch returned it before the
	// garbage record; nothing at or past the garbage (offset 1) may be.
	h.topic.mu.Lock()
	next := h.topic.committed[0]
	h.topic.mu.Unlock()
	if next > 1 {
		t.Fatalf("committed up to offset %d while the dead letter of offset 1 was not durable", next)
	}
	h.dead.down.Store(false)
	waitFor(t, "commit after the dead-letter topic recovered", h.topic.allCommitted)
	if got := h.dead.reasons()[ReasonCorrupt]; got != 1 {
		t.Fatalf("corrupt dead letters = %d, want 1", got)
	}
	checkCommitOrder(t, h.topic)
}

func TestReplayerHintExpiresWhilePaused(t *testing.T) {
	h := newHarness(t)
	x := goodHint(0)
	x.ExpiresAt = t0.Add(time.Hour)
	h.addHint(0, x, nil)
	h.region.down.Store(true)
	r := h.replayer(nil)
	stop := start(t, r)
	defer stop()
	waitFor(t, "pause", func() bool { return metricValue(r.metrics.paused) == 1 })
	h.now.Store(t0.Add(2 * time.Hour).UnixMicro()) // the hint's row is gone everywhere else now
	waitFor(t, "commit", h.topic.allCommitted)
	if len(h.region.rows) != 0 {
		t.Fatal("an expired hint was applied")
	}
	if got := h.dead.reasons()[ReasonExpired]; got != 1 {
		t.Fatalf("expired dead letters = %d, want 1", got)
	}
}

func TestReplayerRestartMissesNothing(t *testing.T) {
	h := newHarness(t)
	const n = 200
	for i := range n {
		h.addHint(i%4, goodHint(i), nil)
	}
	h.region.delay = time.Millisecond
	r1 := h.replayer(func(c *ReplayerConfig) { c.Concurrency = 4 })
	stop1 := start(t, r1)
	waitFor(t, "some progress", func() bool { return h.topic.commitCount() >= 2 })
	stop1() // killed halfway
	if h.topic.allCommitted() {
		t.Fatal("test did not stop the first replayer halfway")
	}
	r2 := h.replayer(nil)
	stop2 := start(t, r2)
	waitFor(t, "all committed by the second replayer", h.topic.allCommitted)
	stop2()
	for i := range n {
		k := rowKey(goodHint(i))
		if h.region.applied[k] == 0 {
			t.Fatalf("hint %d never applied", i)
		}
	}
	checkCommitOrder(t, h.topic)
}

func TestReplayerCommitFailureIsNotFatal(t *testing.T) {
	h := newHarness(t)
	for i := range 5 {
		h.addHint(0, goodHint(i), nil)
	}
	h.topic.failNext.Store(1)
	r := h.replayer(func(c *ReplayerConfig) { c.BatchSize = 2 })
	stop := start(t, r)
	waitFor(t, "commits", h.topic.allCommitted)
	stop()
	if got := metricValue(r.metrics.commitErrors); got != 1 {
		t.Fatalf("commit failures metric = %v, want 1", got)
	}
}

func TestReplayerThrottles(t *testing.T) {
	h := newHarness(t)
	const n = 75
	for i := range n {
		h.addHint(0, goodHint(i), nil)
	}
	r := h.replayer(func(c *ReplayerConfig) { c.MaxHintsPerSecond = 50 })
	begin := time.Now()
	stop := start(t, r)
	waitFor(t, "commits", h.topic.allCommitted)
	elapsed := time.Since(begin)
	stop()
	// 50 hints of burst, then 25 more at 50/s: at least 0.5s (a lower bound
	// only; a slow machine cannot make this fail).
	if elapsed < 450*time.Millisecond {
		t.Fatalf("75 hints at 50/s took %v, want >= 0.5s", elapsed)
	}
}

func TestReplayerCloseStopsRun(t *testing.T) {
	h := newHarness(t)
	r := h.replayer(nil)
	errc := make(chan error, 1)
	go func() { errc <- r.Run(context.Background()) }()
	waitFor(t, "running", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.running })
	if err := r.Run(context.Background()); err == nil {
		t.Fatal("a second concurrent Run succeeded")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Run = %v after Close, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

func TestNewReplayerRejectsBadConfig(t *testing.T) {
	ok := ReplayerConfig{Brokers: []string{"x:1"}, Region: "b", Applier: ApplierFunc(func(context.Context, record.Hint) error { return nil })}
	cases := map[string]func(*ReplayerConfig){
		"no brokers":              func(c *ReplayerConfig) { c.Brokers = nil },
		"no region":               func(c *ReplayerConfig) { c.Region = "" },
		"no applier":              func(c *ReplayerConfig) { c.Applier = nil },
		"negative rate":           func(c *ReplayerConfig) { c.MaxHintsPerSecond = -1 },
		"backoff max<min":         func(c *ReplayerConfig) { c.BackoffMin, c.BackoffMax = time.Second, time.Millisecond },
		"negative max hint bytes": func(c *ReplayerConfig) { c.MaxHintBytes = -1 },
	}
	if _, err := NewReplayer(ok); err != nil {
		t.Fatalf("baseline config refused: %v", err)
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			c := ok
			mod(&c)
			if _, err := NewReplayer(c); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("NewReplayer = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestCQLApplierBind(t *testing.T) {
	a := &cqlApplier{keyspace: "ks", now: func() time.Time { return t0 }}
	cases := []struct {
		name    string
		h       record.Hint
		wantTTL int
		wantErr error
	}{
		{"no expiry", record.Hint{Namespace: "users", PK: []byte("p"), Value: []byte("v"), Timestamp: 9}, 0, nil},
		// The expiry is rounded up to a whole second (the expires column),
		// then the TTL to what remains of it: 26.54s + 1.5s -> 29s -> 3s.
		{"ttl rounds up", record.Hint{Namespace: "users", PK: []byte("p"), Value: []byte("v"), ExpiresAt: t0.Add(1500 * time.Millisecond)}, 3, nil},
		{"deletion marker", record.Hint{Namespace: "users", PK: []byte("p"), Value: []byte("stale"), Deleted: true, ExpiresAt: t0.Add(240 * time.Hour)}, 864001, nil},
		{"expired", record.Hint{Namespace: "users", PK: []byte("p"), ExpiresAt: t0}, 0, ErrExpired},
		{"bad namespace", record.Hint{Namespace: "x;y", PK: []byte("p")}, 0, ErrPermanent},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args, err := a.bind(c.h)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) || !errors.Is(err, ErrPermanent) {
					t.Fatalf("bind = %v, want %v (permanent)", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(schema.Insert("ks", "t"), "?"); len(args) != n {
				t.Fatalf("bind returned %d values, schema.Insert takes %d", len(args), n)
			}
			// Row format 2: no null; a marker's value is an empty blob.
			value, _ := args[2].([]byte)
			if value == nil || (c.h.Deleted && len(value) != 0) {
				t.Errorf("value bound %q (nil: %v), want the value, or empty for a marker, never null", value, value == nil)
			}
			wantExp := int64(0)
			if !c.h.ExpiresAt.IsZero() {
				wantExp = expirySeconds(c.h.ExpiresAt)
			}
			if args[3] != c.h.Deleted || args[5] != wantExp || args[8] != c.h.Timestamp || args[9] != c.wantTTL {
				t.Errorf("bind = %v, want deleted=%v expires=%d ts=%d ttl=%d", args, c.h.Deleted, wantExp, c.h.Timestamp, c.wantTTL)
			}
			// The fingerprint of exactly this version, bound with it.
			ck, _ := args[1].([]byte)
			if fp := schema.Fingerprint(c.h.PK, ck, c.h.Timestamp, c.h.Deleted, args[4].(int64), wantExp); args[6] != fp {
				t.Errorf("fingerprint bound %v, want %d", args[6], fp)
			}
			if args[7] != c.h.Timestamp {
				t.Errorf("ver bound %v, want the hint's timestamp %d", args[7], c.h.Timestamp)
			}
			if ck, ok := args[1].([]byte); !ok || ck == nil {
				t.Error("nil clustering key not bound as an empty blob")
			}
		})
	}
}
