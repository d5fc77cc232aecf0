package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/hints/record"
	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/internal/wait"
	"github.com/tidemark/tidemark/quorum"
	"github.com/tidemark/tidemark/store/driver"
)

// The convergence watermark, the store's part (docs/design.md, "The
// convergence watermark"). Every write is *unsettled* in each region from
// the moment its version is issued until the region has it, or its hint is
// durable in Kafka, or its repair debt is durable in the home region. About
// every Watermark.Interval the Store sends each region's hint topic (every
// partition) a heartbeat whose Before is the oldest version still unsettled
// in that region — or, when none is, a version below every version the
// Store will issue from then on. Heartbeats follow every hint acknowledged
// before them in their partition, so a replayer that has applied
// everything before a heartbeat has applied every hint of a write below
// Before. repaird combines the marks the replayers record with the
// registrations and the repair debt into each region's watermark.
//
// A write a region refused (not an availability failure: no hint, no
// debt), or whose debt could not be recorded anywhere, stays unsettled for
// the life of the Store: the region lacks it, and the watermark says so by
// stopping at it.

// Defaults for WatermarkConfig.
const (
	// DefaultHeartbeatInterval is the default WatermarkConfig.Interval.
	DefaultHeartbeatInterval = 500 * time.Millisecond
	// DefaultRegistrationTTL is the default WatermarkConfig.RegistrationTTL.
	DefaultRegistrationTTL = time.Minute
	// MinRegistrationTTL and MaxRegistrationTTL bound
	// WatermarkConfig.RegistrationTTL: it is refreshed every sixth of it,
	// at least a second apart, and a Store that stops without closing
	// holds every region's watermark until its registration expires.
	MinRegistrationTTL, MaxRegistrationTTL = 6 * time.Second, 24 * time.Hour
)

// WatermarkConfig configures the Store's part in the convergence watermark.
// It takes part when its HintSink is also a HeartbeatSink (the Kafka
// producer of package hints is), unless Disabled.
type WatermarkConfig struct {
	// Disabled keeps the Store out of the watermark: no registration, no
	// heartbeats. Every store that writes to a keyspace must take part
	// for the keyspace's watermark to hold; one that does not is unknown
	// to repaird, which then vouches for its writes without evidence.
	Disabled bool
	// Interval is how often the Store heartbeats to each region. Default
	// DefaultHeartbeatInterval (500ms). The watermark lags real time by
	// about this plus the replayers' delay.
	Interval time.Duration
	// RegistrationTTL is how long the Store's registration lives without
	// a refresh (it refreshes it every RegistrationTTL/6): a Store that
	// stops without closing is found gone that long after its last
	// refresh (from its session, kept 10 days), and repaird then records
	// full repairs of its namespaces as repair debt, which the watermarks
	// wait for: the writes it left unsettled are never promised.
	// Default DefaultRegistrationTTL (1 minute); MinRegistrationTTL (6s)
	// to MaxRegistrationTTL (24h).
	RegistrationTTL time.Duration
}

// HeartbeatSink is a HintSink that can also carry heartbeats: Heartbeat
// sends hb to every partition of hb.Target's hint topic and returns nil
// once all of them are durable, each after every hint the sink
// acknowledged before the call. hints.Producer implements it.
type HeartbeatSink interface {
	Heartbeat(ctx context.Context, hb record.Heartbeat) error
}

// tracker holds the versions issued and not yet settled in each region.
// Versions are issued under its lock, so a heartbeat's Before (computed
// under the same lock) is never above a version issued after it.
type tracker struct {
	mu      sync.Mutex
	clock   *clock
	pending []map[int64]int32  // per region index: version -> writes unsettled
	floors  []map[string]int64 // per region: held versions by key (overflowed debt)
	stuck   []int64            // per region: the oldest version it will never settle (0: none)
	count   []atomic.Int64     // per region: len(pending), for the gauge
}

