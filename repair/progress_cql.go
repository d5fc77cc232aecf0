package repair

import (
	"context"
	"errors"
	"fmt"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/internal/schema"
)

// Progress tables, created in the progress region's keyspace by
// NewCQLProgress, and the location table, created in every region's
// keyspace by RecordProgressLocation.
const (
	runsTable     = "tidemark_repair_runs"
	currentTable  = "tidemark_repair_current"
	segmentsTable = "tidemark_repair_segments"
	leasesTable   = "tidemark_repair_leases"
	controlTable  = "tidemark_repair_control"
	// LocationTable records, in every region, the one region whose
	// keyspace holds the repair progress of the keyspace's namespaces.
	LocationTable = "tidemark_repair_location"
)

// CQLProgress is a ProgressStore in Cassandra tables of one keyspace (the
// progress region's, the same for every process that repairs the keyspace:
// see RecordProgressLocation): the namespace's current run
// (tidemark_repair_current, created with INSERT ... IF NOT EXISTS so that
// concurrent daemons join one run), its segments' records
// (tidemark_repair_segments), the history of runs (tidemark_repair_runs) and
// segment leases (tidemark_repair_leases): a lease is a row inserted with
// INSERT ... IF NOT EXISTS USING TTL, renewed and released with conditional
// UPDATE/DELETE ... IF owner = ?, at LOCAL_SERIAL.
type CQLProgress struct {
	s  *gocql.Session
	ks string
}

