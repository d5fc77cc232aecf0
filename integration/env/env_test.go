package env

// Tests of the environment's own logic and of its failures on a broken
// machine. They need java and mvn on PATH, but no running environment.

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestInitialTokensAreBalancedAndInRange(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5} {
		var prev *big.Int
		for i := 0; i < n; i++ {
			tok, ok := new(big.Int).SetString(initialToken(i, n), 10)
			if !ok {
				t.Fatalf("token %q is not a number", initialToken(i, n))
			}
			if tok.Cmp(big.NewInt(math.MinInt64)) < 0 || tok.Cmp(big.NewInt(math.MaxInt64)) > 0 {
				t.Fatalf("n=%d i=%d: token %s outside the Murmur3 range", n, i, tok)
			}
			if prev != nil && tok.Cmp(prev) <= 0 {
				t.Fatalf("n=%d: tokens not increasing at %d", n, i)
			}
			prev = tok
		}
	}
	if got := initialToken(0, 3); got != "-9223372036854775808" {
		t.Errorf("first token %s, want -2^63", got)
	}
}

func TestNodeAddresses(t *testing.T) {
	cases := map[[2]int]string{{0, 0}: "127.0.0.11", {1, 0}: "127.0.0.21", {3, 2}: "127.0.0.43", {8, 0}: "127.0.0.91"}
	for in, want := range cases {
		if got := nodeAddress(in[0], in[1]); got != want {
			t.Errorf("nodeAddress%v = %s, want %s", in, got, want)
		}
	}
}

