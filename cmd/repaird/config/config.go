// Package config reads and checks repaird's YAML configuration file.
//
// Decoding is strict: an unknown field is an error that names the field and
// its line, so a misspelt setting never silently falls back to a default.
// [Load] reads a file, applies defaults and validates; [Parse] does the same
// for bytes.
package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tidemark/tidemark/internal/cluster"
	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/repair"
)

// ErrInvalid is wrapped by every configuration error.
var ErrInvalid = errors.New("invalid configuration")

// Config is the whole file.
type Config struct {
	// Home is the name of this daemon's region: the one whose hints it
	// replays by default (hints.regions). Repair progress lives in
	// Repair.ProgressRegion, the same for every daemon.
	Home string `yaml:"home"`
	// Keyspace is the keyspace (same name in every region) of the namespaces.
	Keyspace string `yaml:"keyspace"`
	// Namespaces are repaired by `repaird serve`: a name, or a mapping
	// with a name and settings of its own (see Namespace). None (with
	// hints configured) makes a replay-only daemon.
	Namespaces []Namespace `yaml:"namespaces"`
	// Regions are the regions to repair (at least two when namespaces are
	// listed; one is enough for a replay-only daemon).
	Regions []Region `yaml:"regions"`
	// Repair tunes repair.
	Repair Repair `yaml:"repair"`
	// Hints configures the hint replayer (parsed and validated here).
	Hints Hints `yaml:"hints"`
	// HTTP configures the daemon's HTTP endpoints.
	HTTP HTTP `yaml:"http"`
	// Watermark configures the convergence watermark worker
	// (docs/operations.md, "The convergence watermark").
	Watermark Watermark `yaml:"watermark"`
}

// Region is one region's Cassandra cluster.
type Region struct {
	Name          string   `yaml:"name"`
	ContactPoints []string `yaml:"contact_points"`
	// LocalDC is the region's data center, as Cassandra names it
	// (required: the session only talks to its hosts).
	LocalDC  string `yaml:"local_dc"`
	Username string `yaml:"username"`
	// Password, PasswordFile (a file holding it) or PasswordEnv (an
	// environment variable holding it): at most one.
	Password     string            `yaml:"password"`
	PasswordFile string            `yaml:"password_file"`
	PasswordEnv  string            `yaml:"password_env"`
	TLS          *TLS              `yaml:"tls"`
	AddressMap   map[string]string `yaml:"address_map"`
	// ConnectTimeout bounds connecting (default 5s).
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// Timeout bounds one request (default 10s).
	Timeout time.Duration `yaml:"timeout"`
}