// ProgressTablesDDL returns the statements that create the progress tables.
func ProgressTablesDDL(keyspace string) []string {
	return []string{
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s.%s (namespace text, run_id text, segments int, started_at timestamp, finished_at timestamp, PRIMARY KEY ((namespace), run_id)) WITH CLUSTERING ORDER BY (run_id DESC)`, keyspace, runsTable),
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s.%s (namespace text PRIMARY KEY, run_id text, segments int, started_at timestamp)`, keyspace, currentTable),
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s.%s (namespace text, run_id text, segment int, done boolean, finished_at timestamp, owner text, rows_scanned bigint, rows_differing bigint, rows_written bigint, attempts int, last_error text, PRIMARY KEY ((namespace, run_id), segment))`, keyspace, segmentsTable),
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s.%s (namespace text, run_id text, segment int, owner text, PRIMARY KEY ((namespace, run_id, segment)))`, keyspace, leasesTable),
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s.%s (namespace text, run_id text, state text, intensity double, rows_per_second double, scope text, updated_by text, updated_at timestamp, PRIMARY KEY ((namespace), run_id))`, keyspace, controlTable),
	}
}

// NewCQLProgress creates the progress tables if they do not exist and
// returns the store. The keyspace must exist.
func NewCQLProgress(ctx context.Context, s *gocql.Session, keyspace string) (*CQLProgress, error) {
	if err := schema.ValidateName("keyspace", keyspace); err != nil {
		return nil, err
	}
	for _, ddl := range ProgressTablesDDL(keyspace) {
		if err := s.Query(ddl).ExecContext(ctx); err != nil {
			return nil, fmt.Errorf("repair: create progress table in keyspace %q: %w", keyspace, err)
		}
	}
	return &CQLProgress{s: s, ks: keyspace}, nil
}

func (p *CQLProgress) q(stmt string, args ...any) *gocql.Query {
	return p.s.Query(fmt.Sprintf(stmt, p.ks), args...).Consistency(gocql.LocalQuorum).SerialConsistency(gocql.LocalSerial)
}

// Begin implements ProgressStore.
func (p *CQLProgress) Begin(ctx context.Context, namespace string, segments int) (RunInfo, error) {
	run := RunInfo{Namespace: namespace}
	err := p.q(`SELECT run_id, segments, started_at FROM %s.`+currentTable+` WHERE namespace = ?`, namespace).
		Consistency(gocql.LocalSerial).ScanContext(ctx, &run.ID, &run.Segments, &run.StartedAt)
	if err == nil {
		run.Resumed = true
		return run, nil
	}
	if !errors.Is(err, gocql.ErrNotFound) {
		return RunInfo{}, err
	}
	run = RunInfo{ID: NewRunID(), Namespace: namespace, Segments: segments, StartedAt: time.Now().UTC().Truncate(time.Millisecond)}
	existing := map[string]any{}
	applied, err := p.q(`INSERT INTO %s.`+currentTable+` (namespace, run_id, segments, started_at) VALUES (?, ?, ?, ?) IF NOT EXISTS`,
		namespace, run.ID, run.Segments, run.StartedAt).MapScanCASContext(ctx, existing)
	if err != nil {
		return RunInfo{}, err
	}
	if !applied {
		id, _ := existing["run_id"].(string)
		n, _ := existing["segments"].(int)
		at, _ := existing["started_at"].(time.Time)
		return RunInfo{ID: id, Namespace: namespace, Segments: n, StartedAt: at, Resumed: true}, nil
	}
	if err := p.q(`INSERT INTO %s.`+runsTable+` (namespace, run_id, segments, started_at) VALUES (?, ?, ?, ?)`,
		namespace, run.ID, run.Segments, run.StartedAt).ExecContext(ctx); err != nil {
		return RunInfo{}, err
	}
	return run, nil
}

// Abandon implements ProgressStore: a conditional DELETE of the current run
// (IF run_id = ?); the run's row in the history keeps no finish time.
func (p *CQLProgress) Abandon(ctx context.Context, run RunInfo) error {
	_, err := p.q(`DELETE FROM %s.`+currentTable+` WHERE namespace = ? IF run_id = ?`, run.Namespace, run.ID).
		MapScanCASContext(ctx, map[string]any{})
	return err
}

// Segments implements ProgressStore.
func (p *CQLProgress) Segments(ctx context.Context, run RunInfo) (map[int]SegmentRecord, error) {
	iter := p.q(`SELECT segment, done, finished_at, owner, rows_scanned, rows_differing, rows_written, attempts, last_error FROM %s.`+segmentsTable+` WHERE namespace = ? AND run_id = ?`,
		run.Namespace, run.ID).IterContext(ctx)
	out := map[int]SegmentRecord{}
	var r SegmentRecord
	for iter.Scan(&r.Index, &r.Done, &r.FinishedAt, &r.Owner, &r.RowsScanned, &r.RowsDiffering, &r.RowsWritten, &r.Attempts, &r.LastError) {
		out[r.Index] = r
		r = SegmentRecord{}
	}
	return out, iter.Close()
}

func ttlSeconds(d time.Duration) int { return max(schema.TTLSeconds(d), 1) }

// Acquire implements ProgressStore.
func (p *CQLProgress) Acquire(ctx context.Context, run RunInfo, segment int, owner string, ttl time.Duration) (bool, error) {
	existing := map[string]any{}
	applied, err := p.q(`INSERT INTO %s.`+leasesTable+` (namespace, run_id, segment, owner) VALUES (?, ?, ?, ?) IF NOT EXISTS USING TTL ?`,
		run.Namespace, run.ID, segment, owner, ttlSeconds(ttl)).MapScanCASContext(ctx, existing)
	if err != nil || applied {
		return applied, err
	}
	if o, _ := existing["owner"].(string); o == owner {
		return p.Renew(ctx, run, segment, owner, ttl)
	}
	return false, nil
}

// LeaseOwner implements LeaseInspector: the owner of the segment's live
// lease, read at LOCAL_SERIAL so that it sees the leases' LWTs.
func (p *CQLProgress) LeaseOwner(ctx context.Context, run RunInfo, segment int) (string, bool, error) {
	var owner string
	err := p.q(`SELECT owner FROM %s.`+leasesTable+` WHERE namespace = ? AND run_id = ? AND segment = ?`,
		run.Namespace, run.ID, segment).Consistency(gocql.LocalSerial).ScanContext(ctx, &owner)
	if errors.Is(err, gocql.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return owner, true, nil
}

var _ LeaseInspector = (*CQLProgress)(nil)

// Renew implements ProgressStore.
func (p *CQLProgress) Renew(ctx context.Context, run RunInfo, segment int, owner string, ttl time.Duration) (bool, error) {
	return p.q(`UPDATE %s.`+leasesTable+` USING TTL ? SET owner = ? WHERE namespace = ? AND run_id = ? AND segment = ? IF owner = ?`,
		ttlSeconds(ttl), owner, run.Namespace, run.ID, segment, owner).MapScanCASContext(ctx, map[string]any{})
}

// Release implements ProgressStore.
func (p *CQLProgress) Release(ctx context.Context, run RunInfo, segment int, owner string) error {
	_, err := p.q(`DELETE FROM %s.`+leasesTable+` WHERE namespace = ? AND run_id = ? AND segment = ? IF owner = ?`,
		run.Namespace, run.ID, segment, owner).MapScanCASContext(ctx, map[string]any{})
	return err
}

// Record implements ProgressStore. A failed attempt only updates the
// attempt columns, so it can never undo a finished segment.
func (p *CQLProgress) Record(ctx context.Context, run RunInfo, rec SegmentRecord) error {
	if rec.Done {
		return p.q(`INSERT INTO %s.`+segmentsTable+` (namespace, run_id, segment, done, finished_at, owner, rows_scanned, rows_differing, rows_written, attempts) VALUES (?, ?, ?, true, ?, ?, ?, ?, ?, ?)`,
			run.Namespace, run.ID, rec.Index, rec.FinishedAt, rec.Owner, rec.RowsScanned, rec.RowsDiffering, rec.RowsWritten, rec.Attempts).ExecContext(ctx)
	}
	return p.q(`UPDATE %s.`+segmentsTable+` SET owner = ?, attempts = ?, last_error = ? WHERE namespace = ? AND run_id = ? AND segment = ?`,
		rec.Owner, rec.Attempts, rec.LastError, run.Namespace, run.ID, rec.Index).ExecContext(ctx)
}

// Finish implements ProgressStore.
func (p *CQLProgress) Finish(ctx context.Context, run RunInfo, at time.Time) error {
	if err := p.q(`UPDATE %s.`+runsTable+` SET finished_at = ?, segments = ?, started_at = ? WHERE namespace = ? AND run_id = ?`,
		at, run.Segments, run.StartedAt, run.Namespace, run.ID).ExecContext(ctx); err != nil {
		return err
	}
	_, err := p.q(`DELETE FROM %s.`+currentTable+` WHERE namespace = ? IF run_id = ?`, run.Namespace, run.ID).
		MapScanCASContext(ctx, map[string]any{})
	return err
}

// LastFinished implements ProgressStore: the newest run with a finish time
// among the namespace's last 100 runs.
func (p *CQLProgress) LastFinished(ctx context.Context, namespace string) (RunInfo, bool, error) {
	// Rows come newest id first; the run with the latest start among the
	// finished ones wins, so that the answer does not depend on how ids
	// of runs started close together compare.
	iter := p.q(`SELECT run_id, segments, started_at, finished_at FROM %s.`+runsTable+` WHERE namespace = ? LIMIT 100`, namespace).IterContext(ctx)
	var best RunInfo
	found := false
	r := RunInfo{Namespace: namespace}
	for iter.Scan(&r.ID, &r.Segments, &r.StartedAt, &r.FinishedAt) {
		if !r.FinishedAt.IsZero() && (!found || r.StartedAt.After(best.StartedAt)) {
			best, found = r, true
		}
	}
	if err := iter.Close(); err != nil {
		return RunInfo{}, false, err
	}
	return best, found, nil
}

// Current implements RunLister: the namespace's unfinished run, read at
// LOCAL_SERIAL.
func (p *CQLProgress) Current(ctx context.Context, namespace string) (RunInfo, bool, error) {
	run := RunInfo{Namespace: namespace}
	err := p.q(`SELECT run_id, segments, started_at FROM %s.`+currentTable+` WHERE namespace = ?`, namespace).
		Consistency(gocql.LocalSerial).ScanContext(ctx, &run.ID, &run.Segments, &run.StartedAt)
	if errors.Is(err, gocql.ErrNotFound) {
		return RunInfo{}, false, nil
	}
	if err != nil {
		return RunInfo{}, false, err
	}
	return run, true, nil
}

// Runs implements RunLister: the newest runs of the history.
func (p *CQLProgress) Runs(ctx context.Context, namespace string, limit int) ([]RunInfo, error) {
	iter := p.q(`SELECT run_id, segments, started_at, finished_at FROM %s.`+runsTable+` WHERE namespace = ? LIMIT ?`, namespace, max(limit, 1)).IterContext(ctx)
	var out []RunInfo
	r := RunInfo{Namespace: namespace}
	for iter.Scan(&r.ID, &r.Segments, &r.StartedAt, &r.FinishedAt) {
		out = append(out, r)
		r = RunInfo{Namespace: namespace}
	}
	return out, iter.Close()
}

// Directive implements ControlStore.
func (p *CQLProgress) Directive(ctx context.Context, run RunInfo) (Directive, error) {
	var d Directive
	var state, scope, by string
	var at time.Time
	err := p.q(`SELECT state, intensity, rows_per_second, scope, updated_by, updated_at FROM %s.`+controlTable+` WHERE namespace = ? AND run_id = ?`,
		run.Namespace, run.ID).ScanContext(ctx, &state, &d.Intensity, &d.RowsPerSecond, &scope, &by, &at)
	if errors.Is(err, gocql.ErrNotFound) {
		return Directive{}, nil
	}
	if err != nil {
		return Directive{}, err
	}
	d.State, d.Scope, d.By, d.At = RunState(state), scope, by, at
	return d, nil
}

// SetDirective implements ControlStore: one UPDATE of the columns d sets
// (each column is last-write-wins on its own, so a pause and a new rate
// asked of two daemons at once both stick).
func (p *CQLProgress) SetDirective(ctx context.Context, run RunInfo, d Directive) error {
	if err := d.Validate(); err != nil {
		return err
	}
	set := "updated_by = ?, updated_at = ?"
	args := []any{d.By, d.At}
	if d.State != "" {
		set += ", state = ?"
		args = append(args, string(d.State))
	}
	if d.Intensity != nil {
		set += ", intensity = ?"
		args = append(args, *d.Intensity)
	}
	if d.RowsPerSecond != nil {
		set += ", rows_per_second = ?"
		args = append(args, *d.RowsPerSecond)
	}
	if d.Scope != "" {
		set += ", scope = ?"
		args = append(args, d.Scope)
	}
	args = append(args, run.Namespace, run.ID)
	return p.q(`UPDATE %s.`+controlTable+` SET `+set+` WHERE namespace = ? AND run_id = ?`, args...).ExecContext(ctx)
}

// ProgressLocation is where the repair progress of a keyspace lives, as a
// region records it in its LocationTable.
type ProgressLocation struct {
	// Region is the name of the region whose keyspace holds the progress
	// tables.
	Region string
	// By names the process that recorded it (Options.Owner), and At when.
	By string
	At time.Time
}

// locationKey is the one row of LocationTable.
const locationKey = "progress"

// LocationTableDDL returns the statement that creates LocationTable. Its
// table id is derived from its name (schema.TableID), so that daemons
// starting together agree on one table.
func LocationTableDDL(keyspace string) string {
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s.%s (id text PRIMARY KEY, progress_region text, recorded_by text, recorded_at timestamp) WITH ID = %s`,
		keyspace, LocationTable, schema.TableID(keyspace, LocationTable))
}

