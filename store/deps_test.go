package store

import (
	"os/exec"
	"strings"
	"testing"
)

// TestStoreDoesNotDependOnKafka keeps the hint record a leaf: the store
// reaches Kafka only through a HintSink a caller passes (hints.Producer),
// so importing store must not pull in the Kafka client.
func TestStoreDoesNotDependOnKafka(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed %d packages, expected the store's many: %q", len(deps), out)
	}
	for _, d := range deps {
		if strings.HasPrefix(d, "github.com/segmentio/kafka-go") {
			t.Errorf("store depends on %s", d)
		}
	}
}
