package hints

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tidemark/tidemark/hints/record"
)

// errUnauthorized is a per-hint error that never goes away by itself.
var errUnauthorized = errors.New("unauthorized: user tidemark has no MODIFY permission on <table ks.locked>")

// applierModes are the two ways the replayer learns that the region is up:
// the Applier's Probe, or (no Probe) other hints being applied.
var applierModes = []struct {
	name  string
	probe bool
}{
	{"without Probe", false},
	{"with Probe", true},
}

func (h *harness) applier(probe bool) Applier {
	if probe {
		return &probingRegion{fakeRegion: h.region}
	}
	return h.region
}

// TestReplayerGivesUpOnHintThatFailsAlone: a hint that keeps failing with
// an error that is not ErrPermanent, while the region takes the other
// hints of its batch, is dead-lettered as rejected after exactly
// MaxHintAttempts attempts, with its last error; the others are applied
// and everything is committed.
func TestReplayerGivesUpOnHintThatFailsAlone(t *testing.T) {
	for _, mode := range applierModes {
		t.Run(mode.name, func(t *testing.T) {
			h := newHarness(t)
			bad := goodHint(99)
			h.region.poison = map[string]error{string(bad.PK): errUnauthorized}
			for i := range 5 {
				h.addHint(0, goodHint(i), nil)
			}
			h.addHint(0, bad, nil)
			for i := 5; i < 10; i++ {
				h.addHint(0, goodHint(i), nil)
			}
			debt := &recordingDebt{}
			r := h.replayer(func(c *ReplayerConfig) {
				c.Applier = h.applier(mode.probe)
				c.MaxHintAttempts = 3
				c.BatchSize = 32
				c.Debt = debt
			})
			stop := start(t, r)
			waitFor(t, "all offsets committed", h.topic.allCommitted)
			stop()

			if got := h.region.rowCount(); got != 10 {
				t.Fatalf("region has %d rows, want the 10 good hints", got)
			}
			if got := h.dead.reasons(); !mapsEqual(got, map[string]int{ReasonRejected: 1}) {
				t.Fatalf("dead letters = %v, want one rejected", got)
			}
			if n := h.region.triesOf(string(bad.PK)); n != 3 {
				t.Errorf("the bad hint was tried %d times, want MaxHintAttempts = 3", n)
			}
			// The rejected hint's key is repair debt, and only it.
			if got := debt.all(); len(got) != 1 || string(got[0].PK) != string(bad.PK) || got[0].Timestamp != bad.Timestamp {
				t.Errorf("repair debt %v, want the rejected hint's key only", got)
			}
			msg := header(h.dead.got[0], HeaderError)
			if !strings.Contains(msg, "3 times") || !strings.Contains(msg, "unauthorized") {
				t.Errorf("dead letter error %q does not give the attempts and the last error", msg)
			}
			if metricValue(r.metrics.paused) != 0 {
				t.Error("replay reported paused although the region was up")
			}
			checkCommitOrder(t, h.topic)
		})
	}
}

// TestReplayerGivesUpOnLoneBadHint: the bad hint is alone in its batch, so
// no other hint of the batch proves the region up; the Probe does, or (no
// Probe) the hint applied last, applied again.
func TestReplayerGivesUpOnLoneBadHint(t *testing.T) {
	for _, mode := range applierModes {
		t.Run(mode.name, func(t *testing.T) {
			h := newHarness(t)
			bad := goodHint(99)
			h.region.poison = map[string]error{string(bad.PK): errUnauthorized}
			h.addHint(0, goodHint(0), nil) // the witness, in a batch of its own
			r := h.replayer(func(c *ReplayerConfig) {
				c.Applier = h.applier(mode.probe)
				c.MaxHintAttempts = 4
				c.BatchSize = 1
			})
			stop := start(t, r)
			defer stop()
			waitFor(t, "first hint committed", h.topic.allCommitted)
			h.addHint(0, bad, nil)
			h.addHint(0, goodHint(1), nil)
			waitFor(t, "bad hint given up and the next applied", h.topic.allCommitted)
			if got := h.dead.reasons(); !mapsEqual(got, map[string]int{ReasonRejected: 1}) {
				t.Fatalf("dead letters = %v, want one rejected", got)
			}
			if n := h.region.triesOf(string(bad.PK)); n != 4 {
				t.Errorf("the bad hint was tried %d times, want 4", n)
			}
			if got := h.region.rowCount(); got != 2 {
				t.Errorf("region has %d rows, want 2", got)
			}
		})
	}
}