// RecordProgressLocation records loc in the keyspace of the region that s
// reaches, unless a location is recorded there already: it creates
// LocationTable if needed and inserts its one row with INSERT … IF NOT
// EXISTS (a lightweight transaction at LOCAL_SERIAL). It returns the
// location the region records: loc, or the one recorded before. Every
// process that repairs the keyspace records its progress region so, in
// every region it reaches, and refuses to run when one records another
// (cmd/repaird's daemon.ProgressLocator): processes whose progress lived
// in different regions would never see each other's leases.
func RecordProgressLocation(ctx context.Context, s *gocql.Session, keyspace string, loc ProgressLocation) (ProgressLocation, error) {
	if err := schema.ValidateName("keyspace", keyspace); err != nil {
		return ProgressLocation{}, err
	}
	if err := s.Query(LocationTableDDL(keyspace)).ExecContext(ctx); err != nil {
		return ProgressLocation{}, fmt.Errorf("repair: create %s.%s: %w", keyspace, LocationTable, err)
	}
	existing := map[string]any{}
	applied, err := s.Query(fmt.Sprintf(`INSERT INTO %s.%s (id, progress_region, recorded_by, recorded_at) VALUES (?, ?, ?, ?) IF NOT EXISTS`, keyspace, LocationTable),
		locationKey, loc.Region, loc.By, loc.At).Consistency(gocql.LocalQuorum).SerialConsistency(gocql.LocalSerial).
		MapScanCASContext(ctx, existing)
	if err != nil {
		return ProgressLocation{}, fmt.Errorf("repair: record the progress location in %s.%s: %w", keyspace, LocationTable, err)
	}
	if applied {
		return loc, nil
	}
	var got ProgressLocation
	got.Region, _ = existing["progress_region"].(string)
	got.By, _ = existing["recorded_by"].(string)
	got.At, _ = existing["recorded_at"].(time.Time)
	return got, nil
}