func newTracker(c *clock, regions int) *tracker {
	t := &tracker{clock: c, pending: make([]map[int64]int32, regions), floors: make([]map[string]int64, regions),
		stuck: make([]int64, regions), count: make([]atomic.Int64, regions)}
	for i := range regions {
		t.pending[i] = map[int64]int32{}
		t.floors[i] = map[string]int64{}
	}
	return t
}

// pendingWrite is one mutation's part in the tracker: rows left to settle
// per region. A nil *pendingWrite (the Store takes no part) does nothing.
type pendingWrite struct {
	t    *tracker
	ts   int64
	left []atomic.Int32
}

// issue returns a new version, unsettled in every region until each region
// has settled rows rows of it. Without a tracker it is only the clock.
func (t *tracker) issue(c *clock, rows int) (int64, *pendingWrite) {
	if t == nil {
		return c.Now(), nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	ts := t.clock.Now()
	pw := &pendingWrite{t: t, ts: ts, left: make([]atomic.Int32, len(t.pending))}
	for i := range t.pending {
		pw.left[i].Store(int32(rows))
		t.pending[i][ts]++
		t.count[i].Add(1)
	}
	return ts, pw
}

// settle records that region r settled n rows of the write (applied, or
// hinted, or recorded as debt).
func (pw *pendingWrite) settle(r, n int) {
	if pw == nil || n <= 0 {
		return
	}
	if left := pw.left[r].Add(int32(-n)); left == 0 || (left < 0 && left+int32(n) > 0) {
		pw.t.remove(r, pw.ts)
	}
}

// stick records that region r will never get n rows of the write: the
// region's watermark stays below it for the life of the Store.
func (pw *pendingWrite) stick(r, n int) {
	if pw == nil {
		return
	}
	pw.t.mu.Lock()
	if s := pw.t.stuck[r]; s == 0 || pw.ts < s {
		pw.t.stuck[r] = pw.ts
	}
	pw.t.mu.Unlock()
	pw.settle(r, n)
}

func (t *tracker) remove(r int, ts int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := t.pending[r][ts]; n > 1 {
		t.pending[r][ts] = n - 1
	} else {
		delete(t.pending[r], ts)
	}
	t.count[r].Add(-1)
}

// hold keeps region r's Before at or below ts under key until release.
func (t *tracker) hold(r int, key string, ts int64) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.floors[r][key]; !ok || ts < old {
		t.floors[r][key] = ts
	}
}

// release drops region r's hold under key.
func (t *tracker) release(r int, key string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.floors[r], key)
}

// before is region r's heartbeat promise: every version below it that the
// tracker issued is settled in r. With nothing unsettled it is a fresh
// version from the clock (issued to no write): every later version is
// above it, and an idle Store's promise keeps up with the wall clock. (The
// last version issued + 1 would do for the promise, but would stop an
// idle Store's heartbeats — and so every region's watermark — at its last
// write.)
func (t *tracker) before(r int) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.clock.Now()
	for ts := range t.pending[r] {
		b = min(b, ts)
	}
	for _, ts := range t.floors[r] {
		b = min(b, ts)
	}
	if s := t.stuck[r]; s != 0 {
		b = min(b, s)
	}
	return b
}

// settled reports whether nothing is unsettled in any region.
func (t *tracker) settled() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for r := range t.pending {
		if len(t.pending[r]) > 0 || len(t.floors[r]) > 0 || t.stuck[r] != 0 {
			return false
		}
	}
	return true
}

// closedRegistrationTTL is how long a closed Store's registration is kept.
const closedRegistrationTTL = 10 * time.Minute

// watermarker registers the Store and sends its heartbeats.
type watermarker struct {
	s          *Store
	cfg        WatermarkConfig
	id         string
	registered int64
	sink       HeartbeatSink

	stop    context.CancelFunc
	done    chan struct{}
	tableOK []atomic.Bool
	regions atomic.Int32 // regions that took the last registration

	// namespaces are the namespaces opened, listed in the session; a new
	// one sends on kick, so that the session lists it at once.
	nsMu       sync.Mutex
	namespaces []string
	kick       chan struct{}

	heartbeats *prometheus.CounterVec
	registers  prometheus.GaugeFunc
	unsettled  *prometheus.GaugeVec
}

