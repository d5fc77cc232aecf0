package integration

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tidemark/tidemark/hints"
	"github.com/tidemark/tidemark/hints/record"
)

// deadMember joins group as a consumer with the given client id and a
// long session, takes every partition of topic, and then never heartbeats:
// what a replayer killed with SIGKILL leaves in the group until its
// session times out. It returns the member id.
func deadMember(t *testing.T, group, clientID, topic string, partitions int, session time.Duration) string {
	t.Helper()
	c := &kafka.Client{Addr: kafka.TCP(testEnv(t).KafkaBrokers()...), Timeout: 30 * time.Second,
		Transport: &kafka.Transport{ClientID: clientID}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req := &kafka.JoinGroupRequest{GroupID: group, SessionTimeout: session, RebalanceTimeout: session,
		ProtocolType: "consumer", Protocols: []kafka.GroupProtocol{{Name: "range", Metadata: kafka.GroupProtocolSubscription{Topics: []string{topic}}}}}
	var join *kafka.JoinGroupResponse
	for attempt := 0; ; attempt++ {
		resp, err := c.JoinGroup(ctx, req)
		if err == nil {
			err = resp.Error
		}
		if errors.Is(err, kafka.MemberIDRequired) && attempt == 0 {
			req.MemberID = resp.MemberID // brokers ≥ 2.2 hand out the id first
			continue
		}
		if err != nil {
			t.Fatalf("join group %s: %v", group, err)
		}
		join = resp
		break
	}
	all := make([]int, partitions)
	for i := range all {
		all[i] = i
	}
	sync, err := c.SyncGroup(ctx, &kafka.SyncGroupRequest{GroupID: group, GenerationID: join.GenerationID, MemberID: join.MemberID,
		ProtocolType: "consumer", ProtocolName: "range",
		Assignments: []kafka.SyncGroupRequestAssignment{{MemberID: join.MemberID,
			Assignment: kafka.GroupProtocolAssignment{AssignedPartitions: map[string][]int{topic: all}}}}})
	if err == nil {
		err = sync.Error
	}
	if err != nil {
		t.Fatalf("sync group %s: %v", group, err)
	}
	return join.MemberID
}

func groupMembers(t *testing.T, group string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := kafkaAdmin(t).DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		t.Fatalf("describe group %s: %v", group, err)
	}
	var ids []string
	for _, g := range resp.Groups {
		for _, m := range g.Members {
			ids = append(ids, m.MemberID)
		}
	}
	return ids
}

// gatedApplier holds every Apply until open is closed.
type gatedApplier struct {
	hints.Applier
	open chan struct{}
}

func (g *gatedApplier) Apply(ctx context.Context, h record.Hint) error {
	select {
	case <-g.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.Applier.Apply(ctx, h)
}

// TestReplayResumesPastCrashedIncarnation: a replayer that crashed holds
// every partition of its group until its session times out (45 s here, 30
// s with kafka-go's default). Its successor, started with the same
// InstanceID, removes it and replays at once, and the lag it reports — read
// from the topic's end offsets and the group's committed offsets — equals
// the hints pending while they are held back, and is 0 only once they are
// committed.
func TestReplayResumesPastCrashedIncarnation(t *testing.T) {
	t.Parallel()
	const n, partitions = 300, 4
	const deadSession = 45 * time.Second
	ks := newKeyspace(t, "b")
	hintsTable(t, ks, "b")
	prefix := newTopicPrefix(t)
	prod := hintsProducer(t, prefix, nil)
	sb := directSession(t, "b", ks)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := prod.EnsureTopic(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	group := prefix + "replayer-b"
	const instance = "repaird-0"
	dead := deadMember(t, group, "tidemark-hints-replayer/"+instance, prefix+"b", partitions, deadSession)
	crashed := time.Now()

	muts := makeMutations(n, 7)
	if err := parallel(n, 16, func(i int) error {
		m := muts[i]
		m.at = time.Now()
		return prod.Hint(ctx, m.hint("b"))
	}); err != nil {
		t.Fatal(err)
	}

	gate := &gatedApplier{Applier: hints.NewCQLApplier(sb, ks), open: make(chan struct{})}
	var openOnce sync.Once
	t.Cleanup(func() { openOnce.Do(func() { close(gate.open) }) })
	r, err := hints.NewReplayer(hints.ReplayerConfig{
		Brokers: testEnv(t).KafkaBrokers(), TopicPrefix: prefix, Region: "b", GroupID: group,
		InstanceID: instance, Applier: gate, Partitions: partitions, ReplicationFactor: 1,
		BackoffMin: 50 * time.Millisecond, BackoffMax: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	if _, known := r.Lag(); known {
		t.Fatal("lag known before Run")
	}
	runReplayer(t, r)

	// Held back by the gate, every hint is pending: the lag says so.
	eventually(t, time.Minute, "the lag counts every pending hint", func() error {
		if lag, known := r.Lag(); !known || lag != n {
			return fmt.Errorf("lag %d (known %v), want %d", lag, known, n)
		}
		return nil
	})
	if got := gauge(t, r, "tidemark_hints_consumer_lag"); got != n {
		t.Fatalf("lag gauge %v, want %d", got, n)
	}
	openOnce.Do(func() { close(gate.open) })

	eventually(t, 2*time.Minute, "every hint replayed", func() error {
		if c := countRows(t, sb, ks); c != n {
			return fmt.Errorf("%d rows of %d", c, n)
		}
		return nil
	})
	took := time.Since(crashed)
	t.Logf("replayed %d hints %v after the earlier incarnation stopped heartbeating (its session: %v)", n, took.Round(time.Millisecond), deadSession)
	if took >= deadSession {
		t.Fatalf("replay finished %v after the crash, after the dead member's %v session: it waited for the session instead of removing the member", took, deadSession)
	}
	for _, id := range groupMembers(t, group) {
		if id == dead {
			t.Fatalf("the crashed incarnation %s is still a member of %s", dead, group)
		}
	}
	eventually(t, time.Minute, "the lag falls to 0 once committed", func() error {
		if lag, known := r.Lag(); !known || lag != 0 {
			return fmt.Errorf("lag %d (known %v)", lag, known)
		}
		return nil
	})
}
