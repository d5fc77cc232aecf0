package hints

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/segmentio/kafka-go"
)

// Consumer-group timing of the replayer's reader (see readerConfig).
const (
	// DefaultSessionTimeout is the default ReplayerConfig.SessionTimeout:
	// how long the group coordinator waits without a heartbeat before it
	// drops a replayer from the group and gives its partitions to the
	// others. 6 s is the smallest session Kafka accepts by default
	// (group.min.session.timeout.ms); kafka-go's own default is 30 s,
	// which is how long replay stalled after a crash.
	DefaultSessionTimeout = 6 * time.Second
	// heartbeatInterval is a sixth of the default session: a live replayer
	// misses several heartbeats before it is dropped.
	heartbeatInterval = time.Second
	// rebalanceTimeout bounds how long the coordinator waits for the
	// group's live members to rejoin in a rebalance. kafka-go rejoins from
	// its own goroutine, whatever the replayer is applying.
	rebalanceTimeout = 10 * time.Second
	// lagInterval is how often Run measures the consumer lag.
	lagInterval = 2 * time.Second
	// groupRequestTimeout bounds each request of the lag measure and of
	// the eviction of an earlier incarnation.
	groupRequestTimeout = 5 * time.Second
)

// clientIDPrefix names the replayer's Kafka connections; with an
// InstanceID the group member's client id is clientIDPrefix + "/" +
// InstanceID, which is how a restarted replayer recognises the member its
// previous incarnation left behind.
const clientIDPrefix = "tidemark-hints-replayer"

func replayerClientID(instance string) string {
	if instance == "" {
		return clientIDPrefix
	}
	return clientIDPrefix + "/" + instance
}

// groupAdmin is what the replayer asks Kafka about its topic and consumer
// group, outside the reader: the consumer lag and the members of the
// group. kafka-go's Client routes the group requests to the group's
// coordinator and the offset requests to the partitions' leaders.
type groupAdmin struct {
	client   *kafka.Client
	topic    string
	group    string
	clientID string
}

// lag returns the records of the topic the group has not committed yet:
// the sum over the topic's partitions of the end offset minus the
// committed offset (or minus the first offset still stored, for a
// partition the group never committed, or whose committed offset was
// deleted by retention). It is exact up to the records produced and
// committed while the three requests run, and it never reads 0 while a
// record is neither committed nor deleted — unlike the reader's own
// statistics, which know only the partitions the reader holds right now
// (none while the group rebalances).
func (g *groupAdmin) lag(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*groupRequestTimeout)
	defer cancel()
	meta, err := g.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{g.topic}})
	if err != nil {
		return 0, fmt.Errorf("metadata of topic %q: %w", g.topic, err)
	}
	var parts []int
	for _, t := range meta.Topics {
		if t.Name != g.topic {
			continue
		}
		if t.Error != nil {
			return 0, fmt.Errorf("metadata of topic %q: %w", g.topic, t.Error)
		}
		for _, p := range t.Partitions {
			parts = append(parts, p.ID)
		}
	}
	if len(parts) == 0 {
		return 0, fmt.Errorf("topic %q has no partitions", g.topic)
	}
	reqs := make([]kafka.OffsetRequest, 0, 2*len(parts))
	for _, p := range parts {
		reqs = append(reqs, kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
	}
	offs, err := g.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{g.topic: reqs}})
	if err != nil {
		return 0, fmt.Errorf("offsets of topic %q: %w", g.topic, err)
	}
	committed, err := g.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: g.group, Topics: map[string][]int{g.topic: parts}})
	if err != nil {
		return 0, fmt.Errorf("committed offsets of group %q: %w", g.group, err)
	}
	if committed.Error != nil {
		return 0, fmt.Errorf("committed offsets of group %q: %w", g.group, committed.Error)
	}
	next := map[int]int64{}
	for _, p := range committed.Topics[g.topic] {
		if p.Error != nil {
			return 0, fmt.Errorf("committed offset of %s[%d]: %w", g.topic, p.Partition, p.Error)
		}
		next[p.Partition] = p.CommittedOffset
	}
	return sumLag(parts, offs.Topics[g.topic], next)
}

