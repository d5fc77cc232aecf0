// Command testsummary reads `go test -json` on stdin, prints the tests'
// output as go test would, and ends with one line per run:
//
//	integration: 42 passed, 0 failed, 0 skipped
//
// It exits non-zero when a test failed, when no test ran, or, with
// -fail-on-skip, when a test was skipped (CI must not pass on skipped
// integration tests).
//
// By default only what matters is printed: package results, server and
// harness messages, and the whole output of each test that fails or skips
// (as it ends); -v prints every test's output as it comes.
//
// A CI log is often read from its end, so the end says what went wrong: the
// failed tests with the last lines they printed, the tests still running when
// a package died (a -timeout panic names them), and, from a panic's
// goroutine dump, only the goroutines that run this module's code (the whole
// dump goes to the -dump file). While the run goes on, a test that runs
// longer than -slow is named as it happens, so a hang is visible before the
// timeout ends it.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

type event struct {
	Time    time.Time
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

// tailLines is how many of a failed test's last output lines the final
// report repeats.
const tailLines = 40

// keepLines bounds the output kept per running test (quiet mode prints it
// when the test fails or skips).
const keepLines = 400

func main() {
	label := flag.String("label", "tests", "name printed before the counts")
	failOnSkip := flag.Bool("fail-on-skip", false, "exit 1 if any test was skipped")
	slow := flag.Duration("slow", 5*time.Minute, "name a test that has run this long (0: never)")
	module := flag.String("module", "github.com/tidemark/tidemark", "goroutines with frames of this module are kept from a panic's dump")
	dump := flag.String("dump", "", "write a panic's whole goroutine dump to this file")
	verbose := flag.Bool("v", false, "print every test's output as it comes, not only failed and skipped tests'")
	flag.Parse()

	s := newSummary(*label, *module, os.Stdout)
	s.verbose = *verbose
	stop := make(chan struct{})
	var wg sync.WaitGroup
	if *slow > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.watch(*slow, stop)
		}()
	}
	s.read(os.Stdin)
	close(stop)
	wg.Wait()
	os.Exit(s.report(*failOnSkip, *dump))
}

type testKey struct{ pkg, test string }

type summary struct {
	label, module string
	out           io.Writer
	verbose       bool

	mu      sync.Mutex
	running map[testKey]time.Time // test → when it started (wall clock)
	warned  map[testKey]int       // how many -slow periods were reported

	passed, failed, skipped int
	failedNames             []string
	skippedNames            []string
	pkgFailed               []string
	tails                   map[testKey][]string // last output lines of each test
	failedTails             map[testKey][]string
	// panicked holds, per package, the output after a "panic:" line; it is
	// not printed live (a goroutine dump is thousands of lines).
	panicked map[string][]string
	// lostTests are the tests still running when their package ended.
	lostTests map[string][]string
}

func newSummary(label, module string, out io.Writer) *summary {
	return &summary{
		label: label, module: module, out: out,
		running:     map[testKey]time.Time{},
		warned:      map[testKey]int{},
		tails:       map[testKey][]string{},
		failedTails: map[testKey][]string{},
		panicked:    map[string][]string{},
		lostTests:   map[string][]string{},
	}
}

func (s *summary) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			// Build errors and other non-JSON lines pass through.
			s.printf("%s\n", line)
			continue
		}
		s.handle(e)
	}
}

func (s *summary) printf(format string, a ...any) {
	fmt.Fprintf(s.out, format, a...)
}

func (s *summary) handle(e event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := testKey{e.Package, e.Test}
	switch e.Action {
	case "run", "cont":
		// A parallel test's clock starts when it continues, not while it
		// waits paused for the sequential tests.
		if e.Test != "" {
			s.running[k] = time.Now()
			delete(s.warned, k)
		}
	case "pause":
		if e.Test != "" {
			s.running[k] = time.Time{} // paused: not timed
		}
	case "output":
		// A panic's output is attributed to whichever test ran last; it
		// belongs to the package.
		if buf, ok := s.panicked[e.Package]; ok {
			s.panicked[e.Package] = append(buf, e.Output)
			return
		}
		if isCrash(e.Output) {
			s.panicked[e.Package] = []string{e.Output}
			s.printf("%s", e.Output)
			s.printf("(testsummary: the rest of this panic is summarized at the end)\n")
			return
		}
		if e.Test != "" {
			t := append(s.tails[k], e.Output)
			if len(t) > keepLines {
				t = append(t[:0], t[len(t)-keepLines:]...)
			}
			s.tails[k] = t
			if !s.verbose {
				return
			}
		}
		s.printf("%s", e.Output)
	case "pass":
		if e.Test != "" {
			s.passed++
			s.done(k)
		}
	case "fail":
		if e.Test != "" {
			s.failed++
			s.failedNames = append(s.failedNames, e.Test)
			t := s.tails[k]
			if !s.verbose {
				s.printf("%s", strings.Join(t, ""))
			}
			if len(t) > tailLines {
				t = t[len(t)-tailLines:]
			}
			s.failedTails[k] = t
			s.done(k)
		} else if e.Package != "" {
			// A package failed as a whole: a build error, a panic in
			// TestMain, a timeout. Its tests still running never end.
			s.pkgFailed = append(s.pkgFailed, e.Package)
			s.endPackage(e.Package)
		}
	case "skip":
		if e.Test != "" {
			s.skipped++
			s.skippedNames = append(s.skippedNames, e.Test)
			if !s.verbose {
				s.printf("%s", strings.Join(s.tails[k], ""))
			}
			s.done(k)
		} else {
			s.endPackage(e.Package)
		}
	}
	if e.Test == "" && e.Action == "pass" {
		s.endPackage(e.Package)
	}
}

