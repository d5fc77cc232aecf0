package integration

// The examples of docs/operations.md ("CLI for a running daemon": the
// repaird and curl lines) run, in order, against a running daemon on the
// real environment, and each succeeds.

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/cmd/repaird/daemon"
)

var consoleBlockRE = regexp.MustCompile("(?s)```console\n(.*?)```")

// docExamples returns the example command lines of docs/operations.md.
func docExamples(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, m := range consoleBlockRE.FindAllStringSubmatch(string(b), -1) {
		for _, l := range strings.Split(m[1], "\n") {
			if cmd, ok := strings.CutPrefix(strings.TrimSpace(l), "$ "); ok {
				lines = append(lines, cmd)
			}
		}
	}
	return lines
}

// shellFields splits a command line into words, honouring '…' and "…".
func shellFields(s string) []string {
	var out []string
	var cur strings.Builder
	quote, inWord := rune(0), false
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

// curl performs a documented curl line (-s, -X, -H, -d and the URL).
func curl(t *testing.T, args []string) (int, string) {
	t.Helper()
	method, body, url := http.MethodGet, "", ""
	var headers [][2]string
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "-s":
		case "-X":
			i++
			method = args[i]
		case "-H":
			i++
			k, v, _ := strings.Cut(args[i], ": ")
			headers = append(headers, [2]string{k, v})
		case "-d":
			i++
			body = args[i]
			if method == http.MethodGet {
				method = http.MethodPost
			}
		default:
			url = args[i]
		}
	}
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		req.Header.Set(h[0], h[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

func TestOperationsExamplesRun(t *testing.T) {
	t.Parallel()
	start := time.Now()
	examples := docExamples(t)
	if len(examples) < 10 {
		t.Fatalf("found %d example lines in docs/operations.md", len(examples))
	}
	f := newRepairFixture(t, "a", "b")
	onlyInA(t, f, "d", 4000, time.Now().UnixMicro())
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(controlToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cd := startControlDaemon(t, f, tokenFile, "  segments: 16\n  rows_per_second: 100\n  interval: 1h\n")
	eventually(t, 60*time.Second, "the scheduled run works", func() error {
		var v daemon.RunView
		if code := cd.api(t, "GET", "/v1/namespaces/"+repairNS+"/runs/current", "", "", &v); code != 200 || v.State != "running" {
			return fmt.Errorf("%d %+v", code, v)
		}
		return nil
	})
	vars := strings.NewReplacer("$REPAIRD", cd.url, "$TOKEN_FILE", tokenFile, "$TOKEN", controlToken, "$NS", repairNS)
	// A partial run must end before the next starts (one at a time).
	noPartial := func() error {
		var runs daemon.RunsResponse
		cd.api(t, "GET", "/v1/namespaces/"+repairNS+"/runs?limit=0", "", "", &runs)
		for _, r := range runs.Runs {
			if r.Kind == "partial" {
				return fmt.Errorf("partial run %s is %s", r.RunID, r.State)
			}
		}
		return nil
	}
	for _, line := range examples {
		args := shellFields(vars.Replace(line))
		if args[0] == "repaird" && len(args) > 1 && args[1] == "start" || args[0] == "curl" && strings.HasSuffix(args[len(args)-1], "/runs") {
			eventually(t, 120*time.Second, "the partial run ends", noPartial)
		}
		switch args[0] {
		case "repaird":
			code, out, errs := runCLI(args[1:]...)
			if code != 0 {
				t.Fatalf("%s: exit %d\n%s%s", line, code, out, errs)
			}
			t.Logf("$ %s\n%s", line, out)
		case "curl":
			code, body := curl(t, args[1:])
			if code/100 != 2 {
				t.Fatalf("%s: %d %s", line, code, body)
			}
			t.Logf("$ %s -> %d", line, code)
		default:
			t.Fatalf("unknown example command %q", line)
		}
	}
	t.Logf("%d examples ran in %v", len(examples), time.Since(start).Round(time.Second))
}
