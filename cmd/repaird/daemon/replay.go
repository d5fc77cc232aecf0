package daemon

import (
	"context"
	"fmt"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/cmd/repaird/config"
	"github.com/tidemark/tidemark/hints"
	"github.com/tidemark/tidemark/hints/record"
)

// Keyring builds the hint keyring from the config: the first key is current,
// the others previous (accepted until their accept_until). With no keys and
// require_hmac unset it returns nil: unsigned hints are accepted.
func Keyring(h config.Hints) (*record.Keyring, error) {
	if len(h.HMACKeys) == 0 {
		return nil, nil
	}
	secrets, err := h.Secrets()
	if err != nil {
		return nil, err
	}
	kc := record.KeyringConfig{AcceptUnsigned: !h.RequireHMAC}
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
	for _, region := range h.Regions {
		d.workers = append(d.workers, Worker{Name: "hints/" + region, Run: func(ctx context.Context) error {
			return d.replay(ctx, region, kr)
		}})
	}
	return nil
}

// replayerConfig is the configuration of region's replayer: its own
// consumer group "<hints.group>-<region>", writing through session s.
func (d *Daemon) replayerConfig(region string, s *gocql.Session, kr *record.Keyring) hints.ReplayerConfig {
	h := d.cfg.Hints
	return hints.ReplayerConfig{
		Brokers: h.Brokers, TopicPrefix: h.TopicPrefix, Region: region, GroupID: h.GroupFor(region),
		Applier: hints.NewCQLApplier(s, d.cfg.Keyspace), Keyring: kr, Retention: h.Retention,
		MaxHintsPerSecond: h.MaxHintsPerSecond, MaxBytesPerSecond: h.MaxBytesPerSecond,
		Logger: d.log.With("region", region),
	}
}

// replay runs the replayer of one region until ctx ends. It waits for the
// region's session first (the region may be down when the daemon starts);
// the replayer itself pauses while the region is unreachable.
func (d *Daemon) replay(ctx context.Context, region string, kr *record.Keyring) error {
	for attempt := 0; ; attempt++ {
		s, err := d.sessions.Get(ctx, region)
		if err == nil {
			r, err := hints.NewReplayer(d.replayerConfig(region, s, kr))
			if err != nil {
				return err
			}
			if err := d.reg.Register(r); err != nil {
				return fmt.Errorf("register hint metrics for %s: %w", region, err)
			}
			defer d.reg.Unregister(r)
			defer func() {
				if err := r.Close(); err != nil {
					d.log.Error("repaird: hint replayer did not close cleanly", "region", region, "err", err)
				}
			}()
			d.replaying(region, true)
			defer d.replaying(region, false)
			return r.Run(ctx)
		}
		if ctx.Err() != nil {
			return nil
		}
		if attempt == 0 {
			d.log.Warn("repaird: hint replay waits for its region", "region", region, "err", err)
		}
		if !d.sleepRetry(ctx) {
			return nil
		}
	}
}
