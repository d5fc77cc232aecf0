package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/cmd/repaird/config"
	"github.com/tidemark/tidemark/cmd/repaird/daemon"
	"github.com/tidemark/tidemark/integration/fault"
)

// servedDaemon is one in-process `repaird serve` of a test.
type servedDaemon struct {
	*daemon.Daemon
	cancel  context.CancelFunc
	done    chan error
	stopped error
	ended   bool
}

// serveDaemon writes yaml as a repaird configuration, loads it as
// `repaird serve` does and runs the daemon until stop or the test's end.
func serveDaemon(t testing.TB, yaml string) *servedDaemon {
	t.Helper()
	path := filepath.Join(t.TempDir(), "repaird.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(cfg, daemon.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sd := &servedDaemon{Daemon: d, cancel: cancel, done: make(chan error, 1)}
	go func() { sd.done <- d.Run(ctx) }()
	t.Cleanup(func() { _ = sd.stop() })
	return sd
}

// stop ends the daemon and returns what Run returned, or an error when it
// did not return within 30 s. Later calls return the same.
func (sd *servedDaemon) stop() error {
	if sd.ended {
		return sd.stopped
	}
	sd.ended = true
	sd.cancel()
	select {
	case sd.stopped = <-sd.done:
	case <-time.After(30 * time.Second):
		sd.stopped = errors.New("repaird serve did not stop within 30s of its cancel")
	}
	return sd.stopped
}

// regionsYAML is the regions: section of a repaird configuration for the
// environment's regions of the given names.
func regionsYAML(t testing.TB, names ...string) string {
	t.Helper()
	return regionsYAMLVia(t, nil, names...)
}

// regionsYAMLVia is regionsYAML with the regions that have a proxy in
// proxies reached through it (contact points and address map).
func regionsYAMLVia(t testing.TB, proxies map[string]*fault.Proxy, names ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("regions:\n")
	for _, name := range names {
		r := region(t, name)
		hosts := r.Hosts
		var addrMap string
		if p := proxies[name]; p != nil {
			hosts = p.ContactPoints()
			var m []string
			for from, to := range p.AddressMap() {
				m = append(m, fmt.Sprintf("%q: %q", from, to))
			}
			addrMap = "    address_map: {" + strings.Join(m, ", ") + "}\n"
		}
		fmt.Fprintf(&b, "  - name: %s\n    contact_points: [%q]\n    local_dc: %s\n    connect_timeout: 3s\n%s", name, strings.Join(hosts, `", "`), r.DC, addrMap)
	}
	return b.String()
}

// pauseBroker pauses (SIGSTOP) the shared Kafka broker and returns the
// function that resumes it, which is also run when the test ends; calls
// after the first do nothing.
func pauseBroker(t testing.TB) (resume func()) {
	t.Helper()
	l := localEnv(t)
	if err := l.Broker().Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume = func() {
		if !resumed {
			resumed = true
			if err := l.Broker().Resume(); err != nil {
				t.Errorf("resume kafka: %v", err)
			}
		}
	}
	t.Cleanup(resume)
	return resume
}
