// Package env starts and controls the real environment Tidemark is tested
// on: Apache Cassandra 5.0 regions (each its own cluster, one or three nodes
// on loopback addresses 127.0.0.N) and one Apache Kafka broker in KRaft mode,
// all from released jars fetched from Maven Central with mvn and run as local
// JVM processes. No Docker is needed; users with Docker can use the
// testcontainers implementation in env/containers instead.
//
// An environment is started once per test run (or once by `make up`) and
// shared: each test makes its own keyspaces, topics and fault proxies.
package env

import (
	"context"
	"errors"
)

// ErrStart is returned when a server fails to start.
var ErrStart = errors.New("server failed to start")

// ErrPortInUse is returned when an address the environment needs is taken.
var ErrPortInUse = errors.New("port already in use")

// ErrNotRunning is returned by Attach when no environment is running.
var ErrNotRunning = errors.New("no environment is running")

// ErrUnsupported is returned by controls an implementation cannot offer
// (killing a node of a container environment, say).
var ErrUnsupported = errors.New("not supported by this environment")

// Region is one region's Cassandra cluster as a client sees it.
type Region struct {
	// Name is the region's name ("a", "b", ...).
	Name string
	// DC is the Cassandra data center name of the region.
	DC string
	// Hosts are the nodes' "ip:port" CQL endpoints.
	Hosts []string
}

// Env is what tests need from an environment, whichever way it was started.
type Env interface {
	// Regions lists the regions in order.
	Regions() []Region
	// KafkaBrokers lists the Kafka bootstrap addresses.
	KafkaBrokers() []string
	// Close stops what this Env started (an attached Env stops nothing).
	Close(ctx context.Context) error
}

// RegionByName returns the region called name.
func RegionByName(e Env, name string) (Region, bool) {
	for _, r := range e.Regions() {
		if r.Name == name {
			return r, true
		}
	}
	return Region{}, false
}