// TestReplayerRegionDownNeverGivesUp: while every apply fails because the
// region is down, failures never count against the hints, however long it
// lasts: nothing is dead-lettered, nothing committed, and every hint is
// applied once the region is back.
func TestReplayerRegionDownNeverGivesUp(t *testing.T) {
	for _, mode := range applierModes {
		t.Run(mode.name, func(t *testing.T) {
			h := newHarness(t)
			h.addHint(0, goodHint(0), nil) // applied before the outage: a witness exists
			r := h.replayer(func(c *ReplayerConfig) {
				c.Applier = h.applier(mode.probe)
				c.MaxHintAttempts = 2
				c.BatchSize = 16
				c.BackoffMax = 2 * time.Millisecond
			})
			stop := start(t, r)
			defer stop()
			waitFor(t, "first hint committed", h.topic.allCommitted)
			commits := h.topic.commitCount()

			h.region.down.Store(true)
			const n = 10
			for i := 1; i <= n; i++ {
				h.addHint(i%2, goodHint(i), nil)
			}
			waitFor(t, "pause", func() bool { return metricValue(r.metrics.paused) == 1 })
			// Many times MaxHintAttempts checks of the region.
			waitFor(t, "a long outage", func() bool { return h.region.attempts.Load()+h.region.probes.Load() > 40*2*n })
			if d := h.dead.reasons(); len(d) != 0 {
				t.Fatalf("dead-lettered %v while the region was down", d)
			}
			if c := h.topic.commitCount(); c != commits {
				t.Fatalf("%d commits while the region was down", c-commits)
			}

			h.region.down.Store(false)
			waitFor(t, "all committed after the outage", h.topic.allCommitted)
			if got := h.region.rowCount(); got != n+1 {
				t.Fatalf("region has %d rows, want %d", got, n+1)
			}
			if d := h.dead.reasons(); len(d) != 0 {
				t.Fatalf("dead-lettered %v", d)
			}
			checkCommitOrder(t, h.topic)
		})
	}
}

// TestReplayerBadHintDuringOutage: a bad hint in a batch while the region
// is down is not given up during the outage (its failures do not count);
// after the region is back it is given up after MaxHintAttempts counted
// failures, and the good hints are applied.
func TestReplayerBadHintDuringOutage(t *testing.T) {
	for _, mode := range applierModes {
		t.Run(mode.name, func(t *testing.T) {
			h := newHarness(t)
			bad := goodHint(50)
			h.region.poison = map[string]error{string(bad.PK): errUnauthorized}
			h.addHint(0, goodHint(0), nil)
			r := h.replayer(func(c *ReplayerConfig) {
				c.Applier = h.applier(mode.probe)
				c.MaxHintAttempts = 3
				c.BackoffMax = 2 * time.Millisecond
			})
			stop := start(t, r)
			defer stop()
			waitFor(t, "first hint committed", h.topic.allCommitted)
			h.region.down.Store(true)
			h.addHint(0, bad, nil)
			h.addHint(0, goodHint(1), nil)
			waitFor(t, "pause", func() bool { return metricValue(r.metrics.paused) == 1 })
			waitFor(t, "a long outage", func() bool { return h.region.attempts.Load()+h.region.probes.Load() > 100 })
			if d := h.dead.reasons(); len(d) != 0 {
				t.Fatalf("dead-lettered %v while the region was down", d)
			}
			h.region.down.Store(false)
			waitFor(t, "all committed", h.topic.allCommitted)
			if got := h.dead.reasons(); !mapsEqual(got, map[string]int{ReasonRejected: 1}) {
				t.Fatalf("dead letters = %v, want one rejected", got)
			}
			if got := h.region.rowCount(); got != 2 {
				t.Errorf("region has %d rows, want 2", got)
			}
		})
	}
}

// TestReplayerUnlimitedAttempts: a negative MaxHintAttempts never gives up
// (the old behaviour, for operators who prefer a stuck partition to a
// dead letter).
func TestReplayerUnlimitedAttempts(t *testing.T) {
	h := newHarness(t)
	bad := goodHint(9)
	h.region.poison = map[string]error{string(bad.PK): fmt.Errorf("server error: %w", errUnauthorized)}
	h.addHint(0, goodHint(0), nil)
	h.addHint(0, bad, nil)
	r := h.replayer(func(c *ReplayerConfig) {
		c.MaxHintAttempts = -1
		c.BackoffMax = 2 * time.Millisecond
	})
	stop := start(t, r)
	defer stop()
	waitFor(t, "many attempts", func() bool { return h.region.triesOf(string(bad.PK)) > 30 })
	if c := h.topic.commitCount(); c != 0 {
		t.Fatalf("committed %d times past a hint that never applied", c)
	}
	if d := h.dead.reasons(); len(d) != 0 {
		t.Fatalf("dead-lettered %v with unlimited attempts", d)
	}
}