// TLS configures client TLS to a region.
type TLS struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// Repair tunes repair; zero values take repair.Options' defaults.
type Repair struct {
	Segments       int           `yaml:"segments"`
	RowsPerSegment int64         `yaml:"rows_per_segment"`
	RowsPerSecond  float64       `yaml:"rows_per_second"`
	Intensity      float64       `yaml:"intensity"`
	Parallelism    int           `yaml:"parallelism"`
	Concurrency    int           `yaml:"concurrency"`
	PageSize       int           `yaml:"page_size"`
	MaxAttempts    int           `yaml:"max_attempts"`
	LeaseTTL       time.Duration `yaml:"lease_ttl"`
	Owner          string        `yaml:"owner"`
	// Interval is the time between the starts of two scheduled runs of a
	// namespace (default 24h).
	Interval time.Duration `yaml:"interval"`
	// MaxRunAge is how old an unfinished run may be and still be resumed;
	// an older one is abandoned and a new run starts (default: half the
	// namespace's tombstone retention). See repair.Options.MaxRunAge.
	MaxRunAge time.Duration `yaml:"max_run_age"`
	// ProgressRegion is the region whose keyspace holds repair progress
	// and leases, for every daemon that repairs the keyspace whatever its
	// home (default: the lexicographically smallest region name, so that
	// daemons listing the same regions agree without saying so). Use
	// Config.ProgressRegion to read it.
	ProgressRegion string `yaml:"progress_region"`
	// Window, when set ("01:00-06:00", UTC; may wrap midnight), is when
	// runs may work: a run is paused outside it, and none starts.
	Window Window `yaml:"window"`
	// Retention is the tombstone retention the namespaces' tables record
	// (default 10 days, the tables' default): an interval that cannot
	// complete a cycle inside it is refused. Each run also reads the
	// tables' own and warns when they are shorter.
	Retention time.Duration `yaml:"retention"`
	// SegmentTimeout abandons a segment that makes no progress for this
	// long (default repair.DefaultSegmentTimeout, 5m).
	SegmentTimeout time.Duration `yaml:"segment_timeout"`
	// Conflicts configures the conflict log (docs/repair.md, "Conflicts"):
	// on unless disabled.
	Conflicts Conflicts `yaml:"conflicts"`
	// DebtInterval is how often the daemon drains the repair debt that
	// the stores whose home is this daemon's home region recorded
	// (docs/repair.md, "Repair debt"): the keys a region missed and no
	// hint brings. Default DefaultDebtInterval (2s); negative: never.
	DebtInterval time.Duration `yaml:"debt_interval"`
	// DisableFingerprints makes repair scan every segment's digests
	// instead of comparing its fingerprints first (docs/repair.md,
	// "Fingerprints"): for a table whose rows were written before the
	// fingerprint column and not rewritten since, or to compare the two.
	DisableFingerprints bool `yaml:"disable_fingerprints"`
	// Incremental, when set, is the time between two incremental runs of
	// a namespace (docs/repair.md, "Incremental runs"): runs that compare
	// only the rows whose versions are at or above the least published
	// convergence watermark, which vouches for the rest. They supplement
	// the full runs of Interval, which still find what no store wrote (a
	// lost disk) and bound resurrection. At least 10s; needs the
	// watermark worker (watermark.interval not negative) and
	// fingerprints. Default 0: none.
	Incremental time.Duration `yaml:"incremental"`
}

// MinIncremental is the shortest repair.incremental.
const MinIncremental = 10 * time.Second

// DefaultDebtInterval is the default repair.debt_interval.
const DefaultDebtInterval = 2 * time.Second

// Conflicts is the repair.conflicts section: repair.Options.Conflicts.
type Conflicts struct {
	// Disabled turns conflict detection off.
	Disabled bool `yaml:"disabled"`
	// Window is how far apart two writers' versions may be and conflict
	// (default 1m).
	Window time.Duration `yaml:"window"`
	// TTL is how long a record is kept (default 7 days).
	TTL time.Duration `yaml:"ttl"`
	// PerSecond and Burst bound the records a run writes (default 20/s,
	// bursts of 100).
	PerSecond float64 `yaml:"per_second"`
	Burst     int     `yaml:"burst"`
}

// Options returns the repair.ConflictConfig of the section.
func (c Conflicts) Options() repair.ConflictConfig {
	return repair.ConflictConfig{Disabled: c.Disabled, Window: c.Window, TTL: c.TTL, PerSecond: c.PerSecond, Burst: c.Burst}
}

// Namespace is one namespace repaired by `repaird serve`, with settings
// that override the repair section's. In YAML it is a name (`users`) or a
// mapping (`{name: orders, interval: 12h, window: "01:00-06:00"}`).
type Namespace struct {
	Name           string        `yaml:"name"`
	Interval       time.Duration `yaml:"interval"`
	Segments       int           `yaml:"segments"`
	RowsPerSegment int64         `yaml:"rows_per_segment"`
	RowsPerSecond  *float64      `yaml:"rows_per_second"`
	Intensity      float64       `yaml:"intensity"`
	Parallelism    int           `yaml:"parallelism"`
	Window         *Window       `yaml:"window"`
	Retention      time.Duration `yaml:"retention"`
	Incremental    time.Duration `yaml:"incremental"`
}

// namespaceFields are the keys a namespace mapping may hold.
var namespaceFields = map[string]bool{"name": true, "interval": true, "segments": true, "rows_per_segment": true,
	"rows_per_second": true, "intensity": true, "parallelism": true, "window": true, "retention": true, "incremental": true}

