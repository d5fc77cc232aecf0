package daemon

import (
	"context"
	"fmt"
	"maps"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/hints"
)

// HintView is one region's hint replay, as /v1/hints and /status report
// it: read from the region's replayer's own metrics.
type HintView struct {
	Region string `json:"region"`
	// Replaying is true while the replayer runs; Paused while it waits for
	// the region (or the dead-letter topic).
	Replaying bool `json:"replaying"`
	Paused    bool `json:"paused"`
	// Lag is the records of the region's topic not yet replayed (null
	// while it cannot be measured: Kafka does not answer, or the replayer
	// has not measured it yet); the oldest hint being worked on is
	// OldestAgeSeconds old.
	Lag              *float64 `json:"lag"`
	OldestAgeSeconds float64  `json:"oldest_age_seconds"`
	// Replayed counts the hints applied; ReplayRate is hints a second
	// over about the last minute.
	Replayed   float64 `json:"replayed"`
	ReplayRate float64 `json:"replay_rate"`
	// DeadLetters counts the hints dead-lettered, by reason.
	DeadLetters map[string]float64 `json:"dead_letters"`
}

// hintBoard holds the replayers this daemon runs.
type hintBoard struct {
	mu      sync.Mutex
	regions map[string]*hintState
}

func newHintBoard() *hintBoard { return &hintBoard{regions: map[string]*hintState{}} }

// hintState reads one replayer's metrics through a registry of its own.
type hintState struct {
	region string
	reg    *prometheus.Registry

	mu      sync.Mutex
	samples []hintSample
}

type hintSample struct {
	at       time.Time
	replayed float64
}

func (b *hintBoard) add(region string, r *hints.Replayer) (*hintState, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(r); err != nil {
		return nil, fmt.Errorf("hint metrics of %s: %w", region, err)
	}
	hs := &hintState{region: region, reg: reg}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.regions[region] = hs
	return hs, nil
}

func (b *hintBoard) remove(region string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.regions, region)
}

// sampleEvery and sampleSpan define the replay rate: samples of the
// replayed count every 5s over the last minute.
const (
	sampleEvery = 5 * time.Second
	sampleSpan  = time.Minute
)

// sample records the replayed count until ctx ends.
func (h *hintState) sample(ctx context.Context) {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		v := h.read()
		h.mu.Lock()
		h.samples = append(h.samples, hintSample{at: time.Now(), replayed: v.Replayed})
		for len(h.samples) > 1 && time.Since(h.samples[0].at) > sampleSpan {
			h.samples = h.samples[1:]
		}
		h.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// read returns the replayer's metrics now.
func (h *hintState) read() HintView {
	v := HintView{Region: h.region, Replaying: true, DeadLetters: map[string]float64{}}
	mfs, err := h.reg.Gather()
	if err != nil {
		return v
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			val := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			switch mf.GetName() {
			case "tidemark_hints_replayed_total":
				v.Replayed = val
			case "tidemark_hints_consumer_lag":
				if !math.IsNaN(val) {
					v.Lag = &val
				}
			case "tidemark_hints_oldest_unreplayed_age_seconds":
				v.OldestAgeSeconds = val
			case "tidemark_hints_replay_paused":
				v.Paused = val == 1
			case "tidemark_hints_dead_lettered_total":
				for _, l := range m.GetLabel() {
					if l.GetName() == "reason" {
						v.DeadLetters[l.GetValue()] = val
					}
				}
			}
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := len(h.samples); n > 0 {
		first := h.samples[0]
		if d := time.Since(first.at).Seconds(); d > 0.5 {
			v.ReplayRate = (v.Replayed - first.replayed) / d
		}
	}
	return v
}

// hintViews returns the hint replay of every region in hints.regions, in
// order; a region whose replayer does not run is reported so.
func (d *Daemon) hintViews() []HintView {
	d.hints.mu.Lock()
	states := maps.Clone(d.hints.regions)
	d.hints.mu.Unlock()
	var out []HintView
	for _, region := range d.cfg.Hints.Regions {
		if hs := states[region]; hs != nil {
			out = append(out, hs.read())
		} else {
			out = append(out, HintView{Region: region, DeadLetters: map[string]float64{}})
		}
	}
	return out
}
