package store

import (
	"context"
	"log/slog"
	"time"
)

//go:generate go run go.uber.org/mock/mockgen@v0.6.0 -source=executor.go -destination=mock_executor_test.go -package=store
//go:generate go run go.uber.org/mock/mockgen@v0.6.0 -source=hintsink.go -destination=mock_hintsink_test.go -package=store

// Executor is the I/O edge of a Store: it runs the statements of one region.
// A Store owns one Executor per region and never talks to a database any
// other way, so a test (or a simulation) can replace the database by giving
// Config.NewExecutor a function that returns its own Executor; see
// MemoryRegion for an in-memory one. The default Executor uses the gocql
// driver with prepared statements, the driver's paging and token-aware
// routing, restricted to the region's data center.
//
// Every method must be safe for concurrent use and must honour ctx. An
// Executor reports availability failures (unreachable nodes, not enough
// replicas, timeouts) by returning errors that wrap ErrUnavailable or
// ErrTimeout: those, and only those, count against the region's circuit
// breaker and turn a write into a hint.
type Executor interface {
	// CreateKeyspace creates keyspace in the region if it does not exist,
	// replicated replicationFactor times within the region's data center.
	CreateKeyspace(ctx context.Context, keyspace string, replicationFactor int) error
	// CreateTable creates a namespace's table if it does not exist, records
	// the tombstone retention with it, and waits until the region's nodes
	// agree on the schema. It must be safe to call from several processes
	// at once.
	CreateTable(ctx context.Context, keyspace, table string, retention time.Duration) error
	// TableRetention returns the tombstone retention recorded by
	// CreateTable for a namespace's table.
	TableRetention(ctx context.Context, keyspace, table string) (time.Duration, error)
	// Write applies rows of one partition, every cell of every row with the
	// row's own timestamp and TTL. One row is one INSERT; several rows are
	// one unlogged batch, which Cassandra applies atomically within the
	// partition.
	Write(ctx context.Context, w WriteRequest) error
	// Read returns one row, including a deletion marker, or an error
	// wrapping ErrNotFound when the region holds no version of it.
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
	// set (0 = none); on a read, the remaining TTL (0 = none).
	TTL int
}

// WriteRequest is the input of Executor.Write.
type WriteRequest struct {
	// Keyspace and Table name the namespace's table; both are validated,
	// unquoted CQL identifiers.
	Keyspace, Table string
	// PK is the partition key every row belongs to.
	PK []byte
	// Rows are the rows to write; each has its own Timestamp and TTL. The
	// digest column is computed from (Deleted, Value) by the Executor with
	// schema.Digest.
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

// ExecutorFactory makes the Executor of one region. Open calls it once per
// region; keyspace is Config.Keyspace, which may not exist yet (Open creates
// it afterwards when Config.CreateKeyspace is set).
type ExecutorFactory func(ctx context.Context, region RegionConfig, keyspace string, cfg ExecutorConfig) (Executor, error)

// ExecutorConfig carries the Store's settings that a region's executor needs.
type ExecutorConfig struct {
	// Timeout bounds one request (Config.Timeout).
	Timeout time.Duration
	// ConnectTimeout bounds connecting (Config.ConnectTimeout).
	ConnectTimeout time.Duration
	// Logger receives the driver's warnings.
	Logger *slog.Logger
}