func (s *summary) done(k testKey) {
	delete(s.running, k)
	delete(s.warned, k)
	delete(s.tails, k)
}

func (s *summary) endPackage(pkg string) {
	for k := range s.running {
		if k.pkg == pkg {
			s.lostTests[pkg] = append(s.lostTests[pkg], k.test)
			// A test that never ended is a failure whose output matters.
			t := s.tails[k]
			if len(t) > tailLines {
				t = t[len(t)-tailLines:]
			}
			s.failedTails[k] = t
			s.done(k)
		}
	}
}

// isCrash reports whether a line starts a Go crash report: a panic (a
// -timeout panic among them), a fatal runtime error, or a SIGQUIT dump.
func isCrash(line string) bool {
	for _, p := range []string{"panic: ", "fatal error: ", "SIGQUIT: quit", "SIGABRT: abort"} {
		if strings.HasPrefix(line, p) {
			return true
		}
	}
	return false
}

// watch names, every period, the tests that have run longer than it.
func (s *summary) watch(period time.Duration, stop <-chan struct{}) {
	tick := time.NewTicker(period / 10)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			s.mu.Lock()
			for k, started := range s.running {
				if started.IsZero() {
					continue
				}
				n := int(now.Sub(started) / period)
				if n > s.warned[k] {
					s.warned[k] = n
					s.printf("testsummary: %s still running after %s\n", k.test, now.Sub(started).Round(time.Second))
				}
			}
			s.mu.Unlock()
		}
	}
}

// report prints the end of the log and returns the exit code.
func (s *summary) report(failOnSkip bool, dumpPath string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	pkgs := make([]string, 0, len(s.panicked))
	for p := range s.panicked {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	for _, p := range pkgs {
		lines := s.panicked[p]
		if dumpPath != "" {
			if err := os.WriteFile(dumpPath, []byte(strings.Join(lines, "")), 0o644); err != nil {
				s.printf("%s: cannot write the dump: %v\n", s.label, err)
			} else {
				s.printf("%s: the whole goroutine dump of %s is in %s\n", s.label, p, dumpPath)
			}
		}
		s.printf("\n%s: %s panicked; its own goroutines:\n%s", s.label, p, filterDump(lines, s.module))
	}
	keys := make([]testKey, 0, len(s.failedTails))
	for k := range s.failedTails {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].test < keys[j].test })
	for _, k := range keys {
		s.printf("\n%s: --- %s failed or never ended; its last lines:\n%s", s.label, k.test, strings.Join(s.failedTails[k], ""))
	}
	sort.Strings(s.failedNames)
	sort.Strings(s.skippedNames)
	if len(s.failedNames) > 0 {
		s.printf("%s: FAILED: %v\n", s.label, s.failedNames)
	}
	if len(s.skippedNames) > 0 {
		s.printf("%s: SKIPPED: %v\n", s.label, s.skippedNames)
	}
	for _, p := range sortedKeys(s.lostTests) {
		t := s.lostTests[p]
		sort.Strings(t)
		s.printf("%s: still running when %s ended: %v\n", s.label, p, t)
	}
	if len(s.pkgFailed) > 0 {
		s.printf("%s: packages FAILED: %v\n", s.label, s.pkgFailed)
	}
	s.printf("%s: %d passed, %d failed, %d skipped\n", s.label, s.passed, s.failed, s.skipped)
	switch {
	case s.failed > 0 || len(s.pkgFailed) > 0:
		return 1
	case s.passed == 0:
		s.printf("%s: no test ran\n", s.label)
		return 1
	case failOnSkip && s.skipped > 0:
		s.printf("%s: skipped tests are not passing tests (-fail-on-skip)\n", s.label)
		return 1
	}
	return 0
}

func sortedKeys(m map[string][]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// filterDump keeps a panic's header (up to the first goroutine) and the
// goroutines whose stacks contain a frame of module.
func filterDump(lines []string, module string) string {
	text := strings.Join(lines, "")
	blocks := strings.Split(text, "\n\n")
	var b strings.Builder
	kept, dropped := 0, 0
	for i, blk := range blocks {
		if i == 0 || !strings.HasPrefix(blk, "goroutine ") {
			b.WriteString(blk)
			b.WriteString("\n\n")
			continue
		}
		if strings.Contains(blk, module+"/") || strings.Contains(blk, module+".") {
			b.WriteString(blk)
			b.WriteString("\n\n")
			kept++
		} else {
			dropped++
		}
	}
	fmt.Fprintf(&b, "(%d goroutines shown, %d without %s frames left out)\n", kept, dropped, module)
	return b.String()
}