// UnmarshalYAML accepts a name or a mapping; an unknown key is an error
// naming it and its line.
func (n *Namespace) UnmarshalYAML(node *yaml.Node) error {
	if node.Kind == yaml.ScalarNode {
		*n = Namespace{Name: node.Value}
		return nil
	}
	if node.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: a namespace is a name or a mapping with a name", node.Line)
	}
	for i := 0; i+1 < len(node.Content); i += 2 {
		if k := node.Content[i]; !namespaceFields[k.Value] {
			return fmt.Errorf("line %d: unknown field %q in a namespace", k.Line, k.Value)
		}
	}
	type plain Namespace
	var p plain
	if err := node.Decode(&p); err != nil {
		return err
	}
	*n = Namespace(p)
	return nil
}

// Names returns the namespaces' names.
func (c *Config) Names() []string {
	names := []string{}
	for _, n := range c.Namespaces {
		names = append(names, n.Name)
	}
	return names
}

// Namespace returns the namespace called name.
func (c *Config) Namespace(name string) (Namespace, bool) {
	return byName(c.Namespaces, name, func(n Namespace) string { return n.Name })
}

// byName returns the item of items whose name is name.
func byName[T any](items []T, name string, nameOf func(T) string) (T, bool) {
	if i := slices.IndexFunc(items, func(it T) bool { return nameOf(it) == name }); i >= 0 {
		return items[i], true
	}
	var zero T
	return zero, false
}

// Schedule is a namespace's effective settings: its own where it sets
// them, the repair section's otherwise.
type Schedule struct {
	Interval       time.Duration
	Segments       int
	RowsPerSegment int64
	RowsPerSecond  float64
	Intensity      float64
	Parallelism    int
	Window         Window
	Retention      time.Duration
	// Incremental is the time between incremental runs; 0: none.
	Incremental time.Duration
}

// override sets *dst to v when v is set (positive).
func override[T int | int64 | float64 | time.Duration](dst *T, v T) {
	if v > 0 {
		*dst = v
	}
}

// Schedule returns the effective settings of namespace name (the repair
// section's for a namespace that is not listed).
func (c *Config) Schedule(name string) Schedule {
	r := c.Repair
	s := Schedule{Interval: r.Interval, Segments: r.Segments, RowsPerSegment: r.RowsPerSegment, RowsPerSecond: r.RowsPerSecond,
		Intensity: r.Intensity, Parallelism: r.Parallelism, Window: r.Window, Retention: r.Retention, Incremental: r.Incremental}
	n, _ := c.Namespace(name)
	override(&s.Interval, n.Interval)
	override(&s.Incremental, n.Incremental)
	if n.Segments > 0 {
		s.Segments, s.RowsPerSegment = n.Segments, 0
	}
	override(&s.RowsPerSegment, n.RowsPerSegment)
	override(&s.Intensity, n.Intensity)
	override(&s.Parallelism, n.Parallelism)
	override(&s.Retention, n.Retention)
	if n.RowsPerSecond != nil {
		s.RowsPerSecond = *n.RowsPerSecond
	}
	if n.Window != nil {
		s.Window = *n.Window
	}
	if s.Retention <= 0 {
		s.Retention = DefaultRetention
	}
	return s
}

// secretValue returns a secret given inline, in a file or in an
// environment variable (at most one is set; Validate checks), trimmed of
// surrounding white space; "" when none is set.
func secretValue(what, inline, file, env string) (string, error) {
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", invalid("%s: %v", what, err)
		}
		return strings.TrimSpace(string(b)), nil
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok || strings.TrimSpace(v) == "" {
			return "", invalid("%s: environment variable %s is not set", what, env)
		}
		return strings.TrimSpace(v), nil
	}
	return inline, nil
}

// oneOf reports whether at most one of the values is set.
func oneOf(values ...string) bool {
	n := 0
	for _, v := range values {
		if v != "" {
			n++
		}
	}
	return n <= 1
}

