package hints

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// TLS and SASL: how a Producer or Replayer reaches brokers that encrypt
// and authenticate their clients (a SASL_SSL listener). Both configs carry
// the same two fields, TLS and SASL, and kafkaDialing turns them into the
// one kafka-go transport (writers, admin requests) and dialer (the
// consumer-group reader) every connection of the Producer or Replayer
// goes through.

// ErrAuthentication reports that Kafka did not take the client's security:
// the broker's certificate did not verify against the configured TLS
// roots (or names another host), the broker does not speak TLS where TLS
// was configured or expects TLS where none was, or it refused the SASL
// mechanism or credentials. Waiting does not fix it; the configuration (or
// the broker's users) must change. (A SASL listener that gets no SASL at
// all just closes the connection: that is an EOF, ErrUnavailable alone.)
//
// errors.Is(ErrAuthentication, ErrUnavailable) is true: a hint Kafka
// refused this way was not stored, callers that only check for
// ErrUnavailable keep treating it as such, and the producer's breaker
// counts it (a misconfigured producer asks Kafka once per BreakerOpenFor
// instead of once per hint).
var ErrAuthentication error = authError{}

// authError is ErrAuthentication: its own message, and Is ErrUnavailable.
type authError struct{}

func (authError) Error() string {
	return "hints: Kafka refused the client's TLS or SASL authentication"
}
func (authError) Is(target error) bool { return target == ErrUnavailable }

// SASLMechanism names a SASL mechanism, as Kafka's sasl.enabled.mechanisms
// spells it.
type SASLMechanism string

// The SASL mechanisms a Producer or Replayer can authenticate with.
const (
	// SASLScramSHA512 is SCRAM with SHA-512 (RFC 5802, 7677): the password
	// never crosses the network, the broker stores only a salted hash, and
	// client and broker prove to each other that they know it. The
	// default, and the recommended mechanism.
	SASLScramSHA512 SASLMechanism = "SCRAM-SHA-512"
	// SASLScramSHA256 is SCRAM with SHA-256: the same exchange with a
	// shorter hash, for brokers whose users were created for it only.
	SASLScramSHA256 SASLMechanism = "SCRAM-SHA-256"
	// SASLPlain sends the user name and the password themselves: use it
	// only over TLS, with brokers that check PLAIN users against a
	// directory of their own.
	SASLPlain SASLMechanism = "PLAIN"
)

// SASL is a client's credentials for Kafka's SASL authentication.
type SASL struct {
	// Mechanism is how the credentials are presented. Default
	// SASLScramSHA512. The broker's listener must enable it
	// (sasl.enabled.mechanisms) and, for SCRAM, hold the user's
	// credentials for that very mechanism (a SCRAM-SHA-256 user cannot log
	// in with SCRAM-SHA-512).
	Mechanism SASLMechanism
	// Username and Password are the credentials. Both required. They are
	// kept in memory for as long as the Producer or Replayer lives (every
	// new connection authenticates again); to rotate them, start a new one.
	Username, Password string
}

// mechanism validates s and returns the kafka-go mechanism it names.
func (s *SASL) mechanism() (sasl.Mechanism, error) {
	switch {
	case s.Username == "":
		return nil, fmt.Errorf("%w: SASL.Username is empty; give the Kafka user, or leave SASL nil for a listener without SASL", ErrInvalidConfig)
	case s.Password == "":
		return nil, fmt.Errorf("%w: SASL.Password of user %q is empty", ErrInvalidConfig, s.Username)
	}
	switch s.Mechanism {
	case SASLScramSHA512, "":
		return scramMechanism(scram.SHA512, s)
	case SASLScramSHA256:
		return scramMechanism(scram.SHA256, s)
	case SASLPlain:
		return plain.Mechanism{Username: s.Username, Password: s.Password}, nil
	}
	return nil, fmt.Errorf("%w: SASL.Mechanism %q is not supported; use %s, %s or %s",
		ErrInvalidConfig, s.Mechanism, SASLScramSHA512, SASLScramSHA256, SASLPlain)
}

func scramMechanism(algo scram.Algorithm, s *SASL) (sasl.Mechanism, error) {
	m, err := scram.Mechanism(algo, s.Username, s.Password)
	if err != nil {
		// The SCRAM client refuses names and passwords SASLprep cannot
		// normalise.
		return nil, fmt.Errorf("%w: SASL credentials of user %q: %w", ErrInvalidConfig, s.Username, err)
	}
	return m, nil
}

// kafkaDialing builds how a Producer or Replayer connects to Kafka, from
// its TLS and SASL settings: the transport of its writers and admin
// requests, and the dialer of its readers, both with the same TLS (a clone
// of tlsConfig, so that later changes to the caller's config are not seen)
// and the same SASL mechanism. It is the only place that does.
func kafkaDialing(clientID string, dialTimeout time.Duration, tlsConfig *tls.Config, s *SASL) (*kafka.Transport, *kafka.Dialer, error) {
	var mech sasl.Mechanism
	if s != nil {
		m, err := s.mechanism()
		if err != nil {
			return nil, nil, err
		}
		mech = m
	}
	var tc *tls.Config
	if tlsConfig != nil {
		tc = tlsConfig.Clone()
	}
	t := &kafka.Transport{ClientID: clientID, DialTimeout: dialTimeout, TLS: tc, SASL: mech}
	d := &kafka.Dialer{ClientID: clientID, Timeout: dialTimeout, DualStack: true, TLS: tc, SASLMechanism: mech}
	return t, d, nil
}

// authFailure reports whether err says Kafka did not take the client's TLS
// or SASL (see ErrAuthentication), as opposed to not answering.
func authFailure(err error) bool {
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		alert     tls.AlertError
		record    tls.RecordHeaderError
	)
	var batch kafka.WriteErrors // a writer's errors, one per message
	if errors.As(err, &batch) {
		for _, e := range batch {
			if e != nil && authFailure(e) {
				return true
			}
		}
	}
	// kafka-go's own diagnosis of a plaintext client answered with a TLS
	// alert; it exists as text only.
	if strings.Contains(err.Error(), "broker appears to be expecting TLS") {
		return true
	}
	return errors.Is(err, kafka.SASLAuthenticationFailed) ||
		errors.Is(err, kafka.UnsupportedSASLMechanism) ||
		errors.Is(err, kafka.IllegalSASLState) ||
		errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		errors.As(err, &verify) || errors.As(err, &alert) || errors.As(err, &record)
}

// refusal wraps err in ErrAuthentication when it says Kafka refused the
// client's security (authFailure), and returns it as it is otherwise.
func refusal(err error) error {
	if errors.Is(err, ErrAuthentication) || !authFailure(err) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrAuthentication, err)
}
