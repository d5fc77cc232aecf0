package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/internal/schema"
)

// ErrNoTable reports a namespace whose table does not exist in the region.
var ErrNoTable = errors.New("table does not exist")

// IsNoTable reports whether err is Cassandra's answer to a request on a
// table that does not exist (yet): an invalid request whose message names
// table — Cassandra 5.0 says "table … does not exist", earlier versions
// "unconfigured table …" — or an error wrapping ErrNoTable. Any other
// error, an unreachable region's included, is not.
func IsNoTable(err error, table string) bool {
	if errors.Is(err, ErrNoTable) {
		return true
	}
	var re gocql.RequestError
	if !errors.As(err, &re) || codeOf(re) != gocql.ErrCodeInvalid {
		return false
	}
	msg := re.Message()
	return strings.Contains(msg, table) &&
		(strings.Contains(msg, "does not exist") || strings.Contains(msg, "unconfigured table"))
}

// ErrNoRetention reports a table whose comment records no readable
// tombstone retention (a table not created by Tidemark, or a comment edited
// by hand).
var ErrNoRetention = errors.New("table records no tombstone retention")

// ReadRetention reads the tombstone retention recorded in the comment of
// keyspace.table (schema.CreateTable writes it; an operator may change it),
// at LOCAL_ONE from the schema tables. It is the one way Tidemark reads a
// retention from Cassandra: the store, the hint applier and repair call it,
// the first two through a schema.Retentions cache.
//
// A missing table is an error wrapping ErrNoTable, a comment without a
// readable retention one wrapping ErrNoRetention (both name the table);
// any other error is the driver's, for Classify.
func ReadRetention(ctx context.Context, s *gocql.Session, keyspace, table string) (time.Duration, error) {
	var comment string
	err := s.Query(schema.SelectTableComment, keyspace, table).Consistency(gocql.LocalOne).ScanContext(ctx, &comment)
	if errors.Is(err, gocql.ErrNotFound) {
		return 0, NoTableError(keyspace, table)
	}
	if err != nil {
		return 0, err
	}
	d, err := schema.ParseRetention(comment)
	if err != nil {
		return 0, NoRetentionError(keyspace, table, err)
	}
	return d, nil
}

// NoTableError is ReadRetention's error for a missing table (it wraps
// ErrNoTable); fakes of ReadRetention in tests return it too.
func NoTableError(keyspace, table string) error {
	return fmt.Errorf("table %s.%s: %w", keyspace, table, ErrNoTable)
}

// NoRetentionError is ReadRetention's error for a comment that records no
// readable retention, cause being the parse error (it wraps both).
func NoRetentionError(keyspace, table string, cause error) error {
	return fmt.Errorf("table %s.%s: %w (%w; Tidemark writes '%s retention=<seconds>')",
		keyspace, table, cause, ErrNoRetention, schema.CommentPrefix)
}
