package integration

// The watchdog: a test that runs longer than a limit ends the run at once
// with every goroutine's stack, naming the test, instead of holding CI until
// go test's -timeout (and a hang is then found from the stacks, which
// testsummary filters to this module's). Every test that uses the
// environment is watched from its first call to testEnv.

import (
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// defaultWatchdogLimit is far above the slowest test (about 45 s on a quiet
// 2-core machine, a few times that under load).
const defaultWatchdogLimit = 6 * time.Minute

var watchdog struct {
	once    sync.Once
	mu      sync.Mutex
	limit   time.Duration
	running map[string]time.Time // test name → when it was first watched
}

// watchTest puts t under the watchdog until it ends. TIDEMARK_TEST_WATCHDOG
// (a Go duration; 0 turns it off) overrides the limit.
func watchTest(t testing.TB) {
	watchdog.once.Do(startWatchdog)
	if watchdog.limit <= 0 {
		return
	}
	name := t.Name()
	watchdog.mu.Lock()
	_, seen := watchdog.running[name]
	if !seen {
		watchdog.running[name] = time.Now()
	}
	watchdog.mu.Unlock()
	if !seen {
		t.Cleanup(func() {
			watchdog.mu.Lock()
			delete(watchdog.running, name)
			watchdog.mu.Unlock()
		})
	}
}

func startWatchdog() {
	watchdog.limit = defaultWatchdogLimit
	if v := os.Getenv("TIDEMARK_TEST_WATCHDOG"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			panic(fmt.Sprintf("TIDEMARK_TEST_WATCHDOG=%q: %v (want a Go duration such as 6m, or 0)", v, err))
		}
		watchdog.limit = d
	}
	watchdog.running = map[string]time.Time{}
	if watchdog.limit <= 0 {
		return
	}
	go func() {
		for range time.Tick(min(watchdog.limit/10, 10*time.Second)) {
			if over := overdue(time.Now()); len(over) > 0 {
				debug.SetTraceback("all")
				panic(fmt.Sprintf("integration watchdog: %s ran longer than %v (TIDEMARK_TEST_WATCHDOG); the stacks below show where it is stuck",
					strings.Join(over, ", "), watchdog.limit))
			}
		}
	}()
}

// overdue lists the watched tests running longer than the limit at now.
func overdue(now time.Time) []string {
	watchdog.mu.Lock()
	defer watchdog.mu.Unlock()
	var out []string
	for name, start := range watchdog.running {
		if now.Sub(start) > watchdog.limit {
			out = append(out, fmt.Sprintf("%s (%v)", name, now.Sub(start).Round(time.Second)))
		}
	}
	sort.Strings(out)
	return out
}

// TestWatchdogFlagsOnlyOverdueTests checks the watchdog's bookkeeping
// without letting it fire.
func TestWatchdogFlagsOnlyOverdueTests(t *testing.T) {
	watchTest(t)
	if watchdog.limit <= 0 {
		if inCI() {
			t.Fatal("CI=true: the watchdog is off (TIDEMARK_TEST_WATCHDOG=0); CI must run with it")
		}
		t.Skip("the watchdog is off (TIDEMARK_TEST_WATCHDOG=0)")
	}
	watchdog.mu.Lock()
	start, ok := watchdog.running[t.Name()]
	watchdog.mu.Unlock()
	if !ok {
		t.Fatal("watchTest did not register the test")
	}
	if got := overdue(start.Add(watchdog.limit / 2)); containsPrefix(got, t.Name()+" ") {
		t.Errorf("overdue at half the limit: %v", got)
	}
	if got := overdue(start.Add(watchdog.limit + time.Second)); !containsPrefix(got, t.Name()+" ") {
		t.Errorf("not overdue past the limit: %v", got)
	}
}

func containsPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}