// Defaults used when a field is zero.
const (
	// DefaultInterval is repair.interval's default.
	DefaultInterval = 24 * time.Hour
	// DefaultListen is http.listen's default: this host only.
	DefaultListen = "127.0.0.1:9190"
	// DefaultTimeout is a region's timeout default (one request).
	DefaultTimeout = 10 * time.Second
	// DefaultGroup is hints.group's default.
	DefaultGroup = "tidemark-hints"
	// DefaultPrefix is hints.topic_prefix's default.
	DefaultPrefix = "tidemark.hints."
	// DefaultRetention is the tombstone retention hints are held to: the
	// tables' default, schema.DefaultRetention (10 days).
	DefaultRetention = schema.DefaultRetention
)

// Load reads, decodes, defaults and validates the file at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

var unknownField = regexp.MustCompile(`^line (\d+): field (\S+) not found in type config\.(\w+)$`)

var sectionOf = map[string]string{
	"Config": "at top level", "Region": "in a region", "TLS": "in tls", "Repair": "in repair",
	"Hints": "in hints", "HMACKey": "in an hmac key", "HTTP": "in http", "ServerTLS": "in http.tls", "SASL": "in hints.sasl", "Watermark": "in watermark",
	"plain": "in a namespace",
}

// Parse decodes YAML strictly, applies defaults and validates.
func Parse(data []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: the file is empty", ErrInvalid)
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			msgs := make([]string, len(te.Errors))
			for i, m := range te.Errors {
				if g := unknownField.FindStringSubmatch(m); g != nil {
					m = fmt.Sprintf("line %s: unknown field %q %s", g[1], g[2], sectionOf[g[3]])
				} else if strings.HasSuffix(m, "into time.Duration") {
					m += " (write durations like 90s, 5m or 24h; zero is 0s)"
				}
				msgs[i] = m
			}
			return nil, fmt.Errorf("%w: %s", ErrInvalid, strings.Join(msgs, "; "))
		}
		return nil, fmt.Errorf("%w: %s", ErrInvalid, strings.ReplaceAll(err.Error(), "\n", " "))
	}
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) applyDefaults() {
	if c.Repair.Interval == 0 {
		c.Repair.Interval = DefaultInterval
	}
	if c.Repair.Retention == 0 {
		c.Repair.Retention = DefaultRetention
	}
	c.Repair.ProgressRegion = c.ProgressRegion()
	if c.HTTP.Listen == "" {
		c.HTTP.Listen = DefaultListen
	}
	for i := range c.Regions {
		if c.Regions[i].Timeout == 0 {
			c.Regions[i].Timeout = DefaultTimeout
		}
	}
	if len(c.Hints.Brokers) > 0 {
		if c.Hints.Group == "" {
			c.Hints.Group = DefaultGroup
		}
		if c.Hints.TopicPrefix == "" {
			c.Hints.TopicPrefix = DefaultPrefix
		}
		if len(c.Hints.Regions) == 0 && c.Home != "" {
			c.Hints.Regions = []string{c.Home}
		}
		if c.Hints.Retention == 0 {
			c.Hints.Retention = DefaultRetention
		}
		if c.Hints.InstanceID == "" {
			c.Hints.InstanceID = c.Repair.Owner
		}
		if c.Hints.InstanceID == "" {
			c.Hints.InstanceID, _ = os.Hostname()
		}
	}
}