// TestReplayerReachableWitness: without Probe, the hint applied last is the
// witness; one that can no longer be applied is dropped.
func TestReplayerReachableWitness(t *testing.T) {
	h := newHarness(t)
	r := h.replayer(nil)
	it := &item{hint: goodHint(1)}
	if r.reachable(context.Background(), it) {
		t.Fatal("reachable with no witness and no Probe")
	}
	w := goodHint(2)
	r.witness.Store(&w)
	if !r.reachable(context.Background(), it) {
		t.Fatal("not reachable although the witness applies")
	}
	h.region.down.Store(true)
	if r.reachable(context.Background(), it) {
		t.Fatal("reachable although the region is down")
	}
	h.region.down.Store(false)
	h.region.reject = w.Namespace
	if r.reachable(context.Background(), it) || r.witness.Load() != nil {
		t.Fatal("a witness refused permanently was kept")
	}
}

// recordingDebt is a DebtRecorder that keeps what it is given.
type recordingDebt struct {
	mu    sync.Mutex
	hints []record.Hint
}

func (d *recordingDebt) RecordDebt(_ context.Context, h record.Hint, reason string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if reason != "dead_"+ReasonRejected {
		return fmt.Errorf("unexpected debt reason %q", reason)
	}
	d.hints = append(d.hints, h)
	return nil
}

func (d *recordingDebt) all() []record.Hint {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]record.Hint(nil), d.hints...)
}

// limitedDead is a dead-letter topic that refuses values over limit bytes:
// as kafka-go does before any I/O (byWriter: MessageTooLargeError naming
// the first), or as a broker does (WriteErrors of MessageSizeTooLarge).
type limitedDead struct {
	fakeDead
	limit    int
	byWriter bool
	refused  atomic.Int32
}

func (d *limitedDead) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	errs := make(kafka.WriteErrors, len(msgs))
	refused := false
	for i, m := range msgs {
		if len(m.Value) > d.limit {
			d.refused.Add(1)
			if d.byWriter {
				return kafka.MessageTooLargeError{Message: m}
			}
			errs[i], refused = kafka.MessageSizeTooLarge, true
		}
	}
	if refused {
		return errs
	}
	return d.fakeDead.WriteMessages(ctx, msgs...)
}

// A record too large for the dead-letter topic (it does not decode, so it
// must be dead-lettered) is written there without its value, its size in
// a header, and the replay goes on. (deadLetter retried the refusal
// forever: nothing after the record was ever committed, in any partition.)
func TestDeadLetterTooLargeIsWrittenWithoutItsValue(t *testing.T) {
	for _, byWriter := range []bool{true, false} {
		name := "refused by the broker"
		if byWriter {
			name = "refused by kafka-go"
		}
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			dead := &limitedDead{fakeDead: fakeDead{t: h.topic}, limit: 1 << 20, byWriter: byWriter}
			h.dead = &dead.fakeDead
			r := h.replayer(func(c *ReplayerConfig) { c.BatchSize = 4 })
			r.dead = dead
			junk := make([]byte, 2_000_000) // not a hint: corrupt, and over the limit
			h.addRaw(0, []byte("k"), junk)
			for i := range 10 {
				h.addHint(1, goodHint(i), nil)
			}
			stop := start(t, r)
			waitFor(t, "every record committed", h.topic.allCommitted)
			stop()
			if n := h.region.rowCount(); n != 10 {
				t.Errorf("%d hints applied, want the 10 behind the big record", n)
			}
			dead.mu.Lock()
			got := slices.Clone(dead.got)
			dead.mu.Unlock()
			if len(got) != 1 || header(got[0], HeaderReason) != ReasonCorrupt || got[0].Value != nil ||
				header(got[0], HeaderDeadTruncated) != "2000000" || header(got[0], HeaderOffset) == "" {
				t.Fatalf("dead letters %+v, want one, corrupt, without its value, %s=2000000 and its source offset", got, HeaderDeadTruncated)
			}
			if dead.refused.Load() == 0 {
				t.Fatal("the dead-letter topic never refused the record: the test has not made the case it is about")
			}
			if v := metricValue(r.metrics.deadTruncated); v != 1 {
				t.Errorf("tidemark_hints_dead_letters_truncated_total = %v, want 1", v)
			}
			checkCommitOrder(t, h.topic)
		})
	}
}
