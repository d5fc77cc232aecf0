// Package watermark computes a region's convergence watermark: a timestamp
// T such that the region holds every write that a live store acknowledged
// with a version below T (docs/design.md, "The convergence watermark").
//
// The evidence comes from two places, both kept in Cassandra by the
// processes that know them:
//
//   - every store registers itself (a Producer) in its home region when it
//     opens, refreshes the registration while it runs and marks it closed
//     when it closes; its writes all carry versions above Registered;
//   - every store sends, about once a second, a heartbeat to each partition
//     of each region's hint topic, saying "every write I acknowledged below
//     Before has been applied in the region, or is a hint earlier in this
//     partition, or is repair debt"; the region's replayer records a Mark
//     for each heartbeat once it has applied every record before it in its
//     partition.
//
// A producer's watermark is the least Before over the marks of all its
// partitions — or its registration, while some partition has none yet. The
// region's is the least over live producers, and never above the oldest
// repair debt still owed to the region. This package is pure: it only
// combines what it is given.
package watermark

import (
	"sort"
	"time"
)

// Producer is a store process as its registration row says.
type Producer struct {
	// ID names the producer in its heartbeats.
	ID string
	// Registered is a version (µs since the epoch) below every write the
	// producer makes: it registered before issuing any.
	Registered int64
	// Closed is set once the producer has closed: it makes no more
	// writes, and its last heartbeat says Closing.
	Closed bool
}

// Mark is one heartbeat applied in one partition of a region's hint
// topic.
type Mark struct {
	// Producer is the heartbeat's producer.
	Producer string
	// Partition is the partition the heartbeat was read from, and
	// Partitions how many partitions the producer sent that round of
	// heartbeats to.
	Partition, Partitions int
	// Before is the heartbeat's promise, a version in µs.
	Before int64
	// Closing is set on a closing producer's last heartbeat.
	Closing bool
	// SentAt is when the producer sent it.
	SentAt time.Time
}

// Result is a region's watermark and how it was found.
type Result struct {
	// Before is the watermark, a version in µs: the region holds every
	// write a live producer acknowledged with a lower version.
	Before int64
	// Live is how many producers were taken into account.
	Live int
	// Retired is how many closed producers were left out: their last
	// heartbeat had been applied in every partition.
	Retired int
	// Limit names what holds the watermark where it is: a producer id,
	// "debt", or "" when nothing does (no live producer: Before is the
	// time of the computation).
	Limit string
}

// Compute returns the watermark of one region from the registered
// producers (those whose registration is current, and those Exits found
// waiting: a producer that stopped without closing is not passed once its
// exit is due),
// the marks the region's replayers recorded, the oldest version of repair
// debt still owed to the region (0: none), and now.
func Compute(producers []Producer, marks []Mark, debt int64, now time.Time) Result {
	type cover struct {
		partitions int
		before     map[int]int64
		closing    map[int]bool
	}
	byProducer := map[string]*cover{}
	for _, m := range marks {
		c := byProducer[m.Producer]
		if c == nil {
			c = &cover{before: map[int]int64{}, closing: map[int]bool{}}
			byProducer[m.Producer] = c
		}
		c.partitions = max(c.partitions, m.Partitions)
		if b, ok := c.before[m.Partition]; !ok || m.Before > b {
			c.before[m.Partition] = m.Before
		}
		c.closing[m.Partition] = c.closing[m.Partition] || m.Closing
	}
	res := Result{Before: now.UnixMicro()}
	sorted := append([]Producer(nil), producers...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].ID < sorted[j].ID })
	for _, p := range sorted {
		c := byProducer[p.ID]
		before := p.Registered
		complete := c != nil && c.partitions > 0
		if complete {
			lowest, allClosing := int64(0), true
			for part := range c.partitions {
				b, ok := c.before[part]
				if !ok {
					complete = false
					break
				}
				if part == 0 || b < lowest {
					lowest = b
				}
				allClosing = allClosing && c.closing[part]
			}
			if complete && p.Closed && allClosing {
				res.Retired++
				continue
			}
			if complete {
				before = max(lowest, p.Registered)
			}
		}
		res.Live++
		if before < res.Before {
			res.Before, res.Limit = before, p.ID
		}
	}
	if debt > 0 && debt < res.Before {
		res.Before, res.Limit = debt, "debt"
	}
	return res
}

// Session is a store's session row as repaird merged it from the
// regions: its registration, kept long after the store stopped
// (schema.SessionsPartition).
type Session struct {
	// ID is the store's producer id.
	ID string
	// Registered is the store's registration version (µs).
	Registered int64
	// Home is the store's home region.
	Home string
	// Closed is set when the store closed with every write settled;
	// Exited once repaird recorded the store's unclean exit.
	Closed, Exited bool
	// RegistrationTTL is how long the store's registration lives without
	// a refresh.
	RegistrationTTL time.Duration
	// Refreshed is the newest time the store wrote the session (its
	// row's timestamp): the store refreshes it with its registration.
	Refreshed time.Time
	// Namespaces are the namespaces the store opened.
	Namespaces []string
}

// Exits sorts out the sessions of stores without a current registration
// (registered holds the ids of the registrations read), in id order.
// exits are the stores that stopped without closing: neither closed nor
// already handled, and not refreshed for longer than their registration
// lives plus the clock-skew bound. Such a store may have acknowledged
// writes that no region, hint or repair debt holds: Compute no longer
// counts it, and only a full repair covers them. waiting are the
// sessions the caller passes to Compute as producers (Waiting): those not
// yet past that bound — a registration just expired, or missing from a
// read for a moment — so that no watermark passes their writes before
// their exit is recorded; and the closed ones, whose writes may still be
// hints a region has not applied: Compute retires such a store in a region
// only once its closing heartbeat was applied in every partition there,
// however long after it closed (its session and the marks of its closing
// heartbeat are kept for schema.SessionTTL).
func Exits(sessions []Session, registered map[string]bool, now time.Time, skew time.Duration) (exits, waiting []Session) {
	for _, s := range sessions {
		if s.Exited || registered[s.ID] {
			continue
		}
		if s.Closed || now.Sub(s.Refreshed) <= s.RegistrationTTL+skew {
			waiting = append(waiting, s)
			continue
		}
		exits = append(exits, s)
	}
	sort.Slice(exits, func(i, j int) bool { return exits[i].ID < exits[j].ID })
	sort.Slice(waiting, func(i, j int) bool { return waiting[i].ID < waiting[j].ID })
	return exits, waiting
}

// Waiting is the producer Compute counts for a session Exits found
// waiting.
func (s Session) Waiting() Producer {
	return Producer{ID: s.ID, Registered: s.Registered, Closed: s.Closed}
}
