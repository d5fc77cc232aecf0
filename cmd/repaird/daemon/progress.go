package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/tidemark/tidemark/cmd/repaird/config"
	"github.com/tidemark/tidemark/repair"
)

// ErrProgressLocation is wrapped by the error of a daemon (or `repaird
// repair`) whose progress region is not the one a region records: daemons
// whose progress lives in different regions never see each other's leases,
// so each would run every full repair. The daemon stops with it.
var ErrProgressLocation = errors.New("repair progress location conflict")

// LocationRecorder records loc as the progress location of the keyspace
// in one region, unless one is recorded there already, and returns the
// location the region records (repair.RecordProgressLocation).
type LocationRecorder func(ctx context.Context, region string, loc repair.ProgressLocation) (repair.ProgressLocation, error)

// SessionRecorder is the LocationRecorder over sessions: it connects to
// the region if needed and runs repair.RecordProgressLocation there.
func SessionRecorder(sessions *Sessions, keyspace string) LocationRecorder {
	return func(ctx context.Context, region string, loc repair.ProgressLocation) (repair.ProgressLocation, error) {
		s, err := sessions.Get(ctx, region)
		if err != nil {
			return repair.ProgressLocation{}, err
		}
		return repair.RecordProgressLocation(ctx, s, keyspace, loc)
	}
}

// ProgressLocator keeps the repair progress of a keyspace in one region for
// every daemon, whatever its home: the configuration's progress region
// (repair.progress_region, by default the smallest region name). It
// records that region in every region it reaches (repair.LocationTable,
// written once with a lightweight transaction) and refuses — an error
// wrapping ErrProgressLocation — when a region records another one.
type ProgressLocator struct {
	cfg    *config.Config
	record LocationRecorder
	log    *slog.Logger
	owner  string

	mu        sync.Mutex
	confirmed map[string]bool // regions known to record the progress region
}

// NewProgressLocator returns the locator of cfg's progress region,
// recording through record; log nil discards the logs.
func NewProgressLocator(cfg *config.Config, record LocationRecorder, log *slog.Logger) *ProgressLocator {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	owner := cfg.Repair.Owner
	if owner == "" {
		h, _ := os.Hostname()
		owner = h + "-" + strconv.Itoa(os.Getpid())
	}
	return &ProgressLocator{cfg: cfg, record: record, log: log, owner: owner, confirmed: map[string]bool{}}
}

// Region returns the progress region.
func (l *ProgressLocator) Region() string { return l.cfg.ProgressRegion() }

// Check records the progress region in each of regions not yet confirmed,
// concurrently. When a region records another progress region, the error
// wraps ErrProgressLocation and names both regions and the setting to
// change: the caller must not repair. Otherwise it returns the errors of
// the regions where nothing could be recorded (joined); a later Check tries
// those again.
func (l *ProgressLocator) Check(ctx context.Context, regions []string) error {
	want := repair.ProgressLocation{Region: l.Region(), By: l.owner, At: time.Now().UTC().Truncate(time.Millisecond)}
	l.mu.Lock()
	var todo []string
	for _, r := range regions {
		if !l.confirmed[r] {
			todo = append(todo, r)
		}
	}
	l.mu.Unlock()
	errs := make([]error, len(todo))
	var wg sync.WaitGroup
	for i, r := range todo {
		wg.Go(func() {
			got, err := l.record(ctx, r, want)
			switch {
			case err != nil:
				errs[i] = fmt.Errorf("region %q: record the repair progress location: %w", r, err)
			case got.Region != want.Region:
				errs[i] = l.conflict(r, got)
			default:
				l.mu.Lock()
				l.confirmed[r] = true
				l.mu.Unlock()
			}
		})
	}
	wg.Wait()
	var conflicts []error
	for _, err := range errs {
		if errors.Is(err, ErrProgressLocation) {
			conflicts = append(conflicts, err)
		}
	}
	if len(conflicts) > 0 {
		return errors.Join(conflicts...)
	}
	return errors.Join(errs...)
}

func (l *ProgressLocator) conflict(region string, got repair.ProgressLocation) error {
	by := ""
	if got.By != "" || !got.At.IsZero() {
		by = fmt.Sprintf(" (recorded by %q at %s)", got.By, got.At.UTC().Format(time.RFC3339))
	}
	return fmt.Errorf("%w: region %q records that the repair progress of keyspace %q lives in region %q%s, but this daemon's repair.progress_region is %q: "+
		"daemons that repair one namespace must keep their progress in one region, whatever their home, or they never see each other's leases and each runs every full repair; "+
		"set repair.progress_region: %s in this configuration (to move the progress instead, stop every daemon and delete the row of %s.%s in every region)",
		ErrProgressLocation, region, l.cfg.Keyspace, got.Region, by, l.Region(), got.Region, l.cfg.Keyspace, repair.LocationTable)
}

// Open checks the location before the progress store is opened: the
// progress region must record itself (any error is returned), then every
// other configured region is tried; a conflict there is returned too,
// while a region that cannot be reached now is only logged — it is
// checked before every run (Check), since a run needs every region.
func (l *ProgressLocator) Open(ctx context.Context) error {
	if err := l.Check(ctx, []string{l.Region()}); err != nil {
		return err
	}
	var others []string
	for _, r := range l.cfg.Regions {
		if r.Name != l.Region() {
			others = append(others, r.Name)
		}
	}
	err := l.Check(ctx, others)
	if errors.Is(err, ErrProgressLocation) {
		return err
	}
	if err != nil {
		l.log.Warn("repaird: could not record the repair progress location in every region yet; it is checked again before each run",
			"progress_region", l.Region(), "err", err)
	}
	return nil
}

// regionNames returns the names of cfg's regions.
func regionNames(cfg *config.Config) []string {
	out := make([]string, len(cfg.Regions))
	for i, r := range cfg.Regions {
		out[i] = r.Name
	}
	return out
}

// CheckAll is Check over every configured region.
func (l *ProgressLocator) CheckAll(ctx context.Context) error {
	return l.Check(ctx, regionNames(l.cfg))
}

// OpenProgress opens the progress store of cfg's keyspace in the progress
// region, after l.Open has checked the location: what `repaird serve` and
// `repaird repair` both use, so that they share one progress location.
func OpenProgress(ctx context.Context, l *ProgressLocator, sessions *Sessions) (repair.ProgressStore, error) {
	if err := l.Open(ctx); err != nil {
		return nil, err
	}
	s, err := sessions.Get(ctx, l.Region())
	if err != nil {
		return nil, err
	}
	return repair.NewCQLProgress(ctx, s, l.cfg.Keyspace)
}
