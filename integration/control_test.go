package integration

// repaird's control plane end to end, on the real environment: two
// daemons (configured with the same owner) share a run; pause sent to
// either holds every segment of both (no row written while paused) and
// resume finishes it; a refused request (no or wrong token) changes
// nothing; abort releases the leases and abandons the run; a token-range
// run repairs only that range; the CLI's client commands talk to them.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/cmd/repaird/daemon"
)

const controlToken = "integration-control-token-0123456789"

// controlDaemon is one in-process `repaird serve` with the control API.
type controlDaemon struct {
	*servedDaemon
	d   *daemon.Daemon
	url string
}

// startControlDaemon runs a daemon over the fixture's regions with the
// given repair settings and a bearer token in a file; it is stopped when
// the test ends.
func startControlDaemon(t *testing.T, f *repairFixture, tokenFile, repairYAML string) *controlDaemon {
	t.Helper()
	sd := serveDaemon(t, fmt.Sprintf("home: a\nkeyspace: %s\nnamespaces: [%s]\n%srepair:\n%shttp:\n  listen: 127.0.0.1:0\n  token_file: %s\n",
		f.ks, repairNS, regionsYAML(t, f.regions...), repairYAML, tokenFile))
	cd := &controlDaemon{servedDaemon: sd, d: sd.Daemon}
	eventually(t, 10*time.Second, "the daemon listens", func() error {
		if sd.Addr() == "" {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	cd.url = "http://" + sd.Addr()
	return cd
}

// api sends a request to the daemon and decodes its JSON answer.
func (cd *controlDaemon) api(t *testing.T, method, path, token string, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, cd.url+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %d: %v", method, path, resp.StatusCode, err)
		}
	}
	return resp.StatusCode
}

// rowsWritten adds up tidemark_repair_rows_written_total over daemons.
func rowsWritten(t *testing.T, ds ...*controlDaemon) float64 {
	t.Helper()
	sum := 0.0
	for _, cd := range ds {
		mfs, err := cd.d.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "tidemark_repair_rows_written_total" {
				for _, m := range mf.GetMetric() {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// repaird runs a client subcommand of the CLI in-process.
func repaird(args ...string) (int, string, string) { return runCLI(args...) }

// onlyInA loads n rows into region a only, keys prefixed so.
func onlyInA(t *testing.T, f *repairFixture, prefix string, n int, ts int64) {
	t.Helper()
	rows := make([]repairRow, n)
	for i := range rows {
		rows[i] = repairRow{pk: fmt.Appendf(nil, "%s%06d", prefix, i), ck: []byte("c"), value: value(i, 1, 64), ts: ts}
	}
	f.load(t, "a", rows)
}

func TestRepairdControlPlane(t *testing.T) {
	t.Parallel()
	start := time.Now()
	f := newRepairFixture(t, "a", "b", "c")
	ts := time.Now().UnixMicro()
	onlyInA(t, f, "p", 6000, ts)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(controlToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Throttled so that the run lasts long enough to be steered; the same
	// owner in both configs, made unique per process by the daemons.
	settings := "  segments: 16\n  rows_per_second: 600\n  interval: 1h\n  owner: twin\n"
	d1 := startControlDaemon(t, f, tokenFile, settings)
	d2 := startControlDaemon(t, f, tokenFile, settings)
	if d1.d.Owner() == d2.d.Owner() || !strings.HasPrefix(d1.d.Owner(), "twin/") {
		t.Fatalf("owners %q and %q: want two distinct owners made from %q", d1.d.Owner(), d2.d.Owner(), "twin")
	}

	var cur daemon.RunView
	eventually(t, 60*time.Second, "both daemons work on one run", func() error {
		var v1, v2 daemon.RunView
		d1.api(t, "GET", "/v1/namespaces/"+repairNS+"/runs/current", "", "", &v1)
		d2.api(t, "GET", "/v1/namespaces/"+repairNS+"/runs/current", "", "", &v2)
		if !v1.Here || !v2.Here || v1.RunID == "" || v1.RunID != v2.RunID || v1.SegmentsDone < 1 {
			return fmt.Errorf("d1 %+v, d2 %+v", v1, v2)
		}
		cur = v1
		return nil
	})

	// A refused pause changes nothing: no directive, the run goes on.
	var apiErr daemon.APIError
	before := rowsWritten(t, d1, d2)
	if code := d1.api(t, "POST", "/v1/namespaces/"+repairNS+"/runs/current/pause", "wrong-token-wrong-token", "", &apiErr); code != 401 || apiErr.Error == "" {
		t.Fatalf("pause with a wrong token = %d %+v, want 401 with a JSON error", code, apiErr)
	}
	if code := d1.api(t, "POST", "/v1/namespaces/"+repairNS+"/runs/current/pause", "", "", &apiErr); code != 401 {
		t.Fatalf("pause without a token = %d, want 401", code)
	}
	var state string
	err := f.sessions["a"].Query(fmt.Sprintf(`SELECT state FROM %s.tidemark_repair_control WHERE namespace = ? AND run_id = ?`, f.ks), repairNS, cur.RunID).Scan(&state)
	if err != gocql.ErrNotFound {
		t.Fatalf("a refused pause recorded a directive: state %q, %v", state, err)
	}
	eventually(t, 20*time.Second, "the run goes on after the refused pauses", func() error {
		if got := rowsWritten(t, d1, d2); got <= before {
			return fmt.Errorf("rows written %v", got)
		}
		return nil
	})

	// Pause through d2 (the CLI): both daemons hold, nothing is written.
	code, out, errs := repaird("pause", "--addr", d2.url, "--token-file", tokenFile, "--namespace", repairNS)
	if code != 0 || !strings.Contains(out, "paused") {
		t.Fatalf("repaird pause: exit %d\n%s\n%s", code, out, errs)
	}
	eventually(t, 10*time.Second, "d1 holds too", func() error {
		var v daemon.RunView
		d1.api(t, "GET", "/v1/namespaces/"+repairNS+"/runs/current", "", "", &v)
		if v.State != "paused" || !v.Here {
			return fmt.Errorf("d1 sees %q", v.State)
		}
		return nil
	})
	held := rowsWritten(t, d1, d2)
	time.Sleep(3 * time.Second)
	if got := rowsWritten(t, d1, d2); got != held {
		t.Fatalf("%v rows written while the run was paused", got-held)
	}
	code, out, _ = repaird("runs", "--addr", d1.url, "--namespace", repairNS)
	if code != 0 || !strings.Contains(out, cur.RunID) || !strings.Contains(out, "paused (operator)") {
		t.Errorf("repaird runs while paused: exit %d\n%s", code, out)
	}
	t.Logf("repaird runs while paused:\n%s", out)

	// Resume through d1: the run finishes, every region identical.
	code, out, errs = repaird("resume", "--addr", d1.url, "--token-file", tokenFile, "--namespace", repairNS, "-o", "json")
	var resumed daemon.RunView
	if code != 0 || json.Unmarshal([]byte(out), &resumed) != nil || resumed.State != "running" {
		t.Fatalf("repaird resume -o json: exit %d\n%s\n%s", code, out, errs)
	}
	eventually(t, 120*time.Second, "the run finishes", func() error {
		var runs daemon.RunsResponse
		d1.api(t, "GET", "/v1/namespaces/"+repairNS+"/runs", "", "", &runs)
		for _, r := range runs.Runs {
			if r.RunID == cur.RunID && r.State == "finished" {
				return nil
			}
		}
		return fmt.Errorf("runs %+v", runs.Runs)
	})
	f.assertIdentical(t)
	t.Logf("pause/resume across two daemons: %v", time.Since(start).Round(time.Second))

	// Abort: the leases are released and the run abandoned.
	onlyInA(t, f, "q", 4000, ts)
	code, out, errs = repaird("start", "--addr", d1.url, "--token-file", tokenFile, "--namespace", repairNS, "-o", "json")
	var started daemon.RunView
	if code != 0 || json.Unmarshal([]byte(out), &started) != nil || started.RunID == "" || started.Kind != "full" {
		t.Fatalf("repaird start: exit %d\n%s\n%s", code, out, errs)
	}
	eventually(t, 30*time.Second, "the new run works", func() error {
		var v daemon.RunView
		d1.api(t, "GET", "/v1/namespaces/"+repairNS+"/runs/current", "", "", &v)
		if v.RunID != started.RunID || v.State != "running" || v.SegmentsDone < 1 {
			return fmt.Errorf("%+v", v)
		}
		return nil
	})
	code, out, errs = repaird("abort", "--addr", d2.url, "--token-file", tokenFile, "--namespace", repairNS, "--run", started.RunID)
	if code != 0 || !strings.Contains(out, "aborted") {
		t.Fatalf("repaird abort: exit %d\n%s\n%s", code, out, errs)
	}
	eventually(t, 20*time.Second, "the aborted run's leases are released", func() error {
		var n int
		if err := f.sessions["a"].Query(fmt.Sprintf(`SELECT COUNT(*) FROM %s.tidemark_repair_leases WHERE namespace = ? AND run_id = ? ALLOW FILTERING`, f.ks),
			repairNS, started.RunID).Scan(&n); err != nil {
			return err
		}
		if n != 0 {
			return fmt.Errorf("%d leases left", n)
		}
		return nil
	})
	var curID string
	if err := f.sessions["a"].Query(fmt.Sprintf(`SELECT run_id FROM %s.tidemark_repair_current WHERE namespace = ?`, f.ks), repairNS).Scan(&curID); err != gocql.ErrNotFound {
		t.Fatalf("the aborted run is still current: %q %v", curID, err)
	}

	// A token-range run repairs only that range (and is not a full
	// repair).
	const lo, hi = int64(0), int64(1) << 62
	code, out, errs = repaird("start", "--addr", d1.url, "--token-file", tokenFile, "--namespace", repairNS, "--token-range", fmt.Sprintf("%d:%d", lo, hi), "-o", "json")
	var partial daemon.RunView
	if code != 0 || json.Unmarshal([]byte(out), &partial) != nil || partial.Kind != "partial" || partial.Scope != fmt.Sprintf("range (%d, %d]", lo, hi) {
		t.Fatalf("repaird start --token-range: exit %d\n%s\n%s", code, out, errs)
	}
	eventually(t, 120*time.Second, "the partial run finishes", func() error {
		var runs daemon.RunsResponse
		d1.api(t, "GET", "/v1/namespaces/"+repairNS+"/runs?limit=5", "", "", &runs)
		for _, r := range runs.Runs {
			if r.RunID == partial.RunID && r.State == "finished" {
				return nil
			}
		}
		return fmt.Errorf("partial run not finished")
	})
	inRange := func(name string, inside bool) int {
		cond := "token(pk) > ? AND token(pk) <= ?"
		args := []any{lo, hi}
		n := 0
		if inside {
			if err := f.sessions[name].Query(fmt.Sprintf(`SELECT COUNT(*) FROM %s.%s WHERE %s`, f.ks, repairNS, cond), args...).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		var total int
		if err := f.sessions[name].Query(fmt.Sprintf(`SELECT COUNT(*) FROM %s.%s`, f.ks, repairNS)).Scan(&total); err != nil {
			t.Fatal(err)
		}
		if err := f.sessions[name].Query(fmt.Sprintf(`SELECT COUNT(*) FROM %s.%s WHERE %s`, f.ks, repairNS, cond), args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return total - n
	}
	if a, b, c := inRange("a", true), inRange("b", true), inRange("c", true); a != b || a != c || a == 0 {
		t.Errorf("inside the range: a %d, b %d, c %d rows; want the same", a, b, c)
	}
	if a, b := inRange("a", false), inRange("b", false); a <= b {
		t.Errorf("outside the range: a %d, b %d rows; the aborted run's rows outside the range should still be missing in b", a, b)
	}

	// The other client commands.
	code, out, _ = repaird("status", "--addr", d2.url)
	if code != 0 || !strings.Contains(out, "NAMESPACE") || !strings.Contains(out, repairNS) || !strings.Contains(out, "true") {
		t.Errorf("repaird status: exit %d\n%s", code, out)
	}
	t.Logf("repaird status:\n%s", out)
	code, out, _ = repaird("hints", "--addr", d2.url)
	if code != 0 || !strings.Contains(out, "REGION") {
		t.Errorf("repaird hints: exit %d\n%s", code, out)
	}
	code, _, errs = repaird("pause", "--addr", d1.url, "--namespace", repairNS)
	if code != 1 || !strings.Contains(errs, "401 Unauthorized") {
		t.Errorf("repaird pause without a token: exit %d %s", code, errs)
	}
	t.Logf("control plane test: %v", time.Since(start).Round(time.Second))
}
