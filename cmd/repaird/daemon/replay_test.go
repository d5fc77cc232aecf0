package daemon

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/cmd/repaird/config"
	"github.com/tidemark/tidemark/hints/record"
	"github.com/tidemark/tidemark/internal/syncbuf"
)

func TestKeyringFromConfig(t *testing.T) {
	cur := []byte("current-secret-0123456789abcdef!")
	old := []byte("previous-secret-0123456789abcde!")
	h := config.Hints{HMACKeys: []config.HMACKey{
		{ID: "new", Secret: base64.StdEncoding.EncodeToString(cur)},
		{ID: "old", Secret: base64.StdEncoding.EncodeToString(old), AcceptUntil: time.Now().Add(time.Hour)},
		{ID: "gone", Secret: base64.StdEncoding.EncodeToString(old), AcceptUntil: time.Now().Add(-time.Hour)},
	}}
	kr, err := Keyring(h)
	if err != nil {
		t.Fatal(err)
	}
	hint := record.Hint{Target: "c", Namespace: "ns", PK: []byte("k"), Value: []byte("v"), Timestamp: 1}
	sign := func(id string, secret []byte) []byte {
		k, err := record.NewKeyring(record.KeyringConfig{Current: record.Key{ID: id, Secret: secret}})
		if err != nil {
			t.Fatal(err)
		}
		b, err := record.Encode(hint, k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if _, err := record.Decode(sign("new", cur), kr); err != nil {
		t.Errorf("current key refused: %v", err)
	}
	if _, err := record.Decode(sign("old", old), kr); err != nil {
		t.Errorf("previous key inside its window refused: %v", err)
	}
	if _, err := record.Decode(sign("gone", old), kr); err == nil {
		t.Error("previous key past its window accepted")
	}
	unsigned, err := record.Encode(hint, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := record.Decode(unsigned, kr); err == nil {
		t.Error("unsigned hint accepted with require_hmac")
	}
	if kr, err := Keyring(config.Hints{}); err != nil || kr != nil {
		t.Errorf("no keys: got %v, %v; want nil, nil", kr, err)
	}
}

// Listing hmac_keys refuses unsigned hints unless require_hmac: false is
// written out; then the daemon says so loudly (log, /status, a metric).
func TestHMACKeysImplyRequireHMAC(t *testing.T) {
	secret := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	hintsYAML := "hints:\n  brokers: [\"127.0.0.1:1\"]\n  hmac_keys: [{id: k1, secret: " + secret + "}]\n"
	unsigned, err := record.Encode(record.Hint{Target: "a", Namespace: "ns", PK: []byte("k"), Value: []byte("v"), Timestamp: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, extra string
		accepts     bool
	}{
		{"keys alone", "", false},
		{"require_hmac: true", "  require_hmac: true\n", false},
		{"require_hmac: false written out", "  require_hmac: false\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncbuf.Buffer
			cfg := parseConfig(t, baseYAML+hintsYAML+tc.extra)
			kr, err := Keyring(cfg.Hints)
			if err != nil {
				t.Fatal(err)
			}
			_, err = record.Decode(unsigned, kr)
			if accepted := err == nil; accepted != tc.accepts {
				t.Fatalf("unsigned hint accepted = %v, want %v (%v)", accepted, tc.accepts, err)
			}
			d, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			warned := strings.Contains(logs.String(), "UNSIGNED HINTS ARE ACCEPTED")
			inStatus := slices.ContainsFunc(d.Status().Warnings, func(w string) bool { return strings.Contains(w, "UNSIGNED HINTS ARE ACCEPTED") })
			if warned != tc.accepts || inStatus != tc.accepts {
				t.Errorf("warning in the log %v, in /status %v; want %v", warned, inStatus, tc.accepts)
			}
			if v, _ := gauge(t, d.Registry(), "tidemark_repaird_unsigned_hints_accepted", ""); (v == 1) != tc.accepts {
				t.Errorf("tidemark_repaird_unsigned_hints_accepted = %v", v)
			}
		})
	}
}

// TestHintRegionListedTwiceStopsServe: a region listed twice in
// hints.regions is refused before serve starts, by name (it was accepted,
// and serve died at start when the second replayer of the region
// registered the same metrics).
func TestHintRegionListedTwiceStopsServe(t *testing.T) {
	cfg := parseConfig(t, baseYAML+"hints:\n  brokers: [\"127.0.0.1:1\"]\n  regions: [a]\n")
	cfg.Hints.Regions = []string{"a", "b", "a"}
	d, err := New(cfg, Options{Connect: unreachable(new(atomic.Int32)), Registry: prometheus.NewRegistry()})
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		t.Fatalf(`New accepted hints.regions [a b a]; serving it: %v`, d.Run(ctx))
	}
	if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), `hints.regions: "a" is listed twice`) {
		t.Errorf(`New = %v, want an invalid configuration naming 'hints.regions: "a" is listed twice'`, err)
	}
}
