package daemon

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tidemark/tidemark/cmd/repaird/config"
	"github.com/tidemark/tidemark/hints"
	"github.com/tidemark/tidemark/hints/record"
)

// Keyring builds the hint keyring from the config: the first key is current,
// the others previous (accepted until their accept_until). Listed keys
// refuse unsigned hints unless require_hmac: false is written out
// (Hints.RequiresHMAC). With no keys it returns nil: unsigned hints are
// accepted.
func Keyring(h config.Hints) (*record.Keyring, error) {
	if len(h.HMACKeys) == 0 {
		return nil, nil
	}
	secrets, err := h.Secrets()
	if err != nil {
		return nil, err
	}
	kc := record.KeyringConfig{AcceptUnsigned: !h.RequiresHMAC()}
	for i, k := range h.HMACKeys {
		key := record.Key{ID: k.ID, Secret: secrets[k.ID], AcceptUntil: k.AcceptUntil}
		if i == 0 {
			key.AcceptUntil = time.Time{}
			kc.Current = key
		} else {
			kc.Previous = append(kc.Previous, key)
		}
	}
	kr, err := record.NewKeyring(kc)
	if err != nil {
		return nil, fmt.Errorf("hints.hmac_keys: %w", err)
	}
	return kr, nil
}

// addReplayers adds one hint-replayer worker per region in hints.regions.
func (d *Daemon) addReplayers() error {
	h := d.cfg.Hints
	if len(h.Brokers) == 0 {
		return nil
	}
	kr, err := Keyring(h)
	if err != nil {
		return err
	}
	if d.kafkaTLS, err = h.KafkaTLS(); err != nil {
		return err
	}
	if d.kafkaSASL, err = h.KafkaSASL(); err != nil {
		return err
	}
	for _, region := range h.Regions {
		d.workers = append(d.workers, Worker{Name: "hints/" + region, Run: func(ctx context.Context) error {
			return d.replay(ctx, region, kr)
		}})
	}
	return nil
}

// replayerConfig is the configuration of region's replayer: its own
// consumer group "<hints.group>-<region>", applying through a.
func (d *Daemon) replayerConfig(region string, a hints.Applier, kr *record.Keyring) hints.ReplayerConfig {
	h := d.cfg.Hints
	return hints.ReplayerConfig{
		Brokers: h.Brokers, TopicPrefix: h.TopicPrefix, Region: region, GroupID: h.GroupFor(region),
		TLS: d.kafkaTLS, SASL: d.kafkaSASL, InstanceID: h.InstanceID,
		Applier: a, Keyring: kr, Retention: h.Retention, Debt: debtRecorder{d}, Marks: markRecorder{d},
		MaxHintsPerSecond: h.MaxHintsPerSecond, MaxBytesPerSecond: h.MaxBytesPerSecond,
		Logger: d.log.With("region", region),
	}
}

// replay runs the replayer of one region until ctx ends. It starts at
// once, whether the region is reachable or not, so that its metrics (lag,
// oldest hint's age, paused) exist from the start: its Applier connects to
// the region on first use (lazyApplier), and while the region cannot be
// reached the replayer pauses, as for any outage.
func (d *Daemon) replay(ctx context.Context, region string, kr *record.Keyring) error {
	la := &lazyApplier{d: d, region: region}
	r, err := hints.NewReplayer(d.replayerConfig(region, la, kr))
	if err != nil {
		return err
	}
	if err := d.reg.Register(r); err != nil {
		return fmt.Errorf("register hint metrics for %s: %w", region, err)
	}
	defer d.reg.Unregister(r)
	hs, err := d.hints.add(region, r)
	if err != nil {
		return err
	}
	defer d.hints.remove(region)
	defer func() {
		if err := r.Close(); err != nil {
			d.log.Error("repaird: hint replayer did not close cleanly", "region", region, "err", err)
		}
	}()
	d.replaying(region, true)
	defer d.replaying(region, false)
	sampled := make(chan struct{})
	go func() { defer close(sampled); hs.sample(ctx) }()
	defer func() { <-sampled }()
	return r.Run(ctx)
}

// lazyApplier applies hints through the region's session, connecting on
// first use; while the region cannot be reached (tried again at most
// every MaxReconnectDelay) Apply and Probe fail, so the replayer pauses.
type lazyApplier struct {
	d      *Daemon
	region string

	mu      sync.Mutex
	a       hints.Applier
	lastTry time.Time
	lastErr error
}

func (l *lazyApplier) get(ctx context.Context) (hints.Applier, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.a != nil {
		return l.a, nil
	}
	if l.lastErr != nil && time.Since(l.lastTry) < min(l.d.retry, MaxReconnectDelay) {
		return nil, l.lastErr
	}
	l.lastTry = time.Now()
	s, err := l.d.sessions.Get(ctx, l.region)
	if err != nil {
		l.lastErr = fmt.Errorf("region %q is not connected: %w", l.region, err)
		return nil, l.lastErr
	}
	l.a = hints.NewCQLApplier(s, l.d.cfg.Keyspace)
	return l.a, nil
}

// Apply implements hints.Applier.
func (l *lazyApplier) Apply(ctx context.Context, h record.Hint) error {
	a, err := l.get(ctx)
	if err != nil {
		return err
	}
	return a.Apply(ctx, h)
}

// Probe implements hints.Prober: a region not connected does not answer.
func (l *lazyApplier) Probe(ctx context.Context, h record.Hint) error {
	a, err := l.get(ctx)
	if err != nil {
		return err
	}
	if p, ok := a.(hints.Prober); ok {
		return p.Probe(ctx, h)
	}
	return nil
}
