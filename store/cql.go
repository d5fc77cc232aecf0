package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/internal/cluster"
	"github.com/tidemark/tidemark/internal/conflicts"
	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/store/driver"
)

// cqlExecutor is the driver.Executor of one region over a gocql session restricted
// to the region's data center. The session has no default keyspace (the
// keyspace may not exist yet); every statement names keyspace.table. The
// driver prepares and caches every statement with bound values, pages
// partition reads and routes each request to a replica of its partition.
type cqlExecutor struct {
	region string
	dc     string
	sess   *gocql.Session
	stmts  sync.Map // keyspace.table -> *statements
	// conflicts is the keyspace's conflict log in this region.
	conflicts *conflicts.CQL
}

// statements are the CQL texts of one table, built once.
type statements struct {
	insert, selectRow, selectFrom, selectAfter string
}

// driverTimeoutFloor is the least per-request timeout given to the driver.
const driverTimeoutFloor = 30 * time.Second

// dialCQL makes the default executor of region rc, used when
// Config.NewExecutor is nil.
func dialCQL(ctx context.Context, rc RegionConfig, ec driver.Config, configure func(string, *gocql.ClusterConfig)) (driver.Executor, error) {
	ec.Reach.Watching() // the region's first byte is reported (cluster.Region.Answered); Open also calls it
	sess, err := cluster.Connect(ctx, cluster.Region{
		Name:           rc.Name,
		ContactPoints:  rc.ContactPoints,
		LocalDC:        rc.LocalDC,
		Username:       rc.Username,
		Password:       rc.Password,
		TLS:            rc.TLS,
		AddressMap:     rc.AddressMap,
		ConnectTimeout: ec.ConnectTimeout,
		// Every call carries its own deadline in its context; the driver's
		// per-request timeout is only a backstop. It must not be the call
		// timeout, or schema changes (CREATE TABLE and the wait for schema
		// agreement), which take seconds on a busy cluster, would time out.
		Timeout:   max(ec.Timeout, driverTimeoutFloor),
		NumConns:  rc.NumConns,
		Logger:    ec.Logger,
		Configure: configureFor(rc.Name, configure),
		Answered:  ec.Reach.Answered,
	}, "")
	if err != nil {
		return nil, mapCQLError(ctx, err)
	}
	log, err := conflicts.NewCQL(sess, ec.Keyspace)
	if err != nil {
		sess.Close()
		return nil, err
	}
	return &cqlExecutor{region: rc.Name, dc: rc.LocalDC, sess: sess, conflicts: log}, nil
}

func (e *cqlExecutor) statements(keyspace, table string) *statements {
	key := keyspace + "." + table
	if st, ok := e.stmts.Load(key); ok {
		return st.(*statements)
	}
	st := &statements{
		insert:      schema.Insert(keyspace, table),
		selectRow:   schema.SelectRow(keyspace, table),
		selectFrom:  schema.SelectPartitionFirst(keyspace, table),
		selectAfter: schema.SelectPartition(keyspace, table),
	}
	actual, _ := e.stmts.LoadOrStore(key, st)
	return actual.(*statements)
}

func (e *cqlExecutor) CreateKeyspace(ctx context.Context, keyspace string, rf int) error {
	// The data center is the one the session is restricted to.
	dc := e.dc
	if dc == "" {
		dc = e.localDC(ctx)
	}
	if dc == "" {
		return fmt.Errorf("region %q: cannot tell the local data center for CREATE KEYSPACE; set RegionConfig.LocalDC", e.region)
	}
	if err := e.sess.Query(schema.CreateKeyspace(keyspace, dc, rf)).ExecContext(ctx); err != nil {
		return mapCQLError(ctx, err)
	}
	return mapCQLError(ctx, e.sess.AwaitSchemaAgreement(ctx))
}

// configureFor binds Config.ConfigureCQL to one region (nil stays nil).
func configureFor(region string, f func(string, *gocql.ClusterConfig)) func(*gocql.ClusterConfig) {
	if f == nil {
		return nil
	}
	return func(c *gocql.ClusterConfig) { f(region, c) }
}

// KeyspaceExists implements driver.KeyspaceChecker.
func (e *cqlExecutor) KeyspaceExists(ctx context.Context, keyspace string) (bool, error) {
	var name string
	err := e.sess.Query(`SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?`, keyspace).
		Consistency(gocql.LocalOne).ScanContext(ctx, &name)
	if err != nil && cluster.Classify(ctx, err) == cluster.NotFound {
		return false, nil
	}
	return err == nil, mapCQLError(ctx, err)
}

// localDC reads the data center of the node the session talks to.
func (e *cqlExecutor) localDC(ctx context.Context) string {
	var dc string
	if err := e.sess.Query(`SELECT data_center FROM system.local`).Consistency(gocql.One).ScanContext(ctx, &dc); err != nil {
		return ""
	}
	return dc
}

