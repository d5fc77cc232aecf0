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
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
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
	// Namespaces are repaired by `repaird serve`.
	Namespaces []string `yaml:"namespaces"`
	// Regions are the regions to repair (at least two).
	Regions []Region `yaml:"regions"`
	// Repair tunes repair.
	Repair Repair `yaml:"repair"`
	// Hints configures the hint replayer (parsed and validated here).
	Hints Hints `yaml:"hints"`
	// HTTP configures the daemon's HTTP endpoints.
	HTTP HTTP `yaml:"http"`
}

// Region is one region's Cassandra cluster.
type Region struct {
	Name          string            `yaml:"name"`
	ContactPoints []string          `yaml:"contact_points"`
	LocalDC       string            `yaml:"local_dc"`
	Username      string            `yaml:"username"`
	Password      string            `yaml:"password"`
	TLS           *TLS              `yaml:"tls"`
	AddressMap    map[string]string `yaml:"address_map"`
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
}

// Hints configures the hint replayer.
type Hints struct {
	Brokers     []string `yaml:"brokers"`
	TopicPrefix string   `yaml:"topic_prefix"`
	// Group names the Kafka consumer groups: the replayer of region R uses
	// the group "<group>-<R>" (GroupFor), one group per region as the hints
	// library does, so that a replayer restarting in one region does not
	// rebalance the others. Default "tidemark-hints" (so
	// "tidemark-hints-us-east"). Daemons replaying the same region share its
	// group and divide its topic's partitions.
	Group       string    `yaml:"group"`
	HMACKeys    []HMACKey `yaml:"hmac_keys"`
	RequireHMAC bool      `yaml:"require_hmac"`
	// Regions lists the regions whose hint topics this daemon replays
	// (default: the home region only — run one repaird next to each region).
	Regions []string `yaml:"regions"`
	// Retention is the tombstone retention: hints older than it are
	// dead-lettered, never applied (default 10 days, as the tables').
	Retention time.Duration `yaml:"retention"`
	// MaxHintsPerSecond and MaxBytesPerSecond throttle replay per region
	// (0 = unlimited).
	MaxHintsPerSecond float64 `yaml:"max_hints_per_second"`
	MaxBytesPerSecond int     `yaml:"max_bytes_per_second"`
}

// GroupFor returns the Kafka consumer group of region's replayer:
// "<group>-<region>".
func (h *Hints) GroupFor(region string) string { return h.Group + "-" + region }

// HMACKey is one key hints may be authenticated with. Exactly one of Secret
// (base64) and SecretFile (a file holding the base64 secret) is set.
//
// The first key signs (for producers reading this file) and is always
// accepted; the others are previous keys, accepted until AcceptUntil (zero:
// for as long as they are listed), so keys rotate without a gap.
type HMACKey struct {
	ID          string    `yaml:"id"`
	Secret      string    `yaml:"secret"`
	SecretFile  string    `yaml:"secret_file"`
	AcceptUntil time.Time `yaml:"accept_until"`
}

// HTTP configures the daemon's endpoints (/healthz, /readyz, /metrics,
// /status).
type HTTP struct {
	// Listen is the host:port to listen on (default ":9190").
	Listen string `yaml:"listen"`
}

