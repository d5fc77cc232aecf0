// Package driver is the plug-in side of package store, as database/sql/driver
// is of database/sql: the narrow interface a region's database is reached
// through ([Executor]), the requests and rows it takes and returns, the
// errors by which it reports availability failures, and an in-memory
// implementation with fault hooks ([MemoryRegion]).
//
// Services use package store and never need this package, except to run a
// Store without Cassandra (store.Config.NewExecutor = driver.MemoryFactory(…))
// in their own tests and simulations. The default executor, which store
// uses when Config.NewExecutor is nil, runs CQL over the gocql driver.
//
// # The contract
//
// Every Executor method must be safe for concurrent use and honour its
// context. An Executor classifies its failures for the store:
//
//   - an availability failure (unreachable nodes, not enough replicas, a
//     timeout, an overloaded coordinator) wraps [ErrUnavailable] or
//     [ErrTimeout]: it counts against the region's circuit breaker and turns
//     a write into a hint;
//   - a missing row wraps [ErrNotFound] (Read only);
//   - the request's own context ending is returned as the context's error;
//   - anything else is a refusal: the region answered and will not take the
//     request (an invalid statement, a missing table, no permission). A
//     refused write is never hinted, since replaying it would be refused
//     too.
package driver

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Errors an Executor wraps to classify its failures. Package store
// re-exports them under the same names (store.ErrUnavailable is
// ErrUnavailable), so a caller tests a call's error against the store's.
var (
	// ErrUnavailable means the region could not be reached or did not have
	// enough live replicas: an availability failure.
	ErrUnavailable = errors.New("store: region unavailable")

	// ErrTimeout means the region did not answer in time: an availability
	// failure. A write that timed out may still have been applied.
	ErrTimeout = errors.New("store: timed out")

	// ErrNotFound means the region holds no version of the row.
	ErrNotFound = errors.New("store: not found")
)

// Executor runs the statements of one region. A Store owns one Executor per
// region and never reaches a database any other way.
type Executor interface {
	// CreateKeyspace creates keyspace in the region if it does not exist,
	// replicated replicationFactor times within the region's data center.
	CreateKeyspace(ctx context.Context, keyspace string, replicationFactor int) error
	// CreateTable creates a namespace's table if it does not exist, records
	// the tombstone retention with it, and waits until the region's nodes
	// agree on the schema. It must be safe to call from several processes
	// at once.
	CreateTable(ctx context.Context, keyspace, table string, retention time.Duration) error
	// TableRetention returns the tombstone retention recorded with a
	// namespace's table (by CreateTable, or changed since by an operator).
	TableRetention(ctx context.Context, keyspace, table string) (time.Duration, error)
	// Write applies rows of one partition, every cell of every row with the
	// row's own timestamp and TTL. One row is one INSERT; several rows are
	// one unlogged batch, which Cassandra applies atomically within the
	// partition.
	Write(ctx context.Context, w WriteRequest) error
	// Read returns one row, including a deletion marker and a row whose
	// Expires has passed but which the region still holds (it still
	// supersedes older versions), or an error wrapping ErrNotFound when
	// the region holds no version of it. A live row's empty value is
	// returned as an empty, non-nil slice.
	Read(ctx context.Context, r ReadRequest) (Row, error)
	// Scan returns the rows of one partition after a clustering key, in
	// clustering order (unsigned byte order), deletion markers included. It
	// stops after Limit rows, or after the row that brings the total size of
	// keys and values to MaxBytes or more.
	Scan(ctx context.Context, s ScanRequest) ([]Row, error)
	// Close releases the region's connections.
	Close() error
}

// Row is one version of one row as a region stores it.
type Row struct {
	// CK is the clustering key.
	CK []byte
	// Value is the value; nil for a deletion marker.
	Value []byte
	// Deleted marks a deletion marker.
	Deleted bool
	// Timestamp is the version: the write time of every cell of the row, in
	// microseconds since the Unix epoch.
	Timestamp int64
	// TTL is the row's time to live in whole seconds: on a write, the TTL to
	// set (0 = none); on a read, the remaining TTL (0 = none). It only
	// reclaims the space: Expires decides visibility.
	TTL int
	// Expires is the row's absolute expiry in seconds since the Unix epoch
	// (0 = never), the same in every region (docs/design.md, "Expiry"): on
	// a write, the value of the expires column; on a read, the column, or
	// for a row written before it existed, the read's time plus the
	// remaining TTL (schema.Expiry). A row whose Expires has passed is
	// absent for every reader, whatever its TTL says.
	Expires int64
}

// WriteRequest is the input of Executor.Write.
type WriteRequest struct {
	// Keyspace and Table name the namespace's table; both are validated,
	// unquoted CQL identifiers.
	Keyspace, Table string
	// PK is the partition key every row belongs to.
	PK []byte
	// Rows are the rows to write; each has its own Timestamp, TTL and
	// Expires. The Executor writes every column of a row, none of them null
	// (schema.RowCells, schema.InsertValues: a marker's value and a nil
	// value are empty blobs), so that a row's cells reconcile alike.
	Rows []Row
	// Consistency is the Cassandra consistency level inside the region:
	// "LOCAL_ONE", "LOCAL_QUORUM" or "ALL".
	Consistency string
}

// ReadRequest is the input of Executor.Read.
type ReadRequest struct {
	// Keyspace and Table name the namespace's table.
	Keyspace, Table string
	// PK and CK are the row's keys.
	PK, CK []byte
	// Consistency is the Cassandra consistency level inside the region.
	Consistency string
}

// ScanRequest is the input of Executor.Scan.
type ScanRequest struct {
	// Keyspace and Table name the namespace's table.
	Keyspace, Table string
	// PK is the partition to read.
	PK []byte
	// After is an exclusive lower bound on the clustering key; nil reads
	// from the start of the partition.
	After []byte
	// Limit is the most rows to return (at least 1).
	Limit int
	// MaxBytes bounds the keys and values returned (at least one row is
	// returned if any exists).
	MaxBytes int
	// Consistency is the Cassandra consistency level inside the region.
	Consistency string
}

// Factory makes the Executor of one region. store.Open calls it once per
// region.
type Factory func(ctx context.Context, cfg Config) (Executor, error)

// Config is what a Factory is told about the region it connects to.
type Config struct {
	// Region is the region's name (store.RegionConfig.Name).
	Region string
	// Keyspace is the store's keyspace, which may not exist yet (the store
	// creates it after connecting when store.Config.CreateKeyspace is set).
	Keyspace string
	// Timeout bounds one request (store.Config.Timeout).
	Timeout time.Duration
	// ConnectTimeout bounds connecting (store.Config.ConnectTimeout).
	ConnectTimeout time.Duration
	// Logger receives the executor's warnings.
	Logger *slog.Logger
	// Reach, when the Factory uses it, tells Open whether the region
	// answers while the Factory connects (see Reach). Never nil when
	// store.Open calls the Factory.
	Reach *Reach
}

// KeyspaceChecker is an optional interface of an Executor: store.Open
// asks it whether the Store's keyspace exists (when Config.CreateKeyspace
// is not set), so that a keyspace that does not exist fails Open instead of
// every call.
type KeyspaceChecker interface {
	KeyspaceExists(ctx context.Context, keyspace string) (bool, error)
}