// newWatermarker starts the Store's part in the watermark, or returns nil
// when it takes none.
func newWatermarker(ctx context.Context, s *Store) *watermarker {
	cfg := s.cfg.Watermark
	hs, ok := s.sink.(HeartbeatSink)
	if cfg.Disabled || !ok {
		return nil
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	w := &watermarker{s: s, cfg: cfg, sink: hs, done: make(chan struct{}), tableOK: make([]atomic.Bool, len(s.regions)), kick: make(chan struct{}, 1),
		id: fmt.Sprintf("%s/w%d/%s", s.regions[0].name, s.clock.id, hex.EncodeToString(rnd[:]))}
	// Below every version issued from now on: the clock only moves forward.
	w.registered = s.clock.Now()
	s.track = newTracker(s.clock, len(s.regions))
	w.heartbeats = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "tidemark", Subsystem: "store", Name: "heartbeats_total",
		Help: "Watermark heartbeats sent to each region's hint topic, by result (ok, error).",
	}, []string{"region", "result"})
	w.registers = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "tidemark", Subsystem: "store", Name: "watermark_registered_regions",
		Help: "Regions that took the store's last watermark registration (repaird reads a majority).",
	}, func() float64 { return float64(w.regions.Load()) })
	w.unsettled = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "tidemark", Subsystem: "store", Name: "unsettled_writes",
		Help: "Writes issued and not yet settled in the region (applied, hinted durably, or recorded as debt).",
	}, []string{"region"})
	for _, r := range s.regions {
		w.heartbeats.WithLabelValues(r.name, "ok")
		w.heartbeats.WithLabelValues(r.name, "error")
	}
	s.metrics.extra = append(s.metrics.extra, w.heartbeats, w.registers, w.unsettled)
	// Registered in the home region before Open returns: repaird reads
	// the registrations of every region that answers, so a write the
	// Store acknowledges is not passed by a watermark computed without
	// it (the first registration creates the table: seconds on a new
	// keyspace). registerLoop then registers everywhere at once.
	rctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	if w.register(rctx, false, s.regions[:1]) == 0 {
		s.log.LogAttrs(ctx, slog.LevelWarn, "store: not registered in the home region at Open; writes acknowledged before the registration reaches the regions repaird reads may be passed by a watermark",
			slog.String("producer", w.id), slog.String("region", s.regions[0].name))
	}
	cancel()
	bg, stop := context.WithCancel(context.Background())
	w.stop = stop
	go w.run(bg)
	return w
}

// ProducerID returns the id under which the Store takes part in the
// convergence watermark ("" when it takes none): its heartbeats and its
// registration carry it, and repaird names it when it holds a watermark.
func (s *Store) ProducerID() string {
	if s.wm == nil {
		return ""
	}
	return s.wm.id
}

