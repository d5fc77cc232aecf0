package record

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"time"
	"unicode/utf8"
)

// MinSecretLen is the shortest HMAC secret a [Keyring] accepts, in bytes.
const MinSecretLen = 16

// MaxKeyIDLen is the longest key id a [Keyring] accepts, in bytes.
const MaxKeyIDLen = 64

// ErrInvalidKeyring reports a [KeyringConfig] that cannot be used.
var ErrInvalidKeyring = errors.New("hints: invalid keyring")

// Key is one HMAC-SHA256 key.
type Key struct {
	// ID names the key; it is written into every record signed with it, so
	// the replayer knows which key to check. 1 to MaxKeyIDLen bytes of
	// printable UTF-8. IDs must never be reused for a different secret.
	ID string
	// Secret is the key material, at least MinSecretLen bytes (32 random
	// bytes recommended). The keyring keeps its own copy.
	Secret []byte
	// AcceptUntil is, for a previous key, the time until which records
	// signed with it are still accepted. Set it to the rotation time plus the
	// hint retention, so that hints signed just before the rotation can
	// still be replayed. Ignored for the current key, which is always
	// accepted.
	AcceptUntil time.Time
}

// KeyringConfig configures [NewKeyring].
type KeyringConfig struct {
	// Current signs every record the producer writes and is accepted by the
	// replayer. Required.
	Current Key
	// Previous are older keys still accepted for verification, each until
	// its AcceptUntil. Keys past their AcceptUntil may stay in the list; they
	// are simply refused.
	Previous []Key
	// AcceptUnsigned lets the replayer apply records that carry no MAC at
	// all. Use it only while turning authentication on (producers first,
	// then replayers); the default, false, refuses unsigned records as
	// unauthenticated.
	AcceptUnsigned bool
	// Now is the clock used to check AcceptUntil; nil means time.Now.
	Now func() time.Time
}

// Keyring holds the key that signs hint records and the keys that are
// accepted when verifying them. A nil *Keyring signs nothing and verifies
// nothing. A Keyring is safe for concurrent use and is immutable: to rotate,
// build a new one and restart (or reconfigure) producers and replayers.
//
// Rotation: give producers and replayers a keyring whose Current is the new
// key and whose Previous holds the old key with AcceptUntil = now + hint
// retention. Deploy it to replayers first, then to producers.
type Keyring struct {
	current        keyEntry
	byID           map[string]keyEntry
	acceptUnsigned bool
	now            func() time.Time
}

type keyEntry struct {
	id          string
	secret      []byte
	acceptUntil time.Time // zero: always (the current key)
}

// NewKeyring checks cfg and returns a keyring. It fails with
// [ErrInvalidKeyring] when a key id or secret is malformed or when two keys
// share an id.
func NewKeyring(cfg KeyringConfig) (*Keyring, error) {
	if err := checkKey(cfg.Current); err != nil {
		return nil, fmt.Errorf("%w: current key: %w", ErrInvalidKeyring, err)
	}
	k := &Keyring{
		current:        keyEntry{id: cfg.Current.ID, secret: clone(cfg.Current.Secret)},
		byID:           make(map[string]keyEntry, 1+len(cfg.Previous)),
		acceptUnsigned: cfg.AcceptUnsigned,
		now:            cfg.Now,
	}
	if k.now == nil {
		k.now = time.Now
	}
	k.byID[k.current.id] = k.current
	for i, p := range cfg.Previous {
		if err := checkKey(p); err != nil {
			return nil, fmt.Errorf("%w: previous key %d: %w", ErrInvalidKeyring, i, err)
		}
		if _, dup := k.byID[p.ID]; dup {
			return nil, fmt.Errorf("%w: key id %q appears twice; give every key its own id", ErrInvalidKeyring, p.ID)
		}
		if p.AcceptUntil.IsZero() {
			return nil, fmt.Errorf("%w: previous key %q has no AcceptUntil; set it to the rotation time plus the hint retention", ErrInvalidKeyring, p.ID)
		}
		k.byID[p.ID] = keyEntry{id: p.ID, secret: clone(p.Secret), acceptUntil: p.AcceptUntil}
	}
	return k, nil
}

// CurrentKeyID returns the id of the key that signs new records.
func (k *Keyring) CurrentKeyID() string { return k.current.id }

func checkKey(key Key) error {
	if key.ID == "" || len(key.ID) > MaxKeyIDLen || !printable(key.ID) {
		return fmt.Errorf("key id %q must be 1 to %d bytes of printable UTF-8", key.ID, MaxKeyIDLen)
	}
	if len(key.Secret) < MinSecretLen {
		return fmt.Errorf("key %q: secret has %d bytes, want at least %d (32 random bytes recommended)", key.ID, len(key.Secret), MinSecretLen)
	}
	return nil
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// mac returns a fresh HMAC-SHA256 for the key.
func (e keyEntry) mac() hash.Hash { return hmac.New(sha256.New, e.secret) }

// lookup returns the key with id if it is accepted now.
func (k *Keyring) lookup(id string) (keyEntry, error) {
	e, ok := k.byID[id]
	if !ok {
		return keyEntry{}, fmt.Errorf("%w: record is signed with unknown key id %q; add the key to the replayer's keyring if it is legitimate", ErrUnauthenticated, id)
	}
	if !e.acceptUntil.IsZero() && !k.now().Before(e.acceptUntil) {
		return keyEntry{}, fmt.Errorf("%w: key %q was retired at %s", ErrUnauthenticated, id, e.acceptUntil.UTC().Format(time.RFC3339))
	}
	return e, nil
}