// CreateTable creates the table if it does not exist and brings one that
// an earlier version created to the current shape (schema.Upgrade).
func (e *cqlExecutor) CreateTable(ctx context.Context, keyspace, table string, retention time.Duration) error {
	if err := e.sess.Query(schema.CreateTable(keyspace, table, retention)).ExecContext(ctx); err != nil {
		return mapCQLError(ctx, err)
	}
	for _, stmt := range schema.Upgrade(keyspace, table) {
		if err := e.sess.Query(stmt).ExecContext(ctx); err != nil && !schema.IsColumnExists(err.Error()) {
			return mapCQLError(ctx, err)
		}
	}
	return mapCQLError(ctx, e.sess.AwaitSchemaAgreement(ctx))
}

func (e *cqlExecutor) TableRetention(ctx context.Context, keyspace, table string) (time.Duration, error) {
	d, err := cluster.ReadRetention(ctx, e.sess, keyspace, table)
	if errors.Is(err, cluster.ErrNoTable) || errors.Is(err, cluster.ErrNoRetention) {
		return 0, err // a refusal: the region answered
	}
	return d, mapCQLError(ctx, err)
}

func (e *cqlExecutor) Write(ctx context.Context, w driver.WriteRequest) error {
	st := e.statements(w.Keyspace, w.Table)
	rows := make([][]any, len(w.Rows))
	for i, r := range w.Rows {
		rows[i] = insertValues(w.PK, r)
	}
	return mapCQLError(ctx, cluster.WritePartition(ctx, e.sess, gocql.ParseConsistency(w.Consistency), st.insert, rows))
}

// insertValues binds one row of a write (row format 2: no null).
func insertValues(pk []byte, r driver.Row) []any {
	return schema.InsertValues(pk, r.CK, schema.RowCells(r.Deleted, r.Value, r.Expires), r.Timestamp, r.TTL)
}

// readRow completes a row as scanned: the driver returns an empty blob as
// nil, so a live row's nil value is empty; the absolute expiry is the
// expires column's, or for a row written before it existed the read's time
// plus the remaining TTL.
func readRow(r *driver.Row, expires int64, now time.Time) {
	if !r.Deleted && r.Value == nil {
		r.Value = []byte{}
	}
	if r.Deleted {
		r.Value = nil
	}
	r.Expires = schema.Expiry(expires, r.TTL, now)
}

func (e *cqlExecutor) Read(ctx context.Context, q driver.ReadRequest) (driver.Row, error) {
	st := e.statements(q.Keyspace, q.Table)
	r := driver.Row{CK: q.CK}
	var expires int64
	err := e.sess.Query(st.selectRow, q.PK, q.CK).Consistency(gocql.ParseConsistency(q.Consistency)).Idempotent(true).
		ScanContext(ctx, &r.Value, &r.Deleted, &r.Timestamp, &r.TTL, &expires)
	if err != nil {
		return driver.Row{}, mapCQLError(ctx, err)
	}
	readRow(&r, expires, time.Now())
	return r, nil
}

// maxDriverPage bounds the driver's page size for partition scans.
const maxDriverPage = 1000

func (e *cqlExecutor) Scan(ctx context.Context, q driver.ScanRequest) ([]driver.Row, error) {
	st := e.statements(q.Keyspace, q.Table)
	var query *gocql.Query
	if q.After == nil {
		query = e.sess.Query(st.selectFrom, q.PK)
	} else {
		query = e.sess.Query(st.selectAfter, q.PK, q.After)
	}
	it := query.Consistency(gocql.ParseConsistency(q.Consistency)).Idempotent(true).
		PageSize(min(max(q.Limit, 1), maxDriverPage)).IterContext(ctx)
	var rows []driver.Row
	size := 0
	now := time.Now()
	for len(rows) < q.Limit && size < q.MaxBytes {
		var r driver.Row
		var expires int64
		if !it.Scan(&r.CK, &r.Value, &r.Deleted, &r.Timestamp, &r.TTL, &expires) {
			break
		}
		readRow(&r, expires, now)
		rows = append(rows, r)
		size += len(r.CK) + len(r.Value)
	}
	if err := it.Close(); err != nil {
		return nil, mapCQLError(ctx, err)
	}
	return rows, nil
}

func (e *cqlExecutor) Close() error {
	e.sess.Close()
	return nil
}

// mapCQLError translates the driver's errors into the store's sentinels,
// as cluster.Classify judges them: availability failures wrap
// driver.ErrUnavailable or driver.ErrTimeout (so they count against the
// region's breaker and make hints); a missing row is driver.ErrNotFound;
// the request's own context ending is returned as it is; a refusal is
// returned as it is (with a hint at the usual cause of an invalid request).
func mapCQLError(ctx context.Context, err error) error {
	switch cluster.Classify(ctx, err) {
	case cluster.OK:
		return nil
	case cluster.NotFound:
		return driver.ErrNotFound
	case cluster.Timeout:
		return fmt.Errorf("%w: %w", driver.ErrTimeout, err)
	case cluster.Unavailable, cluster.Failed:
		return fmt.Errorf("%w: %w", driver.ErrUnavailable, err)
	case cluster.Refused:
		var invalid *gocql.RequestErrInvalid
		if errors.As(err, &invalid) {
			return fmt.Errorf("%w (was the namespace created with CreateNamespace?)", err)
		}
	}
	return err
}