var (
	regionName  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	kafkaName   = regexp.MustCompile(`^[A-Za-z0-9._-]{1,200}$`)
	keyIDPatten = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// Validate checks the configuration; the error names the first problem
// found and says how to fix it.
func (c *Config) Validate() error {
	if err := schema.ValidateName("keyspace", c.Keyspace); err != nil {
		if c.Keyspace == "" {
			return invalid("keyspace is required")
		}
		return invalid("%v", err)
	}
	replayOnly := len(c.Namespaces) == 0
	switch {
	case len(c.Regions) == 0:
		return invalid("regions is empty: list this daemon's region (and, to repair, the others)")
	case !replayOnly && len(c.Regions) < 2:
		return invalid("repair needs at least 2 regions, the file lists %d: add the other regions under regions: (or list no namespaces for a replay-only daemon)", len(c.Regions))
	}
	names := map[string]bool{}
	for i, r := range c.Regions {
		if !regionName.MatchString(r.Name) {
			return invalid("regions[%d]: name %q must be letters, digits, '.', '_' or '-'", i, r.Name)
		}
		if names[r.Name] {
			return invalid("region %q is listed twice", r.Name)
		}
		names[r.Name] = true
		if len(r.ContactPoints) == 0 {
			return invalid("region %q: contact_points is empty", r.Name)
		}
		for _, cp := range r.ContactPoints {
			if strings.TrimSpace(cp) == "" || strings.ContainsAny(cp, " /") {
				return invalid("region %q: contact point %q is not a host or host:port", r.Name, cp)
			}
		}
		for from, to := range r.AddressMap {
			for _, a := range []string{from, to} {
				h, _, err := net.SplitHostPort(a)
				if err != nil || net.ParseIP(h) == nil {
					return invalid("region %q: address_map entry %q must be ip:port", r.Name, a)
				}
			}
		}
		if r.LocalDC == "" {
			return invalid("region %q: local_dc is required: the region's data center as Cassandra names it", r.Name)
		}
		if !oneOf(r.Password, r.PasswordFile, r.PasswordEnv) {
			return invalid("region %q: set at most one of password, password_file and password_env", r.Name)
		}
		if (r.Password != "" || r.PasswordFile != "" || r.PasswordEnv != "") && r.Username == "" {
			return invalid("region %q: password without username", r.Name)
		}
		if r.ConnectTimeout < 0 || r.Timeout < 0 {
			return invalid("region %q: timeouts must not be negative", r.Name)
		}
		if r.TLS != nil {
			if (r.TLS.CertFile == "") != (r.TLS.KeyFile == "") {
				return invalid("region %q: tls needs both cert_file and key_file, or neither", r.Name)
			}
		}
	}
	if c.Home == "" {
		return invalid("home is required: name this daemon's region")
	}
	if !names[c.Home] {
		return invalid("home %q is not one of the regions", c.Home)
	}
	if p := c.Repair.ProgressRegion; p != "" && !names[p] {
		return invalid("repair.progress_region %q is not one of the regions", p)
	}
	seen := map[string]bool{}
	for _, ns := range c.Namespaces {
		if err := schema.ValidateName("namespace", ns.Name); err != nil {
			return invalid("%v", err)
		}
		if seen[ns.Name] {
			return invalid("namespace %q is listed twice", ns.Name)
		}
		seen[ns.Name] = true
		if err := ns.validate(); err != nil {
			return err
		}
	}
	r := c.Repair
	switch {
	case r.Segments < 0 || r.Segments > repair.MaxSegments:
		return invalid("repair.segments must be between 1 and %d", repair.MaxSegments)
	case r.RowsPerSegment < 0:
		return invalid("repair.rows_per_segment must not be negative")
	case r.RowsPerSecond < 0:
		return invalid("repair.rows_per_second must not be negative (0 means unlimited)")
	case r.Intensity < 0 || r.Intensity > 1:
		return invalid("repair.intensity must be in (0, 1] (got %v)", r.Intensity)
	case r.Parallelism < 0 || r.Concurrency < 0 || r.PageSize < 0 || r.MaxAttempts < 0:
		return invalid("repair.parallelism, concurrency, page_size and max_attempts must not be negative")
	case r.LeaseTTL < 0 || (r.LeaseTTL > 0 && r.LeaseTTL < 3*time.Second):
		return invalid("repair.lease_ttl must be at least 3s")
	case r.Interval < time.Minute:
		return invalid("repair.interval must be at least 1m (got %v)", r.Interval)
	case r.MaxRunAge < 0 || (r.MaxRunAge > 0 && r.MaxRunAge < time.Minute):
		return invalid("repair.max_run_age must be at least 1m, or 0 for half the tombstone retention (got %v)", r.MaxRunAge)
	case r.Retention < 0:
		return invalid("repair.retention must not be negative")
	case r.SegmentTimeout < 0 || (r.SegmentTimeout > 0 && r.SegmentTimeout < time.Second):
		return invalid("repair.segment_timeout must be at least 1s (got %v)", r.SegmentTimeout)
	case r.DebtInterval > 0 && r.DebtInterval < 100*time.Millisecond:
		return invalid("repair.debt_interval must be at least 100ms, or negative to never drain repair debt (got %v)", r.DebtInterval)
	case r.Incremental < 0 || (r.Incremental > 0 && r.Incremental < MinIncremental):
		return invalid("repair.incremental must be at least %v, or 0 for no incremental runs (got %v)", MinIncremental, r.Incremental)
	}
	if bad := r.Conflicts.Options().WithDefaults().Validate(); len(bad) > 0 {
		return invalid("repair.conflicts: %s", strings.Join(bad, "; "))
	}
	for _, ns := range c.Namespaces {
		s := c.Schedule(ns.Name)
		if err := CycleFits(s.Interval, s.Retention); err != nil {
			return invalid("namespace %q: %v", ns.Name, err)
		}
		if s.Incremental == 0 {
			continue
		}
		// The cutoff of an incremental run is the published watermark.
		switch {
		case c.Watermark.Every() <= 0:
			return invalid("namespace %q: incremental runs need the convergence watermark, which watermark.interval turns off", ns.Name)
		case r.DisableFingerprints:
			return invalid("namespace %q: incremental runs compare fingerprints, which repair.disable_fingerprints turns off", ns.Name)
		}
	}
	if err := c.Watermark.validate(); err != nil {
		return err
	}
	if err := c.Hints.validate(); err != nil {
		return err
	}
	replayed := map[string]bool{}
	for _, r := range c.Hints.Regions {
		if _, ok := c.Region(r); !ok {
			return invalid("hints.regions: %q is not a configured region", r)
		}
		if replayed[r] {
			return invalid("hints.regions: %q is listed twice", r)
		}
		replayed[r] = true
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
		return invalid("http.listen %q must be host:port", c.HTTP.Listen)
	}
	if c.HTTP.TokenFile != "" && c.HTTP.TokenEnv != "" {
		return invalid("http: set at most one of token_file and token_env")
	}
	if t := c.HTTP.TLS; t != nil && (t.CertFile == "" || t.KeyFile == "") {
		return invalid("http.tls needs cert_file and key_file")
	}
	// A daemon that only drains repair debt says so with an explicit
	// repair.debt_interval.
	drainOnly := len(c.Regions) >= 2 && c.Repair.DebtInterval > 0
	if replayOnly && len(c.Hints.Brokers) == 0 && !drainOnly {
		more := ""
		if len(c.Regions) < 2 {
			more = fmt.Sprintf(" (repair needs at least 2 regions, the file lists %d)", len(c.Regions))
		}
		return invalid("nothing to do: list the namespaces to repair under namespaces:%s, configure hints: for a replay-only daemon, or set repair.debt_interval for a daemon that only drains repair debt", more)
	}
	return nil
}

func (n Namespace) validate() error {
	switch {
	case n.Interval != 0 && n.Interval < time.Minute:
		return invalid("namespace %q: interval must be at least 1m (got %v)", n.Name, n.Interval)
	case n.Incremental < 0 || (n.Incremental > 0 && n.Incremental < MinIncremental):
		return invalid("namespace %q: incremental must be at least %v (got %v)", n.Name, MinIncremental, n.Incremental)
	case n.Segments < 0 || n.Segments > repair.MaxSegments:
		return invalid("namespace %q: segments must be between 1 and %d", n.Name, repair.MaxSegments)
	case n.RowsPerSegment < 0 || n.Parallelism < 0 || n.Retention < 0:
		return invalid("namespace %q: rows_per_segment, parallelism and retention must not be negative", n.Name)
	case n.RowsPerSecond != nil && *n.RowsPerSecond < 0:
		return invalid("namespace %q: rows_per_second must not be negative (0 means unlimited)", n.Name)
	case n.Intensity < 0 || n.Intensity > 1:
		return invalid("namespace %q: intensity must be in (0, 1] (got %v)", n.Name, n.Intensity)
	}
	return nil
}

// CycleFits refuses an interval that cannot complete a repair cycle
// inside the tombstone retention: a run must start after a delete and
// finish before its marker expires, and with runs interval apart the
// worst case is interval plus a run's duration.
func CycleFits(interval, retention time.Duration) error {
	if retention > 0 && interval >= retention {
		return fmt.Errorf("interval %v cannot complete a repair cycle inside the tombstone retention %v: a delete made just after a run starts reaches every region only by the next run, after its deletion marker expired, so deleted rows may resurrect; set the interval to at most %v (half the retention leaves room for failed runs)",
			interval, retention, retention/2)
	}
	return nil
}

// ProgressRegion returns the region whose keyspace holds repair progress:
// repair.progress_region, or when it is not set the lexicographically
// smallest region name ("" without regions). Every daemon that repairs the
// keyspace must use the same one (daemon.ProgressLocator checks it).
func (c *Config) ProgressRegion() string {
	if c.Repair.ProgressRegion != "" {
		return c.Repair.ProgressRegion
	}
	smallest := ""
	for i, r := range c.Regions {
		if i == 0 || r.Name < smallest {
			smallest = r.Name
		}
	}
	return smallest
}

// Region returns the region called name.
func (c *Config) Region(name string) (Region, bool) {
	return byName(c.Regions, name, func(r Region) string { return r.Name })
}

// Cluster returns the cluster.Region to connect with, loading TLS files.
func (r Region) Cluster() (cluster.Region, error) {
	password, err := secretValue(fmt.Sprintf("region %q: password", r.Name), r.Password, r.PasswordFile, r.PasswordEnv)
	if err != nil {
		return cluster.Region{}, err
	}
	cr := cluster.Region{
		Name: r.Name, ContactPoints: r.ContactPoints, LocalDC: r.LocalDC,
		Username: r.Username, Password: password, AddressMap: r.AddressMap,
		ConnectTimeout: r.ConnectTimeout, Timeout: r.Timeout,
	}
	if r.TLS != nil {
		tc, err := r.TLS.config()
		if err != nil {
			return cluster.Region{}, invalid("region %q: tls: %v", r.Name, err)
		}
		cr.TLS = tc
	}
	return cr, nil
}

func (t *TLS) config() (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // opt-in
	if t.CAFile != "" {
		pool, err := CertPool(t.CAFile)
		if err != nil {
			return nil, err
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, err
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// CertPool reads the PEM certificates of a CA file.
func CertPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}

// CheckFiles loads every file and environment variable the
// configuration names (TLS files, password, secret and token files and
// variables), so that `repaird validate` finds a missing one before the
// daemon needs it.
func (c *Config) CheckFiles() error {
	for _, r := range c.Regions {
		if _, err := r.Cluster(); err != nil {
			return err
		}
	}
	if _, err := c.Hints.Secrets(); err != nil {
		return err
	}
	if _, err := c.Hints.KafkaTLS(); err != nil {
		return err
	}
	if _, err := c.Hints.KafkaSASL(); err != nil {
		return err
	}
	if _, err := c.HTTP.Token(); err != nil {
		return err
	}
	_, err := c.HTTP.ServerTLSConfig()
	return err
}

// RetentionWarning returns a warning when interval is not comfortably
// shorter than the tombstone retention (less than two runs per retention
// period), or "" when it is, or when the retention is unknown (0).
func RetentionWarning(interval, retention time.Duration) string {
	if retention <= 0 || 2*interval <= retention {
		return ""
	}
	return fmt.Sprintf("repair interval %v is not comfortably shorter than the tombstone retention %v: a full repair must finish within the retention or deleted rows may resurrect; set repair.interval to at most %v",
		interval, retention, retention/2)
}