func (w *watermarker) run(ctx context.Context) {
	defer close(w.done)
	var wg sync.WaitGroup
	defer wg.Wait()
	// The registration has its own loop: a heartbeat waits up to
	// HintTimeout on a broker that hangs, and a registration refreshed
	// only between heartbeats could expire while the Store runs — repaird
	// would then take it for gone.
	wg.Go(func() { w.registerLoop(ctx) })
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for {
		w.beat(ctx, false, w.s.regions)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// registerLoop writes the registration at once, then every refresh — and
// every second while a majority of regions has not taken it, and at once
// when a namespace is opened — until ctx ends.
func (w *watermarker) registerLoop(ctx context.Context) {
	refresh := max(w.cfg.RegistrationTTL/6, time.Second)
	for {
		w.register(ctx, false, nil)
		next := refresh
		if int(w.regions.Load()) <= len(w.s.regions)/2 {
			next = min(refresh, time.Second)
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-w.kick: // a new namespace: list it now
			t.Stop()
		}
	}
}

// noteNamespace adds name to the namespaces the Store's session lists
// (nothing without a watermark): should the Store stop without closing,
// repaird runs a full repair of each of them (docs/design.md, "The
// convergence watermark").
func (w *watermarker) noteNamespace(name string) {
	if w == nil {
		return
	}
	w.nsMu.Lock()
	i, found := slices.BinarySearch(w.namespaces, name)
	if !found {
		w.namespaces = slices.Insert(w.namespaces, i, name)
	}
	w.nsMu.Unlock()
	if !found {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// register writes the Store's registration and its session to every
// region of regions (nil: all); a region counts as having taken the
// registration once it took both. It returns how many took it.
func (w *watermarker) register(ctx context.Context, closed bool, regions []*region) int {
	if regions == nil {
		regions = w.s.regions
	}
	failed := w.registerIn(ctx, closed, regions)
	ok := len(regions) - len(failed)
	w.regions.Store(int32(ok))
	return ok
}

// registerIn writes the registration and the session (closed or not) in
// each of regions, concurrently, and returns the regions whose write
// failed.
func (w *watermarker) registerIn(ctx context.Context, closed bool, regions []*region) []*region {
	ttl := w.cfg.RegistrationTTL
	if closed {
		// A closed store's row is kept longer: repaird learns from it
		// which keyspace holds the debt it recorded. Its session, kept
		// as long as any, holds each region's watermark until the
		// closing heartbeat was applied there: its writes may still be
		// hints a region has not applied.
		ttl = closedRegistrationTTL
	}
	now := w.s.cfg.Now()
	home := w.s.regions[0].name
	ts := max(now.UnixMicro(), w.registered+1)
	row := driver.Row{CK: []byte(w.id), Value: schema.EncodeProducer(schema.Producer{Registered: w.registered, Closed: closed, Home: home}),
		Timestamp: ts, TTL: schema.TTLSeconds(ttl), Expires: schema.ExpiryAfter(now, ttl)}
	w.nsMu.Lock()
	session := schema.Session{Registered: w.registered, Closed: closed, Home: home, RegistrationTTL: w.cfg.RegistrationTTL,
		Namespaces: slices.Clone(w.namespaces)}
	w.nsMu.Unlock()
	sessionRow := driver.Row{CK: []byte(w.id), Value: schema.EncodeSession(session),
		Timestamp: ts, TTL: schema.TTLSeconds(schema.SessionTTL), Expires: schema.ExpiryAfter(now, schema.SessionTTL)}
	var mu sync.Mutex
	var failed []*region
	var wg sync.WaitGroup
	for _, r := range regions {
		wg.Go(func() {
			// The session first: a registration repaird can see always has
			// a session that outlives it.
			if w.write(ctx, r, schema.ProducersTable, schema.SessionsPartition, sessionRow) != nil ||
				w.write(ctx, r, schema.ProducersTable, schema.ProducersPartition, row) != nil {
				mu.Lock()
				failed = append(failed, r)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.SortFunc(failed, func(a, b *region) int { return a.idx - b.idx })
	return failed
}

// Retrying the closed registration: a region whose write failed (a
// timeout on a loaded node) is asked again closeAttempts times in all,
// closeRetry apart, within the Close's HintTimeout.
const (
	closeAttempts = 3
	closeRetry    = 200 * time.Millisecond
)

// retire writes the closed registration in every region, asking again the
// regions whose write failed, and returns the names of those that never
// recorded it: in them the Store stays registered as live until the
// registration expires.
func (w *watermarker) retire(ctx context.Context) []string {
	regions := w.s.regions
	for attempt := 1; ; attempt++ {
		regions = w.registerIn(ctx, true, regions)
		if len(regions) == 0 || attempt == closeAttempts || !wait.Sleep(ctx, closeRetry) {
			break
		}
	}
	w.regions.Store(int32(len(w.s.regions) - len(regions)))
	names := make([]string, len(regions))
	for i, r := range regions {
		names[i] = r.name
	}
	return names
}

// write writes one row of a watermark table in region r, creating the
// table first.
func (w *watermarker) write(ctx context.Context, r *region, table string, pk []byte, row driver.Row) error {
	ex, err := r.executor()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, w.s.cfg.Timeout)
	defer cancel()
	if !w.tableOK[r.idx].Load() {
		if err := ex.CreateTable(ctx, w.s.cfg.Keyspace, table, schema.WatermarkRetention); err != nil {
			return err
		}
		w.tableOK[r.idx].Store(true)
	}
	return ex.Write(ctx, driver.WriteRequest{Keyspace: w.s.cfg.Keyspace, Table: table, PK: pk, Rows: []driver.Row{row},
		Consistency: quorum.LocalQuorum.RegionConsistency()})
}

// beat sends one heartbeat per region, concurrently, and returns the
// regions whose heartbeat was not sent.
func (w *watermarker) beat(ctx context.Context, closing bool, regions []*region) (failed []*region) {
	ctx, cancel := context.WithTimeout(ctx, w.s.cfg.HintTimeout)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, r := range regions {
		w.unsettled.WithLabelValues(r.name).Set(float64(w.s.track.count[r.idx].Load()))
		hb := record.Heartbeat{Producer: w.id, Target: r.name, Before: w.s.track.before(r.idx), Registered: w.registered,
			SentAt: w.s.cfg.Now(), Partitions: 1, Closing: closing}
		wg.Go(func() {
			result := "ok"
			if err := w.sink.Heartbeat(ctx, hb); err != nil {
				result = "error"
				mu.Lock()
				failed = append(failed, r)
				mu.Unlock()
				w.s.logs.heartbeat.Do(func() {
					w.s.log.LogAttrs(ctx, slog.LevelWarn, "store: watermark heartbeat not sent; the region's watermark waits",
						slog.String("region", r.name), slog.Any("error", err))
				})
			}
			w.heartbeats.WithLabelValues(r.name, result).Inc()
		})
	}
	wg.Wait()
	slices.SortFunc(failed, func(a, b *region) int { return a.idx - b.idx })
	return failed
}

// closingBeat sends the closing heartbeat to every region, again to those
// whose heartbeat failed — the last periodic one, cut short by the stop,
// may still wait for Kafka, and a sink takes one heartbeat per topic at a
// time — every closeRetry until ctx ends, and returns the names of the
// regions it never reached.
func (w *watermarker) closingBeat(ctx context.Context) []string {
	regions := w.s.regions
	for {
		regions = w.beat(ctx, true, regions)
		if len(regions) == 0 || !wait.Sleep(ctx, closeRetry) {
			break
		}
	}
	names := make([]string, len(regions))
	for i, r := range regions {
		names[i] = r.name
	}
	return names
}

// close stops the heartbeats once the Store's background work has ended.
// With every write settled it retires the Store: a closing heartbeat to
// every region and, once every region's was sent, a registration marked
// closed (each region's watermark then waits until the closing heartbeat
// was applied there). Otherwise the registration is left to expire: the
// Store is taken for one that stopped without closing, repaird records
// full repairs of its namespaces and the watermarks wait for them — a
// closed mark without a closing heartbeat in some region would hold that
// region's watermark for as long as the session lives.
func (w *watermarker) close(ctx context.Context) {
	if w == nil {
		return
	}
	w.stop()
	<-w.done
	if !w.s.track.settled() {
		w.s.log.LogAttrs(ctx, slog.LevelWarn, "store: closed with writes unsettled; once its registration expires, repaird records full repairs of its namespaces and the watermarks wait for them",
			slog.String("producer", w.id), slog.Duration("registration_ttl", w.cfg.RegistrationTTL))
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.s.cfg.HintTimeout)
	defer cancel()
	if failed := w.closingBeat(ctx); len(failed) > 0 {
		w.s.log.LogAttrs(ctx, slog.LevelWarn, "store: closing heartbeat not sent; once its registration expires, repaird records full repairs of its namespaces and the watermarks wait for them",
			slog.String("producer", w.id), slog.Any("regions", failed), slog.Duration("registration_ttl", w.cfg.RegistrationTTL))
		return
	}
	if failed := w.retire(ctx); len(failed) > 0 {
		w.s.log.LogAttrs(ctx, slog.LevelWarn, "store: closed, but some regions did not record it; there it counts as live until its registration expires, then as stopped without closing",
			slog.String("producer", w.id), slog.Any("regions", failed), slog.Duration("registration_ttl", w.cfg.RegistrationTTL))
	}
}

// ErrNoWatermark reports that no watermark has been published for the
// region yet: repaird is not running its watermark worker, or has not
// computed one.
var ErrNoWatermark = errors.New("store: no convergence watermark published for the region")

// ConvergedBefore returns the region's convergence watermark as repaird
// last published it: the region holds every write that a live store
// acknowledged with a version below it (a write with version v, as
// WithVersionReport reports it, is covered when v < ConvergedBefore.UnixMicro()).
// It reads the published row from the home region, then the others in
// order, and returns the newest it finds. Errors: ErrNoWatermark when none
// is published, ErrUnknownRegion for a name not in Config.Regions, or the
// regions' errors when none answers.
func (s *Store) ConvergedBefore(ctx context.Context, region string) (time.Time, error) {
	if s.regionIndex(region) < 0 {
		return time.Time{}, fmt.Errorf("%w: %q (regions: %v)", ErrUnknownRegion, region, s.Regions())
	}
	var errs []error
	var best schema.Watermark
	for _, r := range s.regions {
		row, err := s.readRegion(ctx, r, quorum.LocalQuorum.String(), driver.ReadRequest{Keyspace: s.cfg.Keyspace, Table: schema.WatermarksTable,
			PK: schema.WatermarksPartition, CK: []byte(region), Consistency: quorum.LocalQuorum.RegionConsistency()})
		if err != nil {
			// Not found, or the table not created yet (refused): nothing
			// published there. Only a region that did not answer counts.
			if isAvailability(err) {
				errs = append(errs, fmt.Errorf("region %q: %w", r.name, err))
			}
			continue
		}
		wm, err := schema.DecodeWatermark(row.Value)
		if err != nil {
			errs = append(errs, fmt.Errorf("region %q: %w", r.name, err))
			continue
		}
		if wm.Before > best.Before {
			best = wm
		}
		if len(errs) == 0 {
			break // the home region (or the first that answered) is enough
		}
	}
	switch {
	case best.Before > 0:
		return time.UnixMicro(best.Before), nil
	case len(errs) == len(s.regions):
		return time.Time{}, fmt.Errorf("store: converged before: no region answered: %w", errors.Join(errs...))
	default:
		return time.Time{}, fmt.Errorf("%w %q", ErrNoWatermark, region)
	}
}

// WaitConverged waits until region's watermark (ConvergedBefore) passes
// t — the region then holds every write a live store acknowledged before
// t — polling every poll (default one second when poll <= 0). It returns
// ctx's error if ctx ends first, with the last watermark seen.
func (s *Store) WaitConverged(ctx context.Context, region string, t time.Time, poll time.Duration) error {
	if poll <= 0 {
		poll = time.Second
	}
	var last time.Time
	for {
		wm, err := s.ConvergedBefore(ctx, region)
		switch {
		case err == nil && wm.After(t):
			return nil
		case errors.Is(err, ErrUnknownRegion):
			return err
		case err == nil:
			last = wm
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("store: region %q not converged past %s (watermark %s): %w", region, t.UTC().Format(time.RFC3339Nano), last.UTC().Format(time.RFC3339Nano), ctx.Err())
		case <-time.After(poll):
		}
	}
}

// ErrUnknownRegion reports a region name that is not in Config.Regions.
var ErrUnknownRegion = errors.New("store: unknown region")

// regionIndex is the index of the named region, or -1.
func (s *Store) regionIndex(name string) int {
	for _, r := range s.regions {
		if r.name == name {
			return r.idx
		}
	}
	return -1
}
