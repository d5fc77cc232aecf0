// The hints section: Kafka, its TLS and SASL, the replayer groups and the
// keys that sign hints.

package config

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/tidemark/tidemark/hints"
)

// Hints configures the hint replayer.
type Hints struct {
	Brokers     []string `yaml:"brokers"`
	TopicPrefix string   `yaml:"topic_prefix"`
	// Group names the Kafka consumer groups: the replayer of region R uses
	// the group "<group>-<R>" (GroupFor), one group per region as the hints
	// library does, so that a replayer restarting in one region does not
	// rebalance the others. Default "tidemark-hints" (so
	// "tidemark-hints-us-east"). Daemons replaying the same region share its
	// group and divide its topic's partitions.
	Group    string    `yaml:"group"`
	HMACKeys []HMACKey `yaml:"hmac_keys"`
	// RequireHMAC refuses unsigned hints. Unset, it is true as soon as
	// hmac_keys are listed: accepting unsigned hints beside keys takes
	// `require_hmac: false` written out, and the daemon then warns loudly
	// (log and /status). Use RequiresHMAC.
	RequireHMAC *bool `yaml:"require_hmac"`
	// Regions lists the regions whose hint topics this daemon replays
	// (default: the home region only — run one repaird next to each region).
	Regions []string `yaml:"regions"`
	// Retention is the tombstone retention: hints older than it are
	// dead-lettered, never applied (default 10 days, as the tables').
	Retention time.Duration `yaml:"retention"`
	// MaxHintsPerSecond and MaxBytesPerSecond throttle replay per region
	// (0 = unlimited).
	MaxHintsPerSecond float64 `yaml:"max_hints_per_second"`
	MaxBytesPerSecond int     `yaml:"max_bytes_per_second"`
	// TLS, when set, encrypts every connection to the brokers (an SSL or
	// SASL_SSL listener): ca_file, cert_file/key_file for a client
	// certificate, server_name.
	TLS *TLS `yaml:"tls"`
	// SASL, when set, authenticates every connection to the brokers.
	SASL *SASL `yaml:"sasl"`
	// InstanceID names this daemon's replayers in their consumer groups,
	// stable across restarts, so that a restarted daemon takes its
	// partitions back at once (hints.ReplayerConfig.InstanceID). Default:
	// repair.owner, or the host name.
	InstanceID string `yaml:"instance_id"`
}

// SASL is the daemon's Kafka credentials. Exactly one of Password,
// PasswordFile and PasswordEnv is set.
type SASL struct {
	// Mechanism is SCRAM-SHA-512 (default), SCRAM-SHA-256 or PLAIN (PLAIN
	// only with tls: it sends the password itself).
	Mechanism    string `yaml:"mechanism"`
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
}

// KafkaTLS returns the TLS configuration of the connections to the
// brokers, nil without hints.tls.
func (h *Hints) KafkaTLS() (*tls.Config, error) {
	if h.TLS == nil {
		return nil, nil
	}
	c, err := h.TLS.config()
	if err != nil {
		return nil, invalid("hints.tls: %v", err)
	}
	return c, nil
}

// KafkaSASL returns the Kafka credentials, nil without hints.sasl.
func (h *Hints) KafkaSASL() (*hints.SASL, error) {
	if h.SASL == nil {
		return nil, nil
	}
	pw, err := secretValue("hints.sasl password", h.SASL.Password, h.SASL.PasswordFile, h.SASL.PasswordEnv)
	if err != nil {
		return nil, err
	}
	return &hints.SASL{Mechanism: hints.SASLMechanism(h.SASL.Mechanism), Username: h.SASL.Username, Password: pw}, nil
}

// RequiresHMAC reports whether unsigned hints are refused: require_hmac
// as written, or, unset, whether hmac_keys are listed.
func (h *Hints) RequiresHMAC() bool {
	if h.RequireHMAC != nil {
		return *h.RequireHMAC
	}
	return len(h.HMACKeys) > 0
}

// UnsignedWarning is the warning of a configuration whose replayers apply
// unsigned hints although keys are listed (require_hmac: false): anyone
// who can write to the hint topics can then write into every region. ""
// otherwise.
func (h *Hints) UnsignedWarning() string {
	if len(h.Brokers) == 0 || len(h.HMACKeys) == 0 || h.RequiresHMAC() {
		return ""
	}
	return "hints.require_hmac is false although hmac_keys are listed: UNSIGNED HINTS ARE ACCEPTED, so anyone who can write to the hint topics can write into every region; remove require_hmac: false once every producer signs"
}

// GroupFor returns the Kafka consumer group of region's replayer:
// "<group>-<region>".
func (h *Hints) GroupFor(region string) string { return h.Group + "-" + region }

