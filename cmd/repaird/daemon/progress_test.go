package daemon

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidemark/tidemark/repair"
)

// fakeLocations is every region's location table: what each records, the
// regions that cannot be reached, and the calls made.
type fakeLocations struct {
	mu       sync.Mutex
	recorded map[string]repair.ProgressLocation
	down     map[string]bool
	calls    map[string]int
}

func newFakeLocations() *fakeLocations {
	return &fakeLocations{recorded: map[string]repair.ProgressLocation{}, down: map[string]bool{}, calls: map[string]int{}}
}

// record is a LocationRecorder: INSERT … IF NOT EXISTS in region.
func (f *fakeLocations) record(_ context.Context, region string, loc repair.ProgressLocation) (repair.ProgressLocation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[region]++
	if f.down[region] {
		return repair.ProgressLocation{}, errors.New("connection refused")
	}
	if got, ok := f.recorded[region]; ok {
		return got, nil
	}
	f.recorded[region] = loc
	return loc, nil
}

func (f *fakeLocations) setDown(region string, down bool) {
	f.mu.Lock()
	f.down[region] = down
	f.mu.Unlock()
}

const threeRegions = `
home: %s
keyspace: ks
namespaces: [users]
regions:
  - {name: c, contact_points: ["127.0.0.3:1"], local_dc: c}
  - {name: a, contact_points: ["127.0.0.1:1"], local_dc: a}
  - {name: b, contact_points: ["127.0.0.2:1"], local_dc: b}
repair: {interval: 1m%s}
http: {listen: "127.0.0.1:0"}
`

func locatorFor(t *testing.T, home, extra string, f *fakeLocations) *ProgressLocator {
	t.Helper()
	cfg := parseConfig(t, strings.Replace(strings.Replace(threeRegions, "%s", home, 1), "%s", extra, 1))
	return NewProgressLocator(cfg, f.record, nil)
}

// Daemons with different homes keep their progress in one region (the
// smallest name by default) and agree; a daemon configured with another
// progress region is refused with an error naming both regions and the
// setting.
func TestProgressLocatorDaemonsShareOneLocation(t *testing.T) {
	ctx := context.Background()
	f := newFakeLocations()
	first, second := locatorFor(t, "c", "", f), locatorFor(t, "b", "", f)
	if first.Region() != "a" || second.Region() != "a" {
		t.Fatalf("progress regions %q and %q, want a for both (the smallest name)", first.Region(), second.Region())
	}
	if err := first.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if err := second.CheckAll(ctx); err != nil {
		t.Fatalf("a second daemon with another home: %v", err)
	}
	for _, r := range []string{"a", "b", "c"} {
		if got := f.recorded[r].Region; got != "a" {
			t.Errorf("region %s records %q, want a", r, got)
		}
	}
	other := locatorFor(t, "b", ", progress_region: b", f)
	err := other.Open(ctx)
	if !errors.Is(err, ErrProgressLocation) {
		t.Fatalf("a daemon keeping its progress in b: %v, want ErrProgressLocation", err)
	}
	for _, want := range []string{`region "b" records`, `lives in region "a"`, `repair.progress_region is "b"`, "set repair.progress_region: a", "ks.tidemark_repair_location"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
	if f.recorded["b"].Region != "a" {
		t.Error("a refused daemon overwrote the location")
	}
}

// The progress region must be reached at Open; other regions that cannot
// be reached are skipped then and checked (again) before each run, and a
// conflict among the others is reported alone.
func TestProgressLocatorUnreachableRegions(t *testing.T) {
	ctx := context.Background()
	f := newFakeLocations()
	l := locatorFor(t, "a", "", f)
	f.setDown("a", true)
	if err := l.Open(ctx); err == nil || errors.Is(err, ErrProgressLocation) {
		t.Fatalf("Open with the progress region down = %v, want its error", err)
	}
	f.setDown("a", false)
	f.setDown("c", true)
	if err := l.Open(ctx); err != nil {
		t.Fatalf("Open with another region down = %v, want nil", err)
	}
	if err := l.CheckAll(ctx); err == nil || errors.Is(err, ErrProgressLocation) || !strings.Contains(err.Error(), `region "c"`) {
		t.Fatalf("CheckAll with c down = %v, want c's error", err)
	}
	calls := map[string]int{"a": f.calls["a"], "b": f.calls["b"]}
	f.setDown("c", false)
	f.recorded["c"] = repair.ProgressLocation{Region: "c", By: "old-daemon", At: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	err := l.CheckAll(ctx)
	if !errors.Is(err, ErrProgressLocation) || !strings.Contains(err.Error(), `recorded by "old-daemon" at 2026-01-02T03:04:05Z`) {
		t.Fatalf("CheckAll with c recording c = %v, want a conflict naming who recorded it", err)
	}
	if f.calls["a"] != calls["a"] || f.calls["b"] != calls["b"] {
		t.Errorf("confirmed regions recorded again: calls %v, before %v", f.calls, calls)
	}
	// A conflict wins over an unreachable region in the error.
	f.setDown("b", true)
	l2 := locatorFor(t, "a", "", f)
	if err := l2.CheckAll(ctx); !errors.Is(err, ErrProgressLocation) || strings.Contains(err.Error(), "connection refused") {
		t.Errorf("CheckAll = %v, want the conflict alone", err)
	}
}

// A daemon whose progress location conflicts stops, saying why, instead of
// running full repairs of its own.
func TestDaemonRefusesConflictingProgressLocation(t *testing.T) {
	cfg := parseConfig(t, strings.Replace(strings.Replace(threeRegions, "%s", "c", 1), "%s", ", progress_region: c", 1))
	var calls atomic.Int32
	d, err := New(cfg, Options{Connect: unreachable(&calls), RetryDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeLocations()
	f.recorded["b"] = repair.ProgressLocation{Region: "a"}
	d.locator = NewProgressLocator(cfg, f.record, nil)
	d.openProgress = func(ctx context.Context) (repair.ProgressStore, error) {
		if err := d.locator.Open(ctx); err != nil {
			return nil, err
		}
		return repair.NewMemProgress(), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = d.Run(ctx)
	if !errors.Is(err, ErrProgressLocation) || ctx.Err() != nil {
		t.Fatalf("Run = %v, want it to stop with ErrProgressLocation", err)
	}
	if !strings.Contains(err.Error(), `region "b" records`) || !strings.Contains(err.Error(), `repair.progress_region is "c"`) {
		t.Errorf("error %q does not name both regions and the setting", err)
	}
}