func TestJavaMajor(t *testing.T) {
	cases := map[string]int{
		`openjdk version "17.0.15" 2025-04-15`: 17,
		`java version "1.8.0_412"`:             8,
		`openjdk version "21" 2023-09-19`:      21,
		`garbage`:                              0,
	}
	for in, want := range cases {
		if got := javaMajor(in); got != want {
			t.Errorf("javaMajor(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestValidateSpecs(t *testing.T) {
	bad := [][]RegionSpec{nil, {{"a", 1}, {"a", 1}}, {{"", 1}}, {{"a/b", 1}}, {{"a", 0}}, {{"a", 10}}}
	for _, specs := range bad {
		if err := validateSpecs(specs); err == nil {
			t.Errorf("validateSpecs(%v) accepted", specs)
		}
	}
	if err := validateSpecs([]RegionSpec{{"a", 1}, {"q", 3}}); err != nil {
		t.Error(err)
	}
}

// withPath runs f with PATH holding only the named tools (symlinked).
func withPath(t *testing.T, tools ...string) {
	t.Helper()
	dir := t.TempDir()
	for _, tool := range tools {
		p, err := exec.LookPath(tool)
		if err != nil {
			skipOrFail(t, "%s not installed on this machine", tool)
		}
		if err := os.Symlink(p, filepath.Join(dir, tool)); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir)
	t.Setenv("JAVA_HOME", "")
}

func TestMissingJavaIsOneClearError(t *testing.T) {
	withPath(t, "mvn")
	err := CheckTools(context.Background())
	if !errors.Is(err, ErrMissingTool) || !strings.Contains(err.Error(), "java not found") || !strings.Contains(err.Error(), "JDK 17") {
		t.Fatalf("got %v", err)
	}
}

func TestMissingMavenIsOneClearError(t *testing.T) {
	withPath(t, "java")
	err := CheckTools(context.Background())
	if !errors.Is(err, ErrMissingTool) || !strings.Contains(err.Error(), "mvn not found") {
		t.Fatalf("got %v", err)
	}
}

func TestWrongJavaVersionIsOneClearError(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "bin", "java")
	if err := os.MkdirAll(filepath.Dir(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\necho 'openjdk version \"24.0.1\" 2025-04-15' >&2\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JAVA_HOME", dir)
	err := CheckTools(context.Background())
	if !errors.Is(err, ErrMissingTool) || !strings.Contains(err.Error(), "Java 24") {
		t.Fatalf("got %v", err)
	}
}

func TestUnreachableMavenCentralIsOneClearError(t *testing.T) {
	if _, err := exec.LookPath("mvn"); err != nil {
		skipOrFail(t, "mvn not installed")
	}
	dir := t.TempDir()
	settings := filepath.Join(dir, "settings.xml")
	// An empty local repository and a mirror nobody listens on: what a
	// machine without access to Maven Central sees.
	xml := `<settings><localRepository>` + filepath.Join(dir, "m2") + `</localRepository>
<mirrors><mirror><id>nowhere</id><mirrorOf>*</mirrorOf><url>http://127.0.0.1:9/maven2</url></mirror></mirrors></settings>`
	if err := os.WriteFile(settings, []byte(xml), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TIDEMARK_CACHE", filepath.Join(dir, "cache"))
	t.Setenv("TIDEMARK_MVN_SETTINGS", settings)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, _, err := FetchJars(ctx, t.Logf)
	if !errors.Is(err, ErrFetch) || !strings.Contains(err.Error(), "Maven Central reachable") {
		t.Fatalf("got %v", err)
	}
	if _, serr := os.Stat(filepath.Join(dir, "cache", "jars", "cassandra-"+CassandraVersion, ".complete")); serr == nil {
		t.Fatal("a failed fetch left a completion marker")
	}
}

func TestPortInUseIsOneClearError(t *testing.T) {
	// Region index 8 lives on 127.0.0.91, which no shared environment uses.
	ln, err := net.Listen("tcp", "127.0.0.91:9042")
	if err != nil {
		t.Fatalf("cannot listen on 127.0.0.91: %v", err)
	}
	defer ln.Close()
	start := time.Now()
	_, err = Start(context.Background(), Options{Regions: []RegionSpec{{"x", 1}}, NoKafka: true, Dir: t.TempDir(), firstRegion: 8})
	if !errors.Is(err, ErrPortInUse) || !strings.Contains(err.Error(), "127.0.0.91:9042") || !strings.Contains(err.Error(), "make down") {
		t.Fatalf("got %v", err)
	}
	if time.Since(start) > 20*time.Second {
		t.Errorf("port check took %s", time.Since(start))
	}
}

func TestCassandraExitingDuringStartIsOneClearError(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, err := Start(ctx, Options{
		Regions: []RegionSpec{{"x", 1}}, NoKafka: true, Dir: dir, firstRegion: 8,
		CassandraHeap: "256M", extraYAML: "this_option_does_not_exist: 1\n",
	})
	if !errors.Is(err, ErrStart) {
		t.Fatalf("got %v", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "exited during start") || !strings.Contains(msg, "this_option_does_not_exist") {
		t.Fatalf("error does not say what failed:\n%s", msg)
	}
	if n := strings.Count(msg, "\n"); n > 15 {
		t.Errorf("error is a wall of %d lines:\n%s", n, msg)
	}
	if _, err := os.Stat(statePath(dir)); err == nil {
		t.Error("a failed start left a state file")
	}
}

// skipOrFail skips a test whose prerequisite is missing, except in CI
// (CI=true), where a missing prerequisite is a failure.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatalf("CI=true: "+format, args...)
	}
	t.Skipf(format, args...)
}

func TestStateRecognisesReusedPids(t *testing.T) {
	self := os.Getpid()
	ticks := startTime(self)
	if ticks == 0 {
		t.Fatal("cannot read this process's start time from /proc")
	}
	if !sameProcess(self, ticks) {
		t.Fatal("this process not recognised as itself")
	}
	if sameProcess(self, ticks+1) {
		t.Fatal("a different start time was taken for the same process: a reused pid would be killed")
	}
	// A state file whose processes carry another start time is not alive,
	// and Down kills nothing.
	dir := t.TempDir()
	st := state{Started: time.Now(), Detached: true, Regions: []stateRegion{{Name: "a", Nodes: []stateNode{{Proc: stateProc{Name: "impostor", Pid: self, StartTicks: ticks + 1}}}}}}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(statePath(dir), b, 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := Down(dir)
	if err != nil || n != 0 {
		t.Fatalf("Down killed %d processes (%v); want 0: the pid belongs to someone else now", n, err)
	}
}

func TestAttachRefusesAnotherTestRunsEnvironment(t *testing.T) {
	// The owner is alive (our parent, `go test`) and the servers were not
	// started detached: attaching would lose them when the owner exits.
	dir := t.TempDir()
	owner := os.Getppid()
	st := state{Started: time.Now(), Detached: false, OwnerPid: owner, OwnerTicks: startTime(owner)}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(statePath(dir), b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Attach(context.Background(), dir)
	if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "another test run") {
		t.Fatalf("Attach = %v, want a refusal naming another test run", err)
	}
}

func TestCPUTimeCountsThisProcessesWork(t *testing.T) {
	self := &Process{pid: os.Getpid()}
	before := self.CPUTime()
	// Spin until the kernel has charged at least 50 ms more; a reading
	// that never moves fails by the deadline.
	deadline := time.Now().Add(10 * time.Second)
	x := 0
	for self.CPUTime()-before < 50*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("CPUTime moved %s in 10 s of spinning", self.CPUTime()-before)
		}
		for i := 0; i < 1_000_000; i++ {
			x += i
		}
	}
	_ = x
	if got := (&Process{}).CPUTime(); got != 0 {
		t.Fatalf("CPUTime of a process not running = %s, want 0", got)
	}
}

// TestPauseReturnsOnceEveryThreadStopped: Pause returns with the process
// stopped (all its threads), Resume lets it run again.
func TestPauseReturnsOnceEveryThreadStopped(t *testing.T) {
	dir := t.TempDir()
	p := &Process{Name: "sleeper", argv: []string{"sleep", "60"}, dir: dir, outFile: dir + "/out", attached: true}
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Kill(context.Background()) })
	// Until sleep sleeps (S), its thread may be in D while the kernel
	// loads the program: neither stopped nor, for Pause, still running.
	deadline := time.Now().Add(10 * time.Second)
	for threadsNotIn(p.Pid(), "S") > 0 {
		if time.Now().After(deadline) {
			t.Fatal("sleep not asleep 10 s after it started")
		}
		time.Sleep(time.Millisecond)
	}
	if p.Stopped() {
		t.Fatal("Stopped before Pause")
	}
	if err := p.Pause(); err != nil {
		t.Fatal(err)
	}
	if !p.Stopped() {
		t.Fatal("Pause returned with a thread still running")
	}
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for p.Stopped() {
		if time.Now().After(deadline) {
			t.Fatal("still stopped 10 s after Resume")
		}
		time.Sleep(time.Millisecond)
	}
	if err := p.Kill(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p.Stopped() {
		t.Fatal("Stopped after Kill")
	}
}