// HMACKey is one key hints may be authenticated with. Exactly one of Secret
// (base64), SecretFile (a file holding the base64 secret) and SecretEnv
// (an environment variable holding it) is set.
//
// The first key signs (for producers reading this file) and is always
// accepted; the others are previous keys, accepted until AcceptUntil (zero:
// for as long as they are listed), so keys rotate without a gap.
type HMACKey struct {
	ID          string    `yaml:"id"`
	Secret      string    `yaml:"secret"`
	SecretFile  string    `yaml:"secret_file"`
	SecretEnv   string    `yaml:"secret_env"`
	AcceptUntil time.Time `yaml:"accept_until"`
}

func (h *Hints) validate() error {
	if len(h.Brokers) == 0 {
		if h.TopicPrefix != "" || h.Group != "" || len(h.HMACKeys) > 0 || h.RequireHMAC != nil || len(h.Regions) > 0 || h.TLS != nil || h.SASL != nil {
			return invalid("hints: brokers is required when the hints section is used")
		}
		return nil
	}
	for _, b := range h.Brokers {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			return invalid("hints: broker %q must be host:port", b)
		}
	}
	if !kafkaName.MatchString(h.TopicPrefix) {
		return invalid("hints: topic_prefix %q may only hold letters, digits, '.', '_' and '-'", h.TopicPrefix)
	}
	if !kafkaName.MatchString(h.Group) {
		return invalid("hints: group %q may only hold letters, digits, '.', '_' and '-'", h.Group)
	}
	ids := map[string]bool{}
	for i, k := range h.HMACKeys {
		if !keyIDPatten.MatchString(k.ID) {
			return invalid("hints.hmac_keys[%d]: id %q must be 1-64 letters, digits, '.', '_' or '-'", i, k.ID)
		}
		if ids[k.ID] {
			return invalid("hints.hmac_keys: id %q is listed twice", k.ID)
		}
		ids[k.ID] = true
		if k.Secret == "" && k.SecretFile == "" && k.SecretEnv == "" || !oneOf(k.Secret, k.SecretFile, k.SecretEnv) {
			return invalid("hints.hmac_keys[%q]: set exactly one of secret, secret_file and secret_env", k.ID)
		}
		if k.Secret != "" {
			if _, err := decodeSecret(k.Secret); err != nil {
				return invalid("hints.hmac_keys[%q]: %v", k.ID, err)
			}
		}
	}
	if h.Retention < 0 || h.MaxHintsPerSecond < 0 || h.MaxBytesPerSecond < 0 {
		return invalid("hints: retention, max_hints_per_second and max_bytes_per_second must not be negative")
	}
	if t := h.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
		return invalid("hints.tls needs both cert_file and key_file, or neither")
	}
	if sa := h.SASL; sa != nil {
		switch hints.SASLMechanism(sa.Mechanism) {
		case "", hints.SASLScramSHA512, hints.SASLScramSHA256:
		case hints.SASLPlain:
			if h.TLS == nil {
				return invalid("hints.sasl: mechanism PLAIN sends the password itself: it needs hints.tls")
			}
		default:
			return invalid("hints.sasl: mechanism %q is not supported; use %s, %s or %s", sa.Mechanism, hints.SASLScramSHA512, hints.SASLScramSHA256, hints.SASLPlain)
		}
		if sa.Username == "" {
			return invalid("hints.sasl: username is required")
		}
		if sa.Password == "" && sa.PasswordFile == "" && sa.PasswordEnv == "" || !oneOf(sa.Password, sa.PasswordFile, sa.PasswordEnv) {
			return invalid("hints.sasl: set exactly one of password, password_file and password_env")
		}
	}
	if h.RequiresHMAC() && len(h.HMACKeys) == 0 {
		return invalid("hints.require_hmac is set but no hmac_keys are configured")
	}
	return nil
}

// MinSecretBytes is the shortest HMAC secret accepted.
const MinSecretBytes = 16

func decodeSecret(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, errors.New("secret must be base64")
	}
	if len(b) < MinSecretBytes {
		return nil, fmt.Errorf("secret must be at least %d bytes (got %d)", MinSecretBytes, len(b))
	}
	return b, nil
}

// Secrets reads and decodes every HMAC key (secret_file contents included),
// by key ID.
func (h *Hints) Secrets() (map[string][]byte, error) {
	out := make(map[string][]byte, len(h.HMACKeys))
	for _, k := range h.HMACKeys {
		s, err := secretValue(fmt.Sprintf("hints.hmac_keys[%q]", k.ID), k.Secret, k.SecretFile, k.SecretEnv)
		if err != nil {
			return nil, err
		}
		b, err := decodeSecret(s)
		if err != nil {
			return nil, invalid("hints.hmac_keys[%q]: %v", k.ID, err)
		}
		out[k.ID] = b
	}
	return out, nil
}