// sumLag adds up, over parts, end − max(committed, first); a partition
// without a committed offset (absent or negative) counts from its first
// offset.
func sumLag(parts []int, offsets []kafka.PartitionOffsets, committed map[int]int64) (int64, error) {
	byPart := map[int]kafka.PartitionOffsets{}
	for _, o := range offsets {
		byPart[o.Partition] = o
	}
	var lag int64
	for _, p := range parts {
		o, ok := byPart[p]
		switch {
		case !ok:
			return 0, fmt.Errorf("no offsets for partition %d", p)
		case o.Error != nil:
			return 0, fmt.Errorf("offsets of partition %d: %w", p, o.Error)
		case o.FirstOffset < 0 || o.LastOffset < 0:
			return 0, fmt.Errorf("offsets of partition %d unknown (first %d, end %d)", p, o.FirstOffset, o.LastOffset)
		}
		from := o.FirstOffset
		if c, ok := committed[p]; ok && c > from {
			from = c
		}
		lag += max(0, o.LastOffset-from)
	}
	return lag, nil
}

// evictPrevious removes from the group every member whose client id is
// this replayer's (see ReplayerConfig.InstanceID): called before the
// reader joins, such a member can only be an earlier incarnation — a
// process that crashed, whose session has not timed out yet — and
// removing it lets the coordinator hand out its partitions now rather
// than after SessionTimeout. It returns how many members it removed.
func (g *groupAdmin) evictPrevious(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*groupRequestTimeout)
	defer cancel()
	desc, err := g.client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{g.group}})
	if err != nil {
		return 0, fmt.Errorf("describe group %q: %w", g.group, err)
	}
	var leave []kafka.LeaveGroupRequestMember
	for _, grp := range desc.Groups {
		if grp.GroupID != g.group {
			continue
		}
		if grp.Error != nil {
			return 0, fmt.Errorf("describe group %q: %w", g.group, grp.Error)
		}
		for _, m := range grp.Members {
			if m.ClientID == g.clientID {
				leave = append(leave, kafka.LeaveGroupRequestMember{ID: m.MemberID})
			}
		}
	}
	if len(leave) == 0 {
		return 0, nil
	}
	resp, err := g.client.LeaveGroup(ctx, &kafka.LeaveGroupRequest{GroupID: g.group, Members: leave})
	if err != nil {
		return 0, fmt.Errorf("remove %d members from group %q: %w", len(leave), g.group, err)
	}
	if resp.Error != nil && !errors.Is(resp.Error, kafka.UnknownMemberId) {
		return 0, fmt.Errorf("remove %d members from group %q: %w", len(leave), g.group, resp.Error)
	}
	n := 0
	for _, m := range resp.Members {
		if m.Error == nil {
			n++
		}
	}
	if len(resp.Members) == 0 && resp.Error == nil {
		n = len(leave) // versions before 3 answer for the request as a whole
	}
	return n, nil
}

// lagLoop measures the consumer lag now and every lagInterval until ctx is
// done, and leaves it unknown (NaN) when it cannot be measured — and when
// Run returns.
func (r *Replayer) lagLoop(ctx context.Context) {
	defer r.setLag(math.NaN())
	t := time.NewTicker(lagInterval)
	defer t.Stop()
	for {
		n, err := r.measureLag(ctx)
		switch {
		case err == nil:
			r.setLag(float64(n))
		case ctx.Err() == nil:
			r.setLag(math.NaN())
			r.logErr.Do(func() { r.log.Warn("hints: cannot measure the consumer lag; reported as unknown", "err", err) })
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *Replayer) setLag(v float64) {
	r.lagValue.Store(math.Float64bits(v))
	r.metrics.lag.Set(v)
}

// Lag returns the records of the region's hint topic that the consumer
// group has not committed yet, as last measured (every 2 s while Run
// runs), and false when it is unknown: Run is not running, or Kafka did
// not answer the last measure. It counts committed offsets, so hints
// applied but not yet committed still count, and it is never 0 while a
// hint is pending.
func (r *Replayer) Lag() (int64, bool) {
	v := math.Float64frombits(r.lagValue.Load())
	if math.IsNaN(v) {
		return 0, false
	}
	return int64(v), true
}
