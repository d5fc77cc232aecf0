package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/internal/cluster"
	"github.com/tidemark/tidemark/repair"
)

const twoRegions = `
home: a
keyspace: ks
namespaces: [users]
regions:
  - {name: a, contact_points: ["127.0.0.1:1"], local_dc: a}
  - {name: b, contact_points: ["127.0.0.2:1"], local_dc: b}
http: {listen: "127.0.0.1:0"}
`

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "repaird.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func refuse(_ context.Context, r cluster.Region, _ string) (*gocql.Session, error) {
	if r.Name == "b" {
		return nil, errors.New("gocql: unable to create session: unable to discover protocol version: dial tcp 127.0.0.2:1: connect: connection refused\nmore detail")
	}
	return nil, errors.New("should not be reached in this test")
}

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Execute(context.Background(), args, Env{Stdout: &out, Stderr: &errb, Connect: refuse, ConnectTimeout: 2 * time.Second})
	return code, out.String(), errb.String()
}

func TestCommandErrors(t *testing.T) {
	good := writeConfig(t, twoRegions)
	one := writeConfig(t, "home: a\nkeyspace: ks\nregions:\n  - {name: a, contact_points: [h], local_dc: a}\n")
	unknown := writeConfig(t, twoRegions+"repair:\n  segmnts: 3\n")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no config", []string{"repair", "--namespace", "users"}, ExitUsage, "--config is required"},
		{"no namespace", []string{"repair", "--config", good}, ExitUsage, "--namespace is required"},
		{"bad namespace", []string{"repair", "--config", good, "--namespace", "Users!"}, ExitUsage, `namespace "Users!" must match`},
		{"bad segments", []string{"repair", "--config", good, "--namespace", "users", "--segments", "0"}, ExitUsage, "--segments must be between 1"},
		{"segments not a number", []string{"repair", "--config", good, "--namespace", "users", "--segments", "x"}, ExitUsage, "invalid argument"},
		{"unknown flag", []string{"repair", "--config", good, "--namespace", "users", "--dryrun"}, ExitUsage, "unknown flag: --dryrun"},
		{"extra args", []string{"validate", "--config", good, "extra"}, ExitUsage, "takes no arguments"},
		{"unknown command", []string{"repiar"}, ExitUsage, "unknown command"},
		{"missing file", []string{"validate", "--config", "/nonexistent/x.yaml"}, ExitError, "no such file"},
		{"one region", []string{"repair", "--config", one, "--namespace", "users"}, ExitError, "repair needs at least 2 regions, the file lists 1"},
		{"unknown field", []string{"validate", "--config", unknown}, ExitError, `unknown field "segmnts" in repair`},
		{"region unreachable", []string{"repair", "--config", good, "--namespace", "users"}, ExitError, `region unreachable: region "b" (contact points 127.0.0.2:1)`},
		{"serve with one region", []string{"serve", "--config", one}, ExitError, "at least 2 regions"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := run(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tc.code, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q does not contain %q", stderr, tc.want)
			}
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if last := lines[len(lines)-1]; !strings.HasPrefix(last, "repaird: error: ") {
				t.Errorf("last line %q is not the one-line error", last)
			}
			if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic") {
				t.Errorf("stack trace in output: %q", stderr)
			}
		})
	}
}

func TestValidateOK(t *testing.T) {
	code, out, stderr := run(t, "validate", "--config", writeConfig(t, twoRegions))
	if code != ExitOK || !strings.Contains(out, ": ok (2 regions, home a, repair progress in a, keyspace ks, 1 namespaces, interval 24h0m0s; hints: not configured)") {
		t.Fatalf("validate: code %d out %q err %q", code, out, stderr)
	}
}

func TestHelpListsSubcommands(t *testing.T) {
	code, out, _ := run(t, "--help")
	for _, s := range []string{"repair", "serve", "validate"} {
		if code != ExitOK || !strings.Contains(out, s) {
			t.Errorf("help (code %d) lacks %q: %s", code, s, out)
		}
	}
}

