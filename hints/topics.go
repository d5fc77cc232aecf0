package hints

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
	metadataAPI "github.com/segmentio/kafka-go/protocol/metadata"
)

// DefaultTopicPrefix starts the name of every hint topic: the topic of
// region r is DefaultTopicPrefix + r.
const DefaultTopicPrefix = "tidemark.hints."

// DeadLetterSuffix is appended to the topic prefix to name the default
// dead-letter topic.
const DeadLetterSuffix = "dead"

// Defaults for topic creation.
const (
	DefaultPartitions = 8
	// DefaultReplicationFactor (-1) lets the brokers pick their
	// default.replication.factor.
	DefaultReplicationFactor = -1
)

// topicSpec is what ensureTopic creates.
type topicSpec struct {
	name              string
	partitions        int
	replicationFactor int
	retention         time.Duration
	minInSync         int
	maxMessageBytes   int64 // max.message.bytes; 0 leaves the brokers' default
}

// ensureTopic creates the topic if it does not exist and makes sure the
// transport's metadata cache knows it, so that the next write finds its
// partitions.
func ensureTopic(ctx context.Context, client *kafka.Client, spec topicSpec) error {
	cfg := kafka.TopicConfig{
		Topic:             spec.name,
		NumPartitions:     spec.partitions,
		ReplicationFactor: spec.replicationFactor,
	}
	if spec.retention > 0 {
		cfg.ConfigEntries = append(cfg.ConfigEntries, kafka.ConfigEntry{
			ConfigName: "retention.ms", ConfigValue: strconv.FormatInt(spec.retention.Milliseconds(), 10)})
	}
	if spec.maxMessageBytes > 0 {
		cfg.ConfigEntries = append(cfg.ConfigEntries, kafka.ConfigEntry{
			ConfigName: "max.message.bytes", ConfigValue: strconv.FormatInt(spec.maxMessageBytes, 10)})
	}
	if spec.minInSync > 0 {
		cfg.ConfigEntries = append(cfg.ConfigEntries, kafka.ConfigEntry{
			ConfigName: "min.insync.replicas", ConfigValue: strconv.Itoa(spec.minInSync)})
	}
	resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{cfg}})
	if err != nil {
		return fmt.Errorf("create topic %q: %w", spec.name, connectionCause(ctx, client, err))
	}
	err = resp.Errors[spec.name]
	switch {
	case err == nil:
		// The transport refreshed its metadata for the new topic; the
		// partitions' leaders may still be settling.
		awaitLeaders(ctx, client, spec.name)
		return nil
	case errors.Is(err, kafka.TopicAlreadyExists):
		// The topic may have been created by another process since the
		// transport cached its metadata; a metadata request that allows
		// auto-creation makes the transport refresh an unknown topic
		// (the topic exists, so nothing is created).
		_, err := client.Transport.RoundTrip(ctx, client.Addr, &metadataAPI.Request{
			TopicNames: []string{spec.name}, AllowAutoTopicCreation: true})
		if err != nil {
			return fmt.Errorf("read metadata of topic %q: %w", spec.name, err)
		}
		return nil
	default:
		return fmt.Errorf("create topic %q: %w", spec.name, err)
	}
}

// connectionCause returns why the brokers cannot be reached when err is
// kafka-go's BrokerNotAvailable: a transport that could not connect (a
// refused connection, a TLS handshake, SASL credentials) answers every
// request for a broker with BrokerNotAvailable, and keeps the real cause
// for metadata requests, which it serves from its cache.
func connectionCause(ctx context.Context, client *kafka.Client, err error) error {
	if !errors.Is(err, kafka.BrokerNotAvailable) {
		return err
	}
	if _, merr := client.Metadata(ctx, &kafka.MetadataRequest{}); merr != nil {
		return merr
	}
	return err
}

// awaitLeaders polls the topic's metadata until every partition reports a
// leader, for at most leaderWait (or until ctx ends). A broker that has just
// created a topic answers produce requests with NOT_LEADER_OR_FOLLOWER until
// it has taken the partitions' leadership; the writer retries those too, so
// this wait is an optimisation for the first hints, never a condition.
func awaitLeaders(ctx context.Context, client *kafka.Client, topic string) {
	ctx, cancel := context.WithTimeout(ctx, leaderWait)
	defer cancel()
	for delay := 20 * time.Millisecond; ; delay = min(2*delay, 500*time.Millisecond) {
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		if err == nil && leadersReady(md) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// leadersReady reports whether the one topic of md has partitions, every
// one with a leader.
func leadersReady(md *kafka.MetadataResponse) bool {
	if len(md.Topics) != 1 || md.Topics[0].Error != nil || len(md.Topics[0].Partitions) == 0 {
		return false
	}
	for _, p := range md.Topics[0].Partitions {
		if p.Error != nil || p.Leader.ID < 0 || p.Leader.Host == "" {
			return false
		}
	}
	return true
}

// leaderWait bounds awaitLeaders.
const leaderWait = 5 * time.Second
