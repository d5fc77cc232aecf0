package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/cmd/repaird/daemon"
	"github.com/tidemark/tidemark/hints"
	"github.com/tidemark/tidemark/hints/record"
	"github.com/tidemark/tidemark/store"
	"github.com/tidemark/tidemark/store/driver"
)

// registered is one metric as its collector describes it.
type registered struct {
	name   string
	labels []string // const and variable, sorted
	help   string
}

var descRE = regexp.MustCompile(`^Desc\{fqName: "([^"]+)", help: "((?:[^"\\]|\\.)*)",(?: unit: "[^"]*",)? constLabels: \{([^}]*)\}, variableLabels: \{([^}]*)\}\}$`)

// describe lists what collectors describe, by name.
func describe(t *testing.T, cs ...prometheus.Collector) map[string]registered {
	t.Helper()
	ch := make(chan *prometheus.Desc, 1024)
	go func() {
		for _, c := range cs {
			c.Describe(ch)
		}
		close(ch)
	}()
	out := map[string]registered{}
	for d := range ch {
		m := descRE.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read %s", d)
		}
		var labels []string
		for _, l := range strings.Split(m[3], ",") {
			if k, _, ok := strings.Cut(l, "="); ok {
				labels = append(labels, strings.TrimSpace(k))
			}
		}
		for _, l := range strings.Split(m[4], ",") {
			if l = strings.TrimSpace(l); l != "" {
				labels = append(labels, l)
			}
		}
		sort.Strings(labels)
		out[m[1]] = registered{name: m[1], labels: labels, help: m[2]}
	}
	return out
}