func TestSummary(t *testing.T) {
	rep := &repair.Report{Namespace: "users", RunID: "r1", DryRun: true, Segments: 4, SegmentsDone: 4, Complete: true,
		RowsScanned: 100, RowsDiffering: 3, Duration: 1500 * time.Millisecond,
		Regions: []repair.RegionStats{{Region: "a", RowsScanned: 100, BytesRead: 6400}, {Region: "b", RowsScanned: 98, RowsDiffering: 3, BytesRead: 6272}},
		Pairs:   []repair.PairStat{{A: "a", B: "b", Rows: 3}},
		Samples: []string{"pk=01 ck=02 token=5: a=ts=1 digest=..; b=absent"}}
	var b bytes.Buffer
	WriteSummary(&b, rep)
	s := b.String()
	for _, want := range []string{`dry run (nothing written) of namespace "users": complete, run r1, segments 4/4 done`,
		"rows scanned", "6272", "a <> b: 3", "sample differing rows:", "rows: 100 scanned, 3 differing, 0 written"} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "backfilled") {
		t.Errorf("a run that backfilled nothing says it did:\n%s", s)
	}
	rep.FingerprintsBackfilled = 1980
	b.Reset()
	WriteSummary(&b, rep)
	if !strings.Contains(b.String(), "fingerprints backfilled: 1980 rows") {
		t.Errorf("summary lacks the backfill:\n%s", b.String())
	}
}

func TestOneLine(t *testing.T) {
	err := errors.Join(errors.New("a\n  b"), errors.New("c"))
	if got := OneLine(err); got != "a; b; c" {
		t.Errorf("OneLine = %q", got)
	}
}

func TestValidateShowsOneHintGroupPerRegion(t *testing.T) {
	cfg := twoRegions + "hints:\n  brokers: [\"127.0.0.1:9092\"]\n  group: g\n  regions: [a, b]\n"
	code, out, stderr := run(t, "validate", "--config", writeConfig(t, cfg))
	if code != ExitOK || !strings.Contains(out, `replaying a: group "g-a", b: group "g-b"`) {
		t.Fatalf("validate: code %d out %q err %q", code, out, stderr)
	}
}

func TestVersionAndLogFlags(t *testing.T) {
	code, out, _ := run(t, "--version")
	if code != ExitOK || !strings.HasPrefix(out, "repaird ") {
		t.Fatalf("--version: exit %d %q", code, out)
	}
	var errb bytes.Buffer
	code = Execute(context.Background(), []string{"--log-format", "xml", "validate", "--config", "x"}, Env{Stderr: &errb})
	if code != ExitUsage || !strings.Contains(errb.String(), "--log-format") {
		t.Errorf("--log-format xml: exit %d %q", code, errb.String())
	}
	code = Execute(context.Background(), []string{"--log-level", "loud", "validate", "--config", "x"}, Env{Stderr: &errb})
	if code != ExitUsage {
		t.Errorf("--log-level loud: exit %d", code)
	}
	var logs bytes.Buffer
	l, err := newLogger(&logs, "debug", "json")
	if err != nil {
		t.Fatal(err)
	}
	l.Debug("hello")
	if !strings.HasPrefix(logs.String(), `{"time":`) {
		t.Errorf("json log %q", logs.String())
	}
}

// With http.tls the daemon serves HTTPS only, and the client commands
// reach it with --config (https, the token) and --ca-file.
func TestServeTLSAndClientOverHTTPS(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t)
	certFile, keyFile, tokenFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem"), filepath.Join(dir, "token")
	for p, b := range map[string][]byte{certFile: cert, keyFile: key, tokenFile: []byte("tls-test-token-0123456789")} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := writeConfig(t, strings.Replace(twoRegions, `http: {listen: "127.0.0.1:0"}`,
		fmt.Sprintf("http: {listen: %q, token_file: %s, tls: {cert_file: %s, key_file: %s}}", addr, tokenFile, certFile, keyFile), 1))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- Execute(ctx, []string{"serve", "--config", cfg}, Env{Connect: refuse, Logger: slog.New(slog.DiscardHandler)})
	}()
	defer func() {
		cancel()
		if code := <-done; code != ExitOK {
			t.Errorf("serve exited %d", code)
		}
	}()
	var code int
	var out, errs string
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, out, errs = run(t, "status", "--config", cfg, "--ca-file", certFile)
		if code == ExitOK || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code != ExitOK || !strings.Contains(out, "control API enabled") {
		t.Fatalf("status over https: exit %d\n%s\n%s", code, out, errs)
	}
	if code, _, errs := run(t, "status", "--addr", "http://"+addr); code != ExitError {
		t.Errorf("plain http to a TLS listener: exit %d %s", code, errs)
	}
	if code, _, errs := run(t, "status", "--addr", "https://"+addr); code != ExitError || !strings.Contains(errs, "certificate") {
		t.Errorf("https without the CA: exit %d %s", code, errs)
	}
	// The token from the config is sent: the pause fails for want of the
	// progress region (unreachable here), not for want of a token.
	if code, _, errs := run(t, "pause", "--config", cfg, "--ca-file", certFile, "--namespace", "users"); code != ExitError || !strings.Contains(errs, "503 Service Unavailable") {
		t.Errorf("pause over https: exit %d %s", code, errs)
	}
}
