package record

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to Decode, with and without a keyring. It
// checks that Decode never panics, fails only with ErrCorrupt or
// ErrUnauthenticated, and that whatever it accepts re-encodes to a record
// that decodes to the same hint (and, for unsigned input, to the very same
// bytes: the encoding is canonical).
func FuzzDecode(f *testing.F) {
	if data, err := os.ReadFile(goldenPath); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if name, hx, ok := strings.Cut(line, " "); ok && !strings.HasPrefix(name, "#") {
				if b, err := hex.DecodeString(hx); err == nil {
					f.Add(b)
				}
			}
		}
	}
	f.Add([]byte{})
	f.Add(magic[:])
	kr := mustKeyring(f, KeyringConfig{Current: goldenK, AcceptUnsigned: true})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, k := range []*Keyring{nil, kr} {
			h, err := Decode(b, k)
			if err != nil {
				if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnauthenticated) {
					t.Fatalf("Decode error %v is neither ErrCorrupt nor ErrUnauthenticated", err)
				}
				continue
			}
			if k == nil {
				// The unsigned encoding of h must be exactly b's body
				// followed by b's auth trailer.
				re, err := Encode(h, nil)
				if err != nil {
					t.Fatalf("decoded hint %s does not re-encode: %v", describe(h), err)
				}
				body := re[:len(re)-1]
				if !bytes.HasPrefix(b, body) || !(bytes.Equal(re, b) || b[len(body)] == authHMAC) {
					t.Fatalf("encoding is not canonical:\n in %x\nout %x", b, re)
				}
			}
			re, err := Encode(h, k)
			if err != nil {
				t.Fatalf("decoded hint %s does not re-encode: %v", describe(h), err)
			}
			h2, err := Decode(re, k)
			if err != nil || !equalHints(h, h2) {
				t.Fatalf("re-encoded hint does not round trip: %v\n%s\n%s", err, describe(h), describe(h2))
			}
		}
	})
}