// everyCollector builds the collectors of every Tidemark package: a store
// over memory regions, a hint producer and replayer (no Kafka contacted),
// and a daemon (its repair and own metrics).
func everyCollector(t *testing.T) []prometheus.Collector {
	t.Helper()
	p, err := hints.NewProducer(hints.ProducerConfig{Brokers: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	st, err := store.Open(context.Background(), store.Config{
		Regions: []store.RegionConfig{{Name: "us", ContactPoints: []string{"memory"}}, {Name: "eu", ContactPoints: []string{"memory"}}},
		Home:    "us", Keyspace: "app", HintSink: p, // a heartbeat sink: the watermark's metrics too
		NewExecutor: driver.MemoryFactory(map[string]*driver.MemoryRegion{"us": driver.NewMemoryRegion(), "eu": driver.NewMemoryRegion()}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	r, err := hints.NewReplayer(hints.ReplayerConfig{Brokers: []string{"127.0.0.1:1"}, Region: "eu",
		Applier: hints.ApplierFunc(func(context.Context, record.Hint) error { return nil })})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	cfgPath := writeConfig(t, twoRegions)
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(cfg, daemon.Options{Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return []prometheus.Collector{st.Metrics(), p, r, d.Registry()}
}

// docRow is one row of the metric table in docs/operations.md.
type docRow struct {
	name   string
	labels []string
	values string
}

var metricRowRE = regexp.MustCompile("^\\| `(tidemark_[a-z_]+)` \\|([^|]*)\\|([^|]*)\\|")

func documentedMetrics(t *testing.T) []docRow {
	t.Helper()
	b, err := os.ReadFile("../../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows []docRow
	for _, line := range strings.Split(string(b), "\n") {
		m := metricRowRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var labels []string
		for _, l := range strings.Split(m[2], ",") {
			if l = strings.TrimSpace(l); l != "" {
				labels = append(labels, l)
			}
		}
		sort.Strings(labels)
		rows = append(rows, docRow{name: m[1], labels: labels, values: strings.TrimSpace(m[3])})
	}
	if len(rows) < 20 {
		t.Fatalf("found only %d rows in the metric table of docs/operations.md", len(rows))
	}
	return rows
}

// labelValues returns the values the series of name carry for label.
func labelValues(t *testing.T, cs []prometheus.Collector, name, label string) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label {
					out[l.GetValue()] = true
				}
			}
		}
	}
	return out
}

// The metric table of docs/operations.md names every registered metric
// with its labels and values, and nothing else.
func TestDocsMetricTableMatchesTheCollectors(t *testing.T) {
	cs := everyCollector(t)
	got := describe(t, cs...)
	seen := map[string]bool{}
	for _, row := range documentedMetrics(t) {
		seen[row.name] = true
		reg, ok := got[row.name]
		if !ok {
			t.Errorf("docs/operations.md documents %s, which no collector registers", row.name)
			continue
		}
		if strings.Join(reg.labels, ",") != strings.Join(row.labels, ",") {
			t.Errorf("%s: documented labels {%s}, registered {%s}", row.name, strings.Join(row.labels, ","), strings.Join(reg.labels, ","))
		}
		switch label, values, enum := strings.Cut(row.values, ": "); {
		case row.values == "":
		case enum && slices.Contains(reg.labels, label):
			// A label's values: each must be named by the collector's help
			// or carried by a series it exports.
			present := labelValues(t, cs, row.name, label)
			for _, v := range strings.Split(values, ", ") {
				if !present[v] && !strings.Contains(reg.help, v) {
					t.Errorf("%s: documented %s value %q is neither exported nor named in the help %q", row.name, label, v, reg.help)
				}
			}
		default:
			// A gauge's encoding: the help must say the same.
			if !strings.Contains(reg.help, row.values) {
				t.Errorf("%s: documented values %q, the collector says %q", row.name, row.values, reg.help)
			}
		}
	}
	for name := range got {
		if strings.HasPrefix(name, "tidemark_") && !seen[name] {
			t.Errorf("%s is registered but not in the metric table of docs/operations.md", name)
		}
	}
}

// selfSigned returns a PEM certificate (usable as a CA too) and its key.
func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "docs"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

var (
	yamlBlockRE = regexp.MustCompile("(?s)```yaml\n(.*?)```")
	fileRefRE   = regexp.MustCompile(`\b(\w+)_file: ([^\s,}]+)`)
	envRefRE    = regexp.MustCompile(`\b(\w+)_env: ([A-Za-z_][A-Za-z0-9_]*)`)
)

// Every YAML block in docs/ and the README that is a repaird
// configuration (it sets keyspace:) passes `repaird validate`, with the
// files and variables it names made up: certificates, keys, secrets,
// passwords and tokens.
func TestDocsConfigsValidate(t *testing.T) {
	files, _ := filepath.Glob("../../../docs/*.md")
	files = append(files, "../../../README.md")
	cert, key := selfSigned(t)
	contents := map[string][]byte{
		"ca": cert, "cert": cert, "key": key,
		"secret":   []byte(base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123")) + "\n"),
		"password": []byte("cassandra-password\n"),
		"token":    []byte("docs-token-0123456789abcdef\n"),
	}
	checked := 0
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range yamlBlockRE.FindAllStringSubmatch(string(b), -1) {
			block := m[1]
			if !regexp.MustCompile(`(?m)^keyspace:`).MatchString(block) {
				continue
			}
			checked++
			name := fmt.Sprintf("%s block %d", filepath.Base(file), i+1)
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				block = fileRefRE.ReplaceAllStringFunc(block, func(ref string) string {
					g := fileRefRE.FindStringSubmatch(ref)
					c, ok := contents[g[1]]
					if !ok {
						t.Fatalf("%s: no content for %s_file", name, g[1])
					}
					p := filepath.Join(dir, strings.NewReplacer("/", "_", "\"", "").Replace(g[2]))
					if err := os.WriteFile(p, c, 0o600); err != nil {
						t.Fatal(err)
					}
					return g[1] + "_file: " + p
				})
				for _, g := range envRefRE.FindAllStringSubmatch(block, -1) {
					c, ok := contents[g[1]]
					if !ok {
						t.Fatalf("%s: no content for %s_env", name, g[1])
					}
					t.Setenv(g[2], strings.TrimSpace(string(c)))
				}
				code, out, errs := run(t, "validate", "--config", writeConfig(t, block))
				if code != ExitOK || !strings.Contains(out, ": ok (") {
					t.Errorf("repaird validate of %s: exit %d\n%s%s\n---\n%s", name, code, out, errs, block)
				}
			})
		}
	}
	if checked < 2 {
		t.Fatalf("found %d configuration blocks in the docs, want at least 2", checked)
	}
}
