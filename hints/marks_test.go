package hints

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tidemark/tidemark/hints/record"
)

// fakeMarks is a MarkRecorder that keeps every call, runs onRecord (if
// set) at the moment of the call, and fails while fail is set.
type fakeMarks struct {
	mu       sync.Mutex
	calls    [][]Mark
	regions  []string
	onRecord func([]Mark)
	fail     error
}

func (f *fakeMarks) RecordMarks(ctx context.Context, region string, marks []Mark) error {
	if f.onRecord != nil {
		f.onRecord(marks)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, slices.Clone(marks))
	f.regions = append(f.regions, region)
	return f.fail
}

func (f *fakeMarks) got() [][]Mark {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// eventLog records, in order, what the replayer did.
type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (l *eventLog) add(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, fmt.Sprintf(format, args...))
}

func (l *eventLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// loggingDead is a dead-letter writer that logs what it writes.
type loggingDead struct {
	messageWriter
	log *eventLog
}

func (d loggingDead) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	err := d.messageWriter.WriteMessages(ctx, msgs...)
	if err == nil {
		for _, m := range msgs {
			d.log.add("dead %s", m.Key)
		}
	}
	return err
}

// addHeartbeat appends hb, encoded and signed with kr, to partition of
// the fake topic; key names it in the harness.
func (h *harness) addHeartbeat(partition int, key string, hb record.Heartbeat, kr *record.Keyring) {
	h.t.Helper()
	if hb.Partitions == 0 {
		hb.Partition, hb.Partitions = partition, 4
	}
	b, err := record.EncodeHeartbeat(hb, kr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.addRaw(partition, []byte(key), b)
}

// batch returns every record of the fake topic, in the order added.
func (h *harness) batch() []kafka.Message {
	h.topic.mu.Lock()
	defer h.topic.mu.Unlock()
	return slices.Clone(h.topic.msgs)
}

func heartbeatOf(producer string, before int64) record.Heartbeat {
	return record.Heartbeat{Producer: producer, Target: "b", Before: before, Registered: 7, SentAt: t0.Add(-10 * time.Hour)}
}

// TestReplayerMarksAfterTheBatch: the marks of a batch are recorded once,
// after every hint of it was applied and every bad one dead-lettered;
// Mark.Partition is the partition the heartbeat was read from and
// Partitions the heartbeat's own; heartbeats are neither applied nor
// dead-lettered nor counted as hints, and do not age the batch.
func TestReplayerMarksAfterTheBatch(t *testing.T) {
	h := newHarness(t)
	h.region.delay = 5 * time.Millisecond
	h.addHint(0, goodHint(0), nil)                        // p0 o0
	h.addRaw(0, []byte("garbage"), []byte("not a hint"))  // p0 o1, dead-lettered
	h.addHeartbeat(0, "hb0", heartbeatOf("s1", 100), nil) // p0 o2
	h.addHint(1, goodHint(1), nil)                        // p1 o0
	hb := heartbeatOf("s1", 100)
	hb.Partition, hb.Partitions, hb.Closing = 3, 8, true // names another partition
	h.addHeartbeat(1, "hb1", hb, nil)                    // p1 o1
	h.addHint(1, goodHint(2), nil)                       // p1 o2, after the heartbeat: still before the marks are recorded

	var log eventLog
	var r *Replayer
	marks := &fakeMarks{onRecord: func([]Mark) { log.add("marks") }}
	r = h.replayer(func(c *ReplayerConfig) {
		c.Marks, c.Debt = marks, &recordingDebt{}
		c.Applier = ApplierFunc(func(ctx context.Context, x record.Hint) error {
			if age := r.oldestAge(); age > time.Hour {
				t.Errorf("oldest unreplayed age %v while applying: the heartbeat's SentAt counted", age)
			}
			err := h.region.Apply(ctx, x)
			if err == nil {
				log.add("apply %s", x.PK)
			}
			return err
		})
	})
	r.dead = loggingDead{messageWriter: h.dead, log: &log}

	if err := r.process(context.Background(), h.batch()); err != nil {
		t.Fatal(err)
	}
	events := log.all()
	if len(events) != 5 || events[len(events)-1] != "marks" {
		t.Fatalf("events = %v, want 3 applies and a dead letter, then the marks once", events)
	}
	want := []Mark{
		{Producer: "s1", Partition: 0, Partitions: 4, Before: 100, Registered: 7, SentAt: t0.Add(-10 * time.Hour), Offset: 2},
		{Producer: "s1", Partition: 1, Partitions: 8, Before: 100, Registered: 7, Closing: true, SentAt: t0.Add(-10 * time.Hour), Offset: 1},
	}
	got := marks.got()
	if len(got) != 1 || !marksEqual(got[0], want) {
		t.Fatalf("RecordMarks calls = %+v, want one with %+v", got, want)
	}
	if marks.regions[0] != "b" {
		t.Errorf("RecordMarks region = %q, want b", marks.regions[0])
	}
	if n := metricValue(r.metrics.replayed); n != 3 {
		t.Errorf("replayed = %v, want the 3 hints", n)
	}
	if n := metricValue(r.metrics.marksRecorded); n != 2 {
		t.Errorf("marks recorded = %v, want 2", n)
	}
	if got := h.dead.reasons(); len(got) != 1 || got[ReasonCorrupt] != 1 {
		t.Errorf("dead letters = %v, want only the garbage record", got)
	}
	if n := metricValue(r.metrics.heartbeatsSkipped); n != 0 {
		t.Errorf("heartbeats skipped = %v, want 0", n)
	}
}

func marksEqual(a, b []Mark) bool {
	return slices.EqualFunc(a, b, func(x, y Mark) bool {
		return x.Producer == y.Producer && x.Partition == y.Partition && x.Partitions == y.Partitions &&
			x.Before == y.Before && x.Registered == y.Registered && x.Closing == y.Closing &&
			x.SentAt.Equal(y.SentAt) && x.Offset == y.Offset
	})
}

// TestReplayerNoMarkBeforeAnUnappliedHint: a hint before the heartbeat
// that cannot be applied until the replayer stops leaves the heartbeat
// without a mark.
func TestReplayerNoMarkBeforeAnUnappliedHint(t *testing.T) {
	h := newHarness(t)
	h.addHint(0, goodHint(0), nil)
	h.addHeartbeat(0, "hb", heartbeatOf("s1", 100), nil)
	h.addHeartbeat(1, "hb-other", heartbeatOf("s1", 100), nil) // alone in its partition, but in the same batch
	marks := &fakeMarks{}
	started := make(chan struct{})
	var once sync.Once
	r := h.replayer(func(c *ReplayerConfig) {
		c.Marks, c.Debt = marks, &recordingDebt{}
		c.Applier = ApplierFunc(func(ctx context.Context, x record.Hint) error {
			once.Do(func() { close(started) })
			<-ctx.Done()
			return ctx.Err()
		})
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; time.Sleep(20 * time.Millisecond); cancel() }()
	if err := r.process(ctx, h.batch()); err == nil {
		t.Fatal("process returned nil though its hint was never applied")
	}
	if got := marks.got(); len(got) != 0 {
		t.Fatalf("marks recorded %v with a hint before them not applied", got)
	}
	if n := metricValue(r.metrics.marksRecorded) + metricValue(r.metrics.marksFailed); n != 0 {
		t.Errorf("marks counted: %v", n)
	}
}

// TestReplayerSkipsBadHeartbeats: a heartbeat signed with another key,
// unsigned, corrupt or for another region is skipped and counted by
// reason — never dead-lettered, never applied, no mark — and replay goes
// on.
func TestReplayerSkipsBadHeartbeats(t *testing.T) {
	h := newHarness(t)
	kr := mustKeyring(t, record.KeyringConfig{Current: testKey("k1")})
	other := mustKeyring(t, record.KeyringConfig{Current: record.Key{ID: "k1", Secret: []byte("not-the-real-secret!")}})
	unknown := mustKeyring(t, record.KeyringConfig{Current: testKey("k9")})

	h.addHeartbeat(0, "wrong-secret", heartbeatOf("s1", 100), other)
	h.addHeartbeat(0, "unknown-key", heartbeatOf("s1", 100), unknown)
	h.addHeartbeat(0, "unsigned", heartbeatOf("s1", 100), nil)
	good, err := record.EncodeHeartbeat(record.Heartbeat{Producer: "s1", Target: "b", Before: 100, Partitions: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.addRaw(0, []byte("truncated"), good[:len(good)-3])
	mis := heartbeatOf("s1", 100)
	mis.Target = "c"
	h.addHeartbeat(0, "misrouted", mis, kr)
	h.addHint(0, goodHint(0), kr)

	marks := &fakeMarks{}
	r := h.replayer(func(c *ReplayerConfig) { c.Keyring = kr; c.Marks, c.Debt = marks, &recordingDebt{} })
	if err := r.process(context.Background(), h.batch()); err != nil {
		t.Fatal(err)
	}
	for reason, n := range map[string]float64{ReasonUnauthenticated: 3, ReasonCorrupt: 1, ReasonMisrouted: 1} {
		if got := metricValue(r.metrics.heartbeatsSkipped.WithLabelValues(reason)); got != n {
			t.Errorf("heartbeats skipped{reason=%s} = %v, want %v", reason, got, n)
		}
	}
	if len(h.dead.got) != 0 {
		t.Errorf("%d dead letters, want none: a heartbeat is never dead-lettered", len(h.dead.got))
	}
	if got := marks.got(); len(got) != 0 {
		t.Errorf("marks recorded for bad heartbeats: %v", got)
	}
	if h.region.rowCount() != 1 || h.region.attempts.Load() != 1 {
		t.Errorf("region has %d rows after %d applies, want the one hint", h.region.rowCount(), h.region.attempts.Load())
	}
	if n := metricValue(r.metrics.deadLettered); n != 0 {
		t.Errorf("dead-lettered metric = %v, want 0", n)
	}
}

// TestReplayerKeepsNewestMarks: of a batch's heartbeats, one mark per
// (producer, partition) is recorded: the one at the highest offset.
func TestReplayerKeepsNewestMarks(t *testing.T) {
	h := newHarness(t)
	h.addHeartbeat(0, "a", heartbeatOf("s1", 10), nil) // p0 o0
	h.addHeartbeat(1, "b", heartbeatOf("s1", 11), nil) // p1 o0
	h.addHeartbeat(0, "c", heartbeatOf("s2", 12), nil) // p0 o1
	h.addHeartbeat(0, "d", heartbeatOf("s1", 20), nil) // p0 o2: newer than a
	h.addHint(1, goodHint(0), nil)                     // p1 o1
	h.addHeartbeat(1, "e", heartbeatOf("s1", 21), nil) // p1 o2: newer than b
	h.addHeartbeat(0, "f", heartbeatOf("s2", 13), nil) // p0 o3: newer than c
	batch := h.batch()
	// Delivered out of order across partitions, as a consumer may.
	slices.Reverse(batch)

	marks := &fakeMarks{}
	r := h.replayer(func(c *ReplayerConfig) { c.Marks, c.Debt = marks, &recordingDebt{} })
	if err := r.process(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	got := marks.got()
	if len(got) != 1 {
		t.Fatalf("%d RecordMarks calls, want 1", len(got))
	}
	type pos struct {
		producer          string
		partition, offset int
		before            int64
	}
	var have []pos
	for _, m := range got[0] {
		have = append(have, pos{m.Producer, m.Partition, int(m.Offset), m.Before})
	}
	want := []pos{{"s1", 0, 2, 20}, {"s2", 0, 3, 13}, {"s1", 1, 2, 21}}
	if !slices.Equal(have, want) {
		t.Fatalf("marks = %v, want %v", have, want)
	}
}

// TestReplayerMarksThroughRun: Run records the marks of its batches and
// commits them; a recorder that fails is counted and logged, and replay
// goes on.
func TestReplayerMarksThroughRun(t *testing.T) {
	h := newHarness(t)
	for i := range 12 {
		h.addHint(i%2, goodHint(i), nil)
		if i%3 == 2 {
			h.addHeartbeat(i%2, fmt.Sprintf("hb%d", i), heartbeatOf("s1", int64(i)), nil)
		}
	}
	marks := &fakeMarks{fail: errors.New("marks table unreachable")}
	r := h.replayer(func(c *ReplayerConfig) { c.Marks, c.Debt = marks, &recordingDebt{}; c.BatchSize = 4 })
	stop := start(t, r)
	waitFor(t, "all offsets committed", h.topic.allCommitted)
	stop()
	if h.region.rowCount() != 12 {
		t.Fatalf("region has %d rows, want 12", h.region.rowCount())
	}
	var n int
	for _, c := range marks.got() {
		n += len(c)
	}
	if n == 0 {
		t.Fatal("no marks passed to the recorder")
	}
	if got := metricValue(r.metrics.marksFailed); got != float64(n) {
		t.Errorf("marks failed = %v, want %d", got, n)
	}
	if got := metricValue(r.metrics.marksRecorded); got != 0 {
		t.Errorf("marks recorded = %v, want 0", got)
	}
	if len(h.dead.got) != 0 {
		t.Errorf("dead letters: %v", h.dead.reasons())
	}

	// Once the recorder works, the heartbeats replayed again are marks.
	marks.mu.Lock()
	marks.fail = nil
	marks.mu.Unlock()
	h.topic.mu.Lock()
	h.topic.committed = map[int]int64{}
	h.topic.mu.Unlock()
	r2 := h.replayer(func(c *ReplayerConfig) { c.Marks, c.Debt = marks, &recordingDebt{} })
	stop = start(t, r2)
	waitFor(t, "all offsets committed again", h.topic.allCommitted)
	stop()
	if got := metricValue(r2.metrics.marksRecorded); got < 2 {
		t.Errorf("marks recorded = %v, want one per partition at least", got)
	}
}

// TestReplayerWithoutMarkRecorder: with Marks nil, heartbeats are read
// and ignored: the hints around them are applied and committed.
func TestReplayerWithoutMarkRecorder(t *testing.T) {
	h := newHarness(t)
	h.addHint(0, goodHint(0), nil)
	h.addHeartbeat(0, "hb", heartbeatOf("s1", 100), nil)
	h.addHint(0, goodHint(1), nil)
	r := h.replayer(nil)
	stop := start(t, r)
	waitFor(t, "all offsets committed", h.topic.allCommitted)
	stop()
	if h.region.rowCount() != 2 || len(h.dead.got) != 0 {
		t.Fatalf("%d rows, %d dead letters; want 2 and 0", h.region.rowCount(), len(h.dead.got))
	}
}

// flakyDebt fails its first n calls.
type flakyDebt struct {
	recordingDebt
	fail atomic.Int32
}

func (d *flakyDebt) RecordDebt(ctx context.Context, h record.Hint, reason string) error {
	if d.fail.Add(-1) >= 0 {
		return errors.New("home region down")
	}
	return d.recordingDebt.RecordDebt(ctx, h, reason)
}

// TestReplayerMarksWaitForTheDebt: with marks, a rejected hint that cannot
// be recorded as repair debt yet holds the batch (replay paused) until it
// is; a mark recorded before would promise a key the region lacks.
func TestReplayerMarksWaitForTheDebt(t *testing.T) {
	h := newHarness(t)
	bad := goodHint(99)
	h.region.poison = map[string]error{string(bad.PK): errUnauthorized}
	h.addHint(0, goodHint(1), nil) // the region answers: the bad hint fails alone
	h.addHint(0, bad, nil)
	h.addHint(0, goodHint(2), nil)
	h.addHeartbeat(0, "hb", heartbeatOf("s1", 100), nil)
	debt := &flakyDebt{}
	debt.fail.Store(3)
	marks := &fakeMarks{}
	var recorded atomic.Int32
	marks.onRecord = func([]Mark) {
		if len(debt.all()) == 0 {
			t.Error("a mark was recorded before the rejected hint became debt")
		}
		recorded.Add(1)
	}
	r := h.replayer(func(c *ReplayerConfig) {
		c.MaxHintAttempts = 1
		c.Marks, c.Debt = marks, debt
		c.BackoffMin, c.BackoffMax = time.Millisecond, 5*time.Millisecond
	})
	if err := r.process(context.Background(), h.batch()); err != nil {
		t.Fatal(err)
	}
	if recorded.Load() != 1 || len(debt.all()) != 1 {
		t.Fatalf("marks recorded %d times, debt %v", recorded.Load(), debt.all())
	}

	// A debt that never gets recorded: no mark, and process ends with ctx.
	h2 := newHarness(t)
	h2.region.poison = map[string]error{string(bad.PK): errUnauthorized}
	h2.addHint(0, goodHint(1), nil)
	h2.addHint(0, bad, nil)
	h2.addHint(0, goodHint(2), nil)
	h2.addHeartbeat(0, "hb", heartbeatOf("s1", 100), nil)
	never := &flakyDebt{}
	never.fail.Store(1 << 30)
	marks2 := &fakeMarks{onRecord: func([]Mark) { t.Error("a mark was recorded for a batch whose rejected hint is not debt") }}
	r2 := h2.replayer(func(c *ReplayerConfig) {
		c.MaxHintAttempts = 1
		c.Marks, c.Debt = marks2, never
		c.BackoffMin, c.BackoffMax = time.Millisecond, 5*time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := r2.process(ctx, h2.batch()); err == nil {
		t.Fatal("process finished a batch whose rejected hint could not become debt")
	}
	if _, err := NewReplayer(ReplayerConfig{Brokers: []string{"x:1"}, Region: "b", Applier: h.region, Marks: marks}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Marks without Debt: %v", err)
	}
}
