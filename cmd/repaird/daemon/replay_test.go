package daemon

import (
	"encoding/base64"
	"testing"
	"time"

	"github.com/tidemark/tidemark/cmd/repaird/config"
	"github.com/tidemark/tidemark/hints/record"
)

func TestKeyringFromConfig(t *testing.T) {
	cur := []byte("current-secret-0123456789abcdef!")
	old := []byte("previous-secret-0123456789abcde!")
	h := config.Hints{RequireHMAC: true, HMACKeys: []config.HMACKey{
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
