package daemon

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidemark/tidemark/repair"
)

// countingReader counts the runs that scan a region.
type countingReader struct {
	repair.RegionReader
	describes atomic.Int32
}

func (c *countingReader) Describe(ctx context.Context, ns string) (repair.TableInfo, error) {
	c.describes.Add(1)
	return c.RegionReader.Describe(ctx, ns)
}

// scheduled runs a daemon over memory regions whose progress store holds
// the given last full run, and returns it and the count of runs begun.
func scheduled(t *testing.T, yaml string, last time.Time, now func() time.Time) (*Daemon, *countingReader) {
	t.Helper()
	store := repair.NewMemProgress()
	if !last.IsZero() {
		store.Now = func() time.Time { return last }
		run, _ := store.Begin(context.Background(), "users", 4)
		_ = store.Finish(context.Background(), run, last.Add(time.Minute))
		store.Now = nil
	}
	a, b := repair.NewMemRegion("users"), repair.NewMemRegion("users")
	ca := &countingReader{RegionReader: a}
	d, err := New(parseConfig(t, yaml), Options{RetryDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	d.locator = nil
	if now != nil {
		d.now = now
	}
	d.openProgress = func(context.Context) (repair.ProgressStore, error) { return store, nil }
	d.openRegions = func(context.Context) ([]repair.Region, error) {
		return []repair.Region{{Name: "a", Reader: ca, Writer: a}, {Name: "b", Reader: b, Writer: b}}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	return d, ca
}

const scheduleYAML = "home: a\nkeyspace: ks\nnamespaces: [users]\nregions:\n  - {name: a, contact_points: [\"127.0.0.1:1\"], local_dc: a}\n  - {name: b, contact_points: [\"127.0.0.2:1\"], local_dc: b}\nrepair: {interval: 1h}\nhttp: {listen: \"127.0.0.1:0\"}\n"

// A daemon that starts does not begin a full run when the last complete
// run is recent: the next is due at its start plus the interval.
func TestScheduleWaitsForTheIntervalAfterTheLastFullRun(t *testing.T) {
	last := time.Now().Add(-10 * time.Minute).UTC().Truncate(time.Millisecond)
	d, runs := scheduled(t, scheduleYAML, last, nil)
	eventuallyTrue(t, "the next run is scheduled", 5*time.Second, func() bool {
		return d.Status().Namespaces["users"].NextRun.Equal(last.Add(time.Hour))
	})
	time.Sleep(300 * time.Millisecond)
	if n := runs.describes.Load(); n != 0 {
		t.Fatalf("%d runs begun although the last full run started 10 minutes ago (interval 1h)", n)
	}
}

func TestScheduleRunsAtOnceWhenTheLastFullRunIsOld(t *testing.T) {
	_, runs := scheduled(t, scheduleYAML, time.Now().Add(-2*time.Hour), nil)
	eventuallyTrue(t, "a run begins", 5*time.Second, func() bool { return runs.describes.Load() > 0 })
}

// Outside its window no run starts; the next run is when it opens.
func TestScheduleWaitsForTheWindow(t *testing.T) {
	fake := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	yaml := strings.Replace(scheduleYAML, "repair: {interval: 1h}", `repair: {interval: 1h, window: "01:00-06:00"}`, 1)
	d, runs := scheduled(t, yaml, time.Time{}, func() time.Time { return fake })
	want := time.Date(2026, 5, 2, 1, 0, 0, 0, time.UTC)
	eventuallyTrue(t, "the next run is when the window opens", 5*time.Second, func() bool {
		return d.Status().Namespaces["users"].NextRun.Equal(want)
	})
	time.Sleep(300 * time.Millisecond)
	if n := runs.describes.Load(); n != 0 {
		t.Fatalf("%d runs begun outside the window", n)
	}
	if w := d.Status().Namespaces["users"].Window; w != "01:00-06:00" {
		t.Errorf("status window %q", w)
	}
}

// A run pauses when its window closes and works again when it opens.
func TestWindowPausesARunningRun(t *testing.T) {
	d := &Daemon{}
	var open atomic.Bool
	open.Store(true)
	start := time.Now()
	d.now = func() time.Time {
		if open.Load() {
			return time.Date(2026, 5, 1, 2, 0, 0, 0, time.UTC).Add(time.Since(start))
		}
		return time.Date(2026, 5, 1, 7, 0, 0, 0, time.UTC)
	}
	w := parseConfig(t, strings.Replace(scheduleYAML, "repair: {interval: 1h}", `repair: {interval: 1h, window: "01:00-06:00"}`, 1)).Repair.Window
	ctl := repair.NewControl()
	ctl.Pause(repair.HoldWindow)
	stop := d.watchWindow(ctl, w)
	eventuallyTrue(t, "inside the window the run works", 5*time.Second, func() bool { return !ctl.State().Paused })
	stop()
	open.Store(false)
	stop = d.watchWindow(ctl, w)
	defer stop()
	eventuallyTrue(t, "outside the window the run holds", 5*time.Second, func() bool {
		st := ctl.State()
		return st.Paused && st.Holds[0] == repair.HoldWindow
	})
}

func TestUniqueOwner(t *testing.T) {
	a, b := UniqueOwner("twin"), UniqueOwner("twin")
	if a == b || !strings.HasPrefix(a, "twin/") || !strings.HasPrefix(b, "twin/") {
		t.Fatalf("owners %q and %q", a, b)
	}
	if o := UniqueOwner(""); strings.HasPrefix(o, "/") {
		t.Errorf("default owner %q has no host name", o)
	}
}