// Defaults used when a field is zero.
const (
	// DefaultInterval is repair.interval's default.
	DefaultInterval = 24 * time.Hour
	// DefaultListen is http.listen's default.
	DefaultListen = ":9190"
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
	"Hints": "in hints", "HMACKey": "in an hmac key", "HTTP": "in http",
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
					m += " (write durations like 90s, 5m or 24h)"
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
	if len(c.Regions) < 2 {
		return invalid("repair needs at least 2 regions, the file lists %d: add the other regions under regions:", len(c.Regions))
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
		if r.Password != "" && r.Username == "" {
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
		if err := schema.ValidateName("namespace", ns); err != nil {
			return invalid("%v", err)
		}
		if seen[ns] {
			return invalid("namespace %q is listed twice", ns)
		}
		seen[ns] = true
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
	}
	if err := c.Hints.validate(); err != nil {
		return err
	}
	for _, r := range c.Hints.Regions {
		if _, ok := c.Region(r); !ok {
			return invalid("hints.regions: %q is not a configured region", r)
		}
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
		return invalid("http.listen %q must be host:port", c.HTTP.Listen)
	}
	return nil
}

func (h *Hints) validate() error {
	if len(h.Brokers) == 0 {
		if h.TopicPrefix != "" || h.Group != "" || len(h.HMACKeys) > 0 || h.RequireHMAC || len(h.Regions) > 0 {
			return invalid("hints: brokers is required when the hints section is used")
		}
		return nil
	}
	for _, b := range h.Brokers {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			return invalid("hints: broker %q must be host:port", b)
		}
	}
	if !kafkaName.MatchString(h.TopicPrefix) {
		return invalid("hints: topic_prefix %q may only hold letters, digits, '.', '_' and '-'", h.TopicPrefix)
	}
	if !kafkaName.MatchString(h.Group) {
		return invalid("hints: group %q may only hold letters, digits, '.', '_' and '-'", h.Group)
	}
	ids := map[string]bool{}
	for i, k := range h.HMACKeys {
		if !keyIDPatten.MatchString(k.ID) {
			return invalid("hints.hmac_keys[%d]: id %q must be 1-64 letters, digits, '.', '_' or '-'", i, k.ID)
		}
		if ids[k.ID] {
			return invalid("hints.hmac_keys: id %q is listed twice", k.ID)
		}
		ids[k.ID] = true
		if (k.Secret == "") == (k.SecretFile == "") {
			return invalid("hints.hmac_keys[%q]: set exactly one of secret and secret_file", k.ID)
		}
		if k.Secret != "" {
			if _, err := decodeSecret(k.Secret); err != nil {
				return invalid("hints.hmac_keys[%q]: %v", k.ID, err)
			}
		}
	}
	if h.Retention < 0 || h.MaxHintsPerSecond < 0 || h.MaxBytesPerSecond < 0 {
		return invalid("hints: retention, max_hints_per_second and max_bytes_per_second must not be negative")
	}
	if h.RequireHMAC && len(h.HMACKeys) == 0 {
		return invalid("hints.require_hmac is set but no hmac_keys are configured")
	}
	return nil
}

// MinSecretBytes is the shortest HMAC secret accepted.
const MinSecretBytes = 16

func decodeSecret(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, errors.New("secret must be base64")
	}
	if len(b) < MinSecretBytes {
		return nil, fmt.Errorf("secret must be at least %d bytes (got %d)", MinSecretBytes, len(b))
	}
	return b, nil
}

// Secrets reads and decodes every HMAC key (secret_file contents included),
// by key ID.
func (h *Hints) Secrets() (map[string][]byte, error) {
	out := make(map[string][]byte, len(h.HMACKeys))
	for _, k := range h.HMACKeys {
		s := k.Secret
		if k.SecretFile != "" {
			b, err := os.ReadFile(k.SecretFile)
			if err != nil {
				return nil, invalid("hints.hmac_keys[%q]: %v", k.ID, err)
			}
			s = string(b)
		}
		b, err := decodeSecret(s)
		if err != nil {
			return nil, invalid("hints.hmac_keys[%q]: %v", k.ID, err)
		}
		out[k.ID] = b
	}
	return out, nil
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
	for _, r := range c.Regions {
		if r.Name == name {
			return r, true
		}
	}
	return Region{}, false
}

// Cluster returns the cluster.Region to connect with, loading TLS files.
func (r Region) Cluster() (cluster.Region, error) {
	cr := cluster.Region{
		Name: r.Name, ContactPoints: r.ContactPoints, LocalDC: r.LocalDC,
		Username: r.Username, Password: r.Password, AddressMap: r.AddressMap,
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
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", t.CAFile)
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

// CheckFiles loads every file the configuration names (TLS files, HMAC
// secret files), so that `repaird validate` finds a missing file before the
// daemon needs it.
func (c *Config) CheckFiles() error {
	for _, r := range c.Regions {
		if _, err := r.Cluster(); err != nil {
			return err
		}
	}
	_, err := c.Hints.Secrets()
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
