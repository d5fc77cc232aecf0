// Package containers starts the same environment as package env — three
// Cassandra 5.0 regions and a Kafka broker — with testcontainers-go, for users
// who have Docker. Select it in the integration tests with TIDEMARK_ENV=docker.
// Where no Docker daemon runs, Available reports why and the tests skip.
package containers

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/testcontainers/testcontainers-go"
	tccassandra "github.com/testcontainers/testcontainers-go/modules/cassandra"
	tckafka "github.com/testcontainers/testcontainers-go/modules/kafka"

	"github.com/tidemark/tidemark/integration/env"
)

// Images used; override with Options.
const (
	DefaultCassandraImage = "cassandra:5.0"
	DefaultKafkaImage     = "confluentinc/confluent-local:7.5.0"
)

// ErrNoDocker is returned by Start when no Docker daemon answers.
var ErrNoDocker = errors.New("no Docker daemon is reachable")

// Options configure a container environment.
type Options struct {
	// Regions names the regions; each is a single-node Cassandra container
	// whose data center is "datacenter1". Default: a, b, c.
	Regions []string
	// CassandraImage and KafkaImage override the images.
	CassandraImage, KafkaImage string
}

// Env is an environment of containers. Node controls (pause, kill) are not
// offered: those tests need the local environment.
type Env struct {
	mu      sync.Mutex
	regions []env.Region
	brokers []string
	cs      []testcontainers.Container
}

var _ env.Env = (*Env)(nil)

// Available reports whether a Docker daemon answers, and if not, why.
func Available(ctx context.Context) error {
	p, err := testcontainers.NewDockerProvider()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoDocker, err)
	}
	defer p.Close()
	if err := p.Health(ctx); err != nil {
		return fmt.Errorf("%w: %v", ErrNoDocker, err)
	}
	return nil
}

// Start starts the containers and waits until they serve requests.
func Start(ctx context.Context, o Options) (*Env, error) {
	if err := Available(ctx); err != nil {
		return nil, err
	}
	if len(o.Regions) == 0 {
		o.Regions = []string{"a", "b", "c"}
	}
	if o.CassandraImage == "" {
		o.CassandraImage = DefaultCassandraImage
	}
	if o.KafkaImage == "" {
		o.KafkaImage = DefaultKafkaImage
	}
	e := &Env{}
	for _, name := range o.Regions {
		c, err := tccassandra.Run(ctx, o.CassandraImage)
		if err != nil {
			_ = e.Close(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("region %s: %w", name, err)
		}
		e.cs = append(e.cs, c)
		host, err := c.ConnectionHost(ctx)
		if err != nil {
			_ = e.Close(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("region %s: %w", name, err)
		}
		e.regions = append(e.regions, env.Region{Name: name, DC: "datacenter1", Hosts: []string{host}})
	}
	k, err := tckafka.Run(ctx, o.KafkaImage, tckafka.WithClusterID("tidemark"))
	if err != nil {
		_ = e.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("kafka: %w", err)
	}
	e.cs = append(e.cs, k)
	if e.brokers, err = k.Brokers(ctx); err != nil {
		_ = e.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("kafka: %w", err)
	}
	return e, nil
}

// Regions implements env.Env.
func (e *Env) Regions() []env.Region { return append([]env.Region(nil), e.regions...) }

// KafkaBrokers implements env.Env.
func (e *Env) KafkaBrokers() []string { return append([]string(nil), e.brokers...) }

// Close terminates every container.
func (e *Env) Close(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	for _, c := range e.cs {
		if err := testcontainers.TerminateContainer(c); err != nil {
			errs = append(errs, err)
		}
	}
	e.cs = nil
	return errors.Join(errs...)
}
