package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/syncbuf"
)

// testdata/timeout.json is the `go test -json -timeout 3s` output of a
// package with a passing test, a failing test and two parallel tests that
// outlive the timeout (one sleeping, one blocked in helperBlocks).
func TestTimeoutReportNamesTheHungTestsAndTheirGoroutines(t *testing.T) {
	f, err := os.Open("testdata/timeout.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	s := newSummary("x", "tohang", &out)
	s.verbose = true
	s.read(f)
	dump := t.TempDir() + "/dump.txt"
	code := s.report(false, dump)
	got := out.String()
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	for _, want := range []string{
		"x: still running when tohang ended: [TestA TestB]",
		"x: packages FAILED: [tohang]",
		"x: FAILED: [TestD]",
		"x: 1 passed, 1 failed, 0 skipped",
		"tohang.helperBlocks",
		"--- TestD failed or never ended; its last lines:",
		"--- TestB failed or never ended; its last lines:",
		"hello b",
		"d broke",
		"(2 goroutines shown, 2 without tohang frames left out)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	// The dump is not printed live: only the filtered goroutines appear.
	if strings.Contains(got, "goroutine 1 [chan receive]") {
		t.Errorf("a goroutine without module frames was printed:\n%s", got)
	}
	whole, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(whole), "goroutine 1 [chan receive]") {
		t.Errorf("the dump file lacks the whole dump:\n%s", whole)
	}
	// The summary is the last line.
	lines := strings.Split(strings.TrimSpace(got), "\n")
	if last := lines[len(lines)-1]; last != "x: 1 passed, 1 failed, 0 skipped" {
		t.Errorf("last line %q", last)
	}
}

func TestSkipsFailOnlyWithFailOnSkip(t *testing.T) {
	in := `{"Action":"run","Package":"p","Test":"TestS"}
{"Action":"skip","Package":"p","Test":"TestS"}
{"Action":"run","Package":"p","Test":"TestP"}
{"Action":"pass","Package":"p","Test":"TestP"}
{"Action":"pass","Package":"p"}
`
	for _, failOnSkip := range []bool{false, true} {
		var out bytes.Buffer
		s := newSummary("x", "m", &out)
		s.read(strings.NewReader(in))
		code := s.report(failOnSkip, "")
		want := 0
		if failOnSkip {
			want = 1
		}
		if code != want {
			t.Errorf("failOnSkip=%v: exit %d, want %d\n%s", failOnSkip, code, want, out.String())
		}
		if !strings.Contains(out.String(), "x: 1 passed, 0 failed, 1 skipped") {
			t.Errorf("counts missing:\n%s", out.String())
		}
	}
}

func TestNoTestsIsAFailure(t *testing.T) {
	var out bytes.Buffer
	s := newSummary("x", "m", &out)
	s.read(strings.NewReader("ok  \tsomething\n"))
	if code := s.report(false, ""); code != 1 || !strings.Contains(out.String(), "no test ran") {
		t.Errorf("exit %d, output:\n%s", code, out.String())
	}
}

func TestWatchNamesALongTestWhileItRuns(t *testing.T) {
	var out syncbuf.Buffer
	s := newSummary("x", "m", &out)
	s.handle(event{Action: "run", Package: "p", Test: "TestLong"})
	s.handle(event{Action: "run", Package: "p", Test: "TestPaused"})
	s.handle(event{Action: "pause", Package: "p", Test: "TestPaused"})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { s.watch(50*time.Millisecond, stop); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "TestLong still running after") {
		if time.Now().After(deadline) {
			t.Fatalf("no slow-test line after 5s:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.handle(event{Action: "pass", Package: "p", Test: "TestLong"})
	close(stop)
	<-done
	if strings.Contains(out.String(), "TestPaused") {
		t.Errorf("a paused test was timed:\n%s", out.String())
	}
}

func TestQuietModePrintsOnlyFailedAndSkippedTests(t *testing.T) {
	in := `{"Action":"run","Package":"p","Test":"TestOK"}
{"Action":"output","Package":"p","Test":"TestOK","Output":"ok chatter\n"}
{"Action":"pass","Package":"p","Test":"TestOK"}
{"Action":"run","Package":"p","Test":"TestBad"}
{"Action":"output","Package":"p","Test":"TestBad","Output":"bad detail\n"}
{"Action":"fail","Package":"p","Test":"TestBad"}
{"Action":"run","Package":"p","Test":"TestSkip"}
{"Action":"output","Package":"p","Test":"TestSkip","Output":"skip reason\n"}
{"Action":"skip","Package":"p","Test":"TestSkip"}
{"Action":"output","Package":"p","Output":"FAIL\tp\t0.1s\n"}
{"Action":"fail","Package":"p"}
`
	for _, verbose := range []bool{false, true} {
		var out bytes.Buffer
		s := newSummary("x", "m", &out)
		s.verbose = verbose
		s.read(strings.NewReader(in))
		s.report(false, "")
		got := out.String()
		for _, want := range []string{"bad detail", "skip reason", "FAIL\tp", "x: 1 passed, 1 failed, 1 skipped"} {
			if !strings.Contains(got, want) {
				t.Errorf("verbose=%v: output lacks %q:\n%s", verbose, want, got)
			}
		}
		if strings.Contains(got, "ok chatter") != verbose {
			t.Errorf("verbose=%v: a passing test's output printed=%v:\n%s", verbose, !verbose, got)
		}
	}
}

func TestSIGQUITDumpIsSummarized(t *testing.T) {
	in := `{"Action":"run","Package":"p","Test":"TestHang"}
{"Action":"output","Package":"p","Test":"TestHang","Output":"working\n"}
{"Action":"output","Package":"p","Test":"TestHang","Output":"SIGQUIT: quit\n"}
{"Action":"output","Package":"p","Test":"TestHang","Output":"PC=0x1 m=0 sigcode=0\n"}
{"Action":"output","Package":"p","Test":"TestHang","Output":"\n"}
{"Action":"output","Package":"p","Test":"TestHang","Output":"goroutine 7 [select]:\n"}
{"Action":"output","Package":"p","Test":"TestHang","Output":"m/fault.(*Proxy).Heal(...)\n"}
{"Action":"output","Package":"p","Test":"TestHang","Output":"\n"}
{"Action":"output","Package":"p","Test":"TestHang","Output":"goroutine 8 [IO wait]:\n"}
{"Action":"output","Package":"p","Test":"TestHang","Output":"internal/poll.runtime_pollWait(...)\n"}
{"Action":"output","Package":"p","Output":"FAIL\tp\t9.9s\n"}
{"Action":"fail","Package":"p"}
`
	var out bytes.Buffer
	s := newSummary("x", "m", &out)
	s.read(strings.NewReader(in))
	s.report(false, "")
	got := out.String()
	for _, want := range []string{"SIGQUIT: quit", "m/fault.(*Proxy).Heal", "still running when p ended: [TestHang]", "working", "(1 goroutines shown, 1 without m frames left out)"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "runtime_pollWait") {
		t.Errorf("a goroutine without module frames was printed:\n%s", got)
	}
}
