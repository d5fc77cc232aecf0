package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/tidemark/tidemark/internal/schema"
)

// Namespace is one table, the same in every region, holding rows addressed
// by a partition key and a clustering key. Rows of one partition are stored
// together, ordered by clustering key, and can be written together with one
// version (PutBatch) and scanned (Scan). Get a Namespace from Store.Namespace or
// Store.CreateNamespace; it is safe for concurrent use.
type Namespace struct {
	s    *Store
	name string
}

// Name returns the namespace's name (its table name in every region).
func (n *Namespace) Name() string { return n.name }

// Namespace returns a handle on an existing namespace without any I/O. The
// name must match [a-z][a-z0-9_]{0,47} (ErrInvalidNamespace otherwise); the
// table itself is created by CreateNamespace, and calls on a namespace whose
// table does not exist fail in the region.
//
// Deletes use the tombstone retention recorded with the table, and nothing
// else: the first Delete reads it from the first region that answers (home
// first) and it is re-read every minute (an operator may change it). A
// retention given here could only be a guess — one shorter than the
// table's makes markers expire early and deleted rows come back — so
// WithRetention is refused (ErrInvalidOption): it applies to
// CreateNamespace. A Delete that finds no region able to tell fails with
// ErrUnavailable and writes nothing.
func (s *Store) Namespace(name string, opts ...NamespaceOption) (*Namespace, error) {
	if err := validateNamespace(name); err != nil {
		return nil, err
	}
	o := namespaceOptions{}
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	if o.err != nil {
		return nil, o.err
	}
	if o.retention > 0 {
		return nil, fmt.Errorf("%w: Namespace(%q, WithRetention(%v)): a namespace's tombstone retention is the one recorded with its table, read by the first Delete; pass WithRetention to CreateNamespace",
			ErrInvalidOption, name, o.retention)
	}
	s.wm.noteNamespace(name)
	return &Namespace{s: s, name: name}, nil
}

func validateNamespace(name string) error {
	if err := schema.ValidateName("namespace", name); err != nil {
		// err already names schema.ErrInvalidName, which ErrInvalidNamespace
		// wraps; keep only its explanation.
		msg := strings.TrimPrefix(err.Error(), schema.ErrInvalidName.Error()+": ")
		return fmt.Errorf("%w: %s", ErrInvalidNamespace, msg)
	}
	return nil
}

// CreateNamespace creates the namespace's table in every region, in
// parallel, and waits until each region's nodes agree on the schema. It is
// idempotent (CREATE TABLE IF NOT EXISTS), so every process of a service may
// call it at start-up. With the default executors and conflict detection
// on, it also creates the keyspace's conflict log table (tidemark_conflicts,
// docs/repair.md "Conflicts"), so that the first conflict is not the one
// that waits for a schema change; failing that only logs a warning (the
// log tries again when it records). Options: WithRetention (default
// schema.DefaultRetention, 10 days), recorded with the table; an existing
// table keeps the retention it was created with.
//
// A region that Open left connecting in the background is waited for, up
// to Config.ConnectTimeout (or ctx): a service that creates its namespaces
// right after Open does not fail because a region answered later than the
// home region. It fails, naming the regions, if any region cannot create
// the table; call it again once they are back.
func (s *Store) CreateNamespace(ctx context.Context, name string, opts ...NamespaceOption) (*Namespace, error) {
	if err := validateNamespace(name); err != nil {
		return nil, err
	}
	o := namespaceOptions{retention: schema.DefaultRetention}
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	if o.err != nil {
		return nil, o.err
	}
	end, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer end()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: create namespace %s: %w", name, err)
	}
	errs := make([]error, len(s.regions))
	var wg sync.WaitGroup
	for i, r := range s.regions {
		wg.Go(func() {
			cctx, cancel := s.requestCtx(ctx, false, 0)
			defer cancel()
			ex, err := s.awaitExecutor(cctx, r, s.cfg.ConnectTimeout)
			if err == nil {
				err = s.abortedErr(normalize(ex.CreateTable(cctx, s.cfg.Keyspace, name, o.retention)))
			}
			if err == nil {
				s.ensureConflictTable(cctx, r, ex)
			}
			if err != nil {
				errs[i] = &RegionError{Region: r.name, Op: "create namespace", Err: err}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("store: create namespace %s: %w", name, err)
	}
	// Learn the retention actually recorded (an existing table keeps its
	// own, which may differ from o.retention). If no region can tell now,
	// nothing is cached and the first Delete reads it: o.retention would be
	// a guess.
	if _, err := s.tableRetention(ctx, "create namespace", name, s.cfg.Timeout); err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "store: namespace created, but its tombstone retention could not be read back; the first Delete will read it",
			slog.String("namespace", name), slog.Any("error", err))
	}
	s.wm.noteNamespace(name)
	return &Namespace{s: s, name: name}, nil
}

// retention returns the namespace's tombstone retention, for a deletion
// marker written by op.
func (n *Namespace) retention(ctx context.Context, op string, timeout time.Duration) (time.Duration, error) {
	return n.s.tableRetention(ctx, op, n.name, timeout)
}
