package hints

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tidemark/tidemark/internal/syncbuf"
)

// TestReplayerLagNeverZeroWhilePending: the lag is unknown before Run and
// after it returns, equals the records not committed while the region is
// down (never 0 then, which is what the reader's own statistics read during
// a rebalance), and falls to 0 once they are replayed and committed.
func TestReplayerLagNeverZeroWhilePending(t *testing.T) {
	h := newHarness(t)
	const n = 30
	for i := range n {
		h.addHint(i%3, goodHint(i), nil)
	}
	h.region.down.Store(true)
	r := h.replayer(nil)
	if _, known := r.Lag(); known {
		t.Fatal("lag known before Run")
	}
	if v := metricValue(r.metrics.lag); !math.IsNaN(v) {
		t.Fatalf("lag gauge before Run = %v, want NaN (unknown)", v)
	}
	stop := start(t, r)
	waitFor(t, "the lag measured", func() bool { _, ok := r.Lag(); return ok })
	waitFor(t, "pause", func() bool { return metricValue(r.metrics.paused) == 1 })
	if lag, _ := r.Lag(); lag != n {
		t.Fatalf("lag while the region is down = %d, want %d", lag, n)
	}
	if v := metricValue(r.metrics.lag); v != n {
		t.Fatalf("lag gauge = %v, want %d", v, n)
	}
	h.region.down.Store(false)
	waitFor(t, "all committed", h.topic.allCommitted)
	deadline := time.Now().Add(3 * lagInterval)
	for lag, _ := r.Lag(); lag != 0; lag, _ = r.Lag() {
		if time.Now().After(deadline) {
			t.Fatalf("lag = %d %v after everything was committed, want 0", lag, 3*lagInterval)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if _, known := r.Lag(); known {
		t.Fatal("lag still known after Run returned")
	}
	if v := metricValue(r.metrics.lag); !math.IsNaN(v) {
		t.Fatalf("lag gauge after Run = %v, want NaN", v)
	}
}

// TestReplayerLagUnknownWhenKafkaFails: a failed measure reports unknown,
// not the last value and not 0.
func TestReplayerLagUnknownWhenKafkaFails(t *testing.T) {
	h := newHarness(t)
	h.addHint(0, goodHint(1), nil)
	r := h.replayer(nil)
	var calls sync.WaitGroup
	calls.Add(1)
	var once sync.Once
	r.measureLag = func(context.Context) (int64, error) {
		defer once.Do(calls.Done)
		return 0, errors.New("coordinator not available")
	}
	stop := start(t, r)
	defer stop()
	calls.Wait()
	waitFor(t, "all committed", h.topic.allCommitted)
	if lag, known := r.Lag(); known {
		t.Fatalf("Lag() = %d, known, although every measure failed", lag)
	}
	if v := metricValue(r.metrics.lag); !math.IsNaN(v) {
		t.Fatalf("lag gauge = %v, want NaN", v)
	}
}

// TestReplayerEvictsEarlierIncarnationFirst: with an InstanceID, Run asks
// Kafka to remove the earlier incarnation before its reader joins the
// group; without one it never does; a failed eviction still replays.
func TestReplayerEvictsEarlierIncarnationFirst(t *testing.T) {
	for _, tc := range []struct {
		name     string
		instance string
		fail     bool
		want     int
	}{
		{"no instance", "", false, 0},
		{"instance", "repaird-0", false, 1},
		{"eviction fails", "repaird-0", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.addHint(0, goodHint(1), nil)
			var logs syncbuf.Buffer
			r := h.replayer(func(c *ReplayerConfig) {
				c.InstanceID = tc.instance
				c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			})
			var mu sync.Mutex
			var order []string
			r.evictPrevious = func(context.Context) (int, error) {
				mu.Lock()
				defer mu.Unlock()
				order = append(order, "evict")
				if tc.fail {
					return 0, errors.New("describe group: coordinator not available")
				}
				return 1, nil
			}
			r.newFetcher = func() fetcher {
				mu.Lock()
				order = append(order, "join")
				mu.Unlock()
				return h.topic.fetcher()
			}
			stop := start(t, r)
			waitFor(t, "all committed", h.topic.allCommitted)
			stop()
			mu.Lock()
			defer mu.Unlock()
			evicts := strings.Count(strings.Join(order, " "), "evict")
			if evicts != tc.want || order[len(order)-1] != "join" {
				t.Fatalf("calls %v, want %d eviction(s) before the reader joins", order, tc.want)
			}
			if tc.fail && !strings.Contains(logs.String(), "cannot look for an earlier incarnation") {
				t.Fatalf("failed eviction not logged:\n%s", logs.String())
			}
			if !tc.fail && tc.want == 1 && !strings.Contains(logs.String(), "removed the consumer-group members") {
				t.Fatalf("eviction not logged:\n%s", logs.String())
			}
		})
	}
}

func TestReplayerGroupTiming(t *testing.T) {
	h := newHarness(t)
	r := h.replayer(func(c *ReplayerConfig) { c.InstanceID = "pod-3" })
	rc := r.readerConfig()
	if rc.SessionTimeout != DefaultSessionTimeout || rc.HeartbeatInterval != heartbeatInterval || rc.RebalanceTimeout != rebalanceTimeout {
		t.Fatalf("session %v heartbeat %v rebalance %v", rc.SessionTimeout, rc.HeartbeatInterval, rc.RebalanceTimeout)
	}
	if rc.Dialer.ClientID != "tidemark-hints-replayer/pod-3" {
		t.Fatalf("client id %q", rc.Dialer.ClientID)
	}
	if _, err := NewReplayer(ReplayerConfig{Brokers: []string{"k:9092"}, Region: "b", Applier: h.region, SessionTimeout: time.Second}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("SessionTimeout 1s: %v, want ErrInvalidConfig", err)
	}
}

func TestSumLag(t *testing.T) {
	po := func(p int, first, last int64) kafka.PartitionOffsets {
		return kafka.PartitionOffsets{Partition: p, FirstOffset: first, LastOffset: last}
	}
	for _, tc := range []struct {
		name      string
		parts     []int
		offsets   []kafka.PartitionOffsets
		committed map[int]int64
		want      int64
		err       string
	}{
		{"all committed", []int{0, 1}, []kafka.PartitionOffsets{po(0, 0, 10), po(1, 0, 5)}, map[int]int64{0: 10, 1: 5}, 0, ""},
		{"some pending", []int{0, 1}, []kafka.PartitionOffsets{po(0, 0, 10), po(1, 0, 5)}, map[int]int64{0: 7, 1: 5}, 3, ""},
		{"never committed counts from the first offset", []int{0}, []kafka.PartitionOffsets{po(0, 4, 10)}, map[int]int64{0: -1}, 6, ""},
		{"no committed entry", []int{0}, []kafka.PartitionOffsets{po(0, 4, 10)}, nil, 6, ""},
		{"committed offset deleted by retention", []int{0}, []kafka.PartitionOffsets{po(0, 8, 10)}, map[int]int64{0: 3}, 2, ""},
		{"empty partition", []int{0}, []kafka.PartitionOffsets{po(0, 0, 0)}, nil, 0, ""},
		{"partition missing", []int{0, 1}, []kafka.PartitionOffsets{po(0, 0, 1)}, nil, 0, "no offsets for partition 1"},
		{"offset unknown", []int{0}, []kafka.PartitionOffsets{po(0, -1, 3)}, nil, 0, "offsets of partition 0 unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sumLag(tc.parts, tc.offsets, tc.committed)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("sumLag = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}
