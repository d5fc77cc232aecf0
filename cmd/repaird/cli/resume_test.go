package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/cmd/repaird/config"
	"github.com/tidemark/tidemark/repair"
)

// memEnv runs `repaird repair` over two in-memory regions (b missed 50
// writes) and the given progress store.
func memEnv(t *testing.T, store repair.ProgressStore, wrap func(repair.RegionReader) repair.RegionReader) (Env, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	a, b := repair.NewMemRegion("users"), repair.NewMemRegion("users")
	for i := range 200 {
		a.Put("users", fmt.Appendf(nil, "k%03d", i), nil, 10, false, []byte("v"), 0)
		if i%4 != 0 {
			b.Put("users", fmt.Appendf(nil, "k%03d", i), nil, 10, false, []byte("v"), 0)
		}
	}
	var rb repair.RegionReader = b
	if wrap != nil {
		rb = wrap(b)
	}
	var out, errb bytes.Buffer
	return Env{Stdout: &out, Stderr: &errb, Open: func(context.Context, *config.Config) ([]repair.Region, repair.ProgressStore, error) {
		return []repair.Region{{Name: "a", Reader: a, Writer: a}, {Name: "b", Reader: rb, Writer: b}}, store, nil
	}}, &out, &errb
}

// unfinishedRun leaves a run of segments segments, one done, in store.
func unfinishedRun(t *testing.T, store repair.ProgressStore, segments int) repair.RunInfo {
	t.Helper()
	ctx := context.Background()
	run, err := store.Begin(ctx, "users", segments)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Record(ctx, run, repair.SegmentRecord{Index: 0, Done: true, FinishedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return run
}

func TestRepairResumeSaysSegmentsIgnored(t *testing.T) {
	store := repair.NewMemProgress()
	run := unfinishedRun(t, store, 8)
	env, out, errb := memEnv(t, store, nil)
	code := Execute(context.Background(), []string{"repair", "--config", writeConfig(t, twoRegions), "--namespace", "users", "--segments", "4"}, env)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errb)
	}
	s := out.String()
	warning := fmt.Sprintf("WARNING: resuming run %s with its 8 segments; --segments 4 ignored (add --fresh", run.ID)
	if n := strings.Count(s, warning); n != 2 { // at the start and in the summary
		t.Errorf("output has the warning %d times, want 2 (%q):\n%s", n, warning, s)
	}
	if !strings.HasPrefix(s, warning) {
		t.Errorf("the warning does not come first:\n%s", s)
	}
	for _, want := range []string{"resumed run " + run.ID + " (started ", "segments 8/8 done (1 resumed, 0 failed)"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
}

func TestRepairFreshAbandonsUnfinishedRun(t *testing.T) {
	store := repair.NewMemProgress()
	old := unfinishedRun(t, store, 8)
	env, out, errb := memEnv(t, store, nil)
	code := Execute(context.Background(), []string{"repair", "--config", writeConfig(t, twoRegions), "--namespace", "users", "--segments", "4", "--fresh"}, env)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errb)
	}
	s := out.String()
	if strings.Contains(s, "ignored") || strings.Contains(s, "resumed run") {
		t.Errorf("a fresh run reported as resumed:\n%s", s)
	}
	for _, want := range []string{"segments 4/4 done (0 resumed, 0 failed)", "WARNING: abandoned unfinished run " + old.ID, "a fresh run was requested",
		"scanned, 50 differing, 50 written", "fingerprints: "} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	last, ok, _ := store.LastFinished(context.Background(), "users")
	if !ok || last.ID == old.ID || last.Segments != 4 {
		t.Errorf("last finished run = %+v, want a new 4-segment run", last)
	}
}

func TestRepairFreshWithDryRunIsAUsageError(t *testing.T) {
	code, _, stderr := run(t, "repair", "--config", writeConfig(t, twoRegions), "--namespace", "users", "--fresh", "--dry-run")
	if code != ExitUsage || !strings.Contains(stderr, "--fresh and --dry-run do not go together") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}

// unreadableComment makes a region's table comment unreadable.
type unreadableComment struct{ repair.RegionReader }

func (u unreadableComment) Describe(ctx context.Context, ns string) (repair.TableInfo, error) {
	if _, err := u.RegionReader.Describe(ctx, ns); err != nil {
		return repair.TableInfo{}, err
	}
	return repair.TableInfo{RetentionErr: errors.New(`table ks.users: table comment "tidemark:v1 retention=x": bad retention`)}, nil
}

func TestRepairPrintsUnreadableRetention(t *testing.T) {
	env, out, errb := memEnv(t, repair.NewMemProgress(), func(r repair.RegionReader) repair.RegionReader { return unreadableComment{r} })
	code := Execute(context.Background(), []string{"repair", "--config", writeConfig(t, twoRegions), "--namespace", "users"}, env)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errb)
	}
	want := `WARNING: region "b": table ks.users: table comment "tidemark:v1 retention=x": bad retention`
	if !strings.Contains(out.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
}
