package hints

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/tidemark/tidemark/hints/record"
)

func nopApplier() Applier {
	return ApplierFunc(func(context.Context, record.Hint) error { return nil })
}

// TestSASLConfigIsValidated: credentials that cannot work are refused by
// NewProducer and NewReplayer alike, with an error naming the field.
func TestSASLConfigIsValidated(t *testing.T) {
	cases := []struct {
		name string
		sasl SASL
		want string
	}{
		{"no user", SASL{Password: "pw"}, "SASL.Username is empty"},
		{"no password", SASL{Username: "tidemark"}, `SASL.Password of user "tidemark" is empty`},
		{"unknown mechanism", SASL{Mechanism: "GSSAPI", Username: "u", Password: "pw"}, `SASL.Mechanism "GSSAPI" is not supported; use SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN`},
		{"lower-case mechanism", SASL{Mechanism: "scram-sha-512", Username: "u", Password: "pw"}, `"scram-sha-512" is not supported`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, perr := NewProducer(ProducerConfig{Brokers: []string{"k:9092"}, SASL: &c.sasl})
			_, rerr := NewReplayer(ReplayerConfig{Brokers: []string{"k:9092"}, Region: "b", Applier: nopApplier(), SASL: &c.sasl})
			for who, err := range map[string]error{"NewProducer": perr, "NewReplayer": rerr} {
				if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
					t.Errorf("%s = %v; want ErrInvalidConfig saying %q", who, err, c.want)
				}
			}
		})
	}
}

// TestTransportsCarryTLSAndSASL: every connection of a Producer (writer,
// admin client) and of a Replayer (dead-letter writer, topic requests,
// consumer-group reader) goes through the TLS and SASL of its config.
func TestTransportsCarryTLSAndSASL(t *testing.T) {
	roots := x509.NewCertPool()
	for _, mech := range []SASLMechanism{"", SASLScramSHA512, SASLScramSHA256, SASLPlain} {
		want := string(mech)
		if mech == "" {
			want = string(SASLScramSHA512) // the default
		}
		t.Run(want, func(t *testing.T) {
			tc := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13}
			creds := &SASL{Mechanism: mech, Username: "tidemark", Password: "secret"}
			check := func(who string, gotTLS *tls.Config, gotSASL interface{ Name() string }) {
				t.Helper()
				if gotTLS == nil || gotTLS.RootCAs != roots || gotTLS.MinVersion != tls.VersionTLS13 {
					t.Errorf("%s: TLS %+v, want the config's", who, gotTLS)
				}
				if gotTLS == tc {
					t.Errorf("%s: uses the caller's *tls.Config itself; want a clone", who)
				}
				if gotSASL == nil || gotSASL.Name() != want {
					t.Errorf("%s: SASL %v, want %s", who, gotSASL, want)
				}
			}

			p, err := NewProducer(ProducerConfig{Brokers: []string{"k:9094"}, TLS: tc, SASL: creds})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			check("producer transport", p.transport.TLS, p.transport.SASL)
			if w := p.writer.(*kafka.Writer); w.Transport != p.transport {
				t.Error("the producer's writer does not use its transport")
			}
			if p.client.Transport != p.transport {
				t.Error("the producer's admin client does not use its transport")
			}

			r, err := NewReplayer(ReplayerConfig{Brokers: []string{"k:9094"}, Region: "b", Applier: nopApplier(), TLS: tc, SASL: creds})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			check("replayer transport", r.transport.TLS, r.transport.SASL)
			if w := r.dead.(*kafka.Writer); w.Transport != r.transport {
				t.Error("the dead-letter writer does not use the replayer's transport")
			}
			d := r.readerConfig().Dialer
			if d == nil {
				t.Fatal("the reader has no dialer: it would connect without TLS or SASL")
			}
			check("reader dialer", d.TLS, d.SASLMechanism)
		})
	}
}

// TestNoTLSOrSASLByDefault: without TLS and SASL, connections are plain,
// and SASL without TLS is allowed (credentials in clear, documented).
func TestNoTLSOrSASLByDefault(t *testing.T) {
	p, err := NewProducer(ProducerConfig{Brokers: []string{"k:9092"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.transport.TLS != nil || p.transport.SASL != nil {
		t.Errorf("producer: TLS %v, SASL %v; want neither", p.transport.TLS, p.transport.SASL)
	}
	r, err := NewReplayer(ReplayerConfig{Brokers: []string{"k:9092"}, Region: "b", Applier: nopApplier()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if d := r.readerConfig().Dialer; d == nil || d.TLS != nil || d.SASLMechanism != nil || r.transport.TLS != nil || r.transport.SASL != nil {
		t.Errorf("replayer: want no TLS and no SASL")
	}

	p2, err := NewProducer(ProducerConfig{Brokers: []string{"k:9092"}, SASL: &SASL{Username: "u", Password: "pw"}})
	if err != nil {
		t.Fatalf("SASL without TLS refused: %v", err)
	}
	defer p2.Close()
	if p2.transport.TLS != nil || p2.transport.SASL == nil {
		t.Error("SASL without TLS: want SASL on a plain connection")
	}
}

// TestAuthenticationFailuresAreErrAuthentication: Kafka refusing the
// client's SASL or TLS is ErrAuthentication (and so ErrUnavailable); a
// broker that does not answer is ErrUnavailable alone.
func TestAuthenticationFailuresAreErrAuthentication(t *testing.T) {
	untrusted := &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}
	cases := []struct {
		name string
		err  error
		auth bool
	}{
		{"sasl authentication failed", kafka.SASLAuthenticationFailed, true},
		{"sasl failed, wrapped by the dialer", fmt.Errorf("could not successfully authenticate to k:9094 with SASL: %w", kafka.SASLAuthenticationFailed), true},
		{"unsupported mechanism", kafka.UnsupportedSASLMechanism, true},
		{"illegal sasl state", kafka.IllegalSASLState, true},
		{"untrusted certificate", untrusted, true},
		{"certificate for another host", x509.HostnameError{Certificate: &x509.Certificate{}, Host: "127.0.0.2"}, true},
		{"expired certificate", x509.CertificateInvalidError{Reason: x509.Expired}, true},
		{"broker refused the handshake", tls.AlertError(40), true},
		{"plaintext listener", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, true},
		{"plaintext client, TLS listener", fmt.Errorf("kafka.(*Client).Metadata: %w", fmt.Errorf("%w: broker appears to be expecting TLS", io.ErrUnexpectedEOF)), true},
		{"write errors of one sasl failure", kafka.WriteErrors{kafka.SASLAuthenticationFailed}, true},
		{"connection refused", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, false},
		{"leader not available", kafka.LeaderNotAvailable, false},
		{"eof (a SASL listener given no SASL closes the connection)", io.ErrUnexpectedEOF, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := classify("b", c.err)
			if !errors.Is(err, ErrUnavailable) {
				t.Errorf("classify(%v) = %v; want it to wrap ErrUnavailable", c.err, err)
			}
			if got := errors.Is(err, ErrAuthentication); got != c.auth {
				t.Errorf("classify(%v) = %v; ErrAuthentication %v, want %v", c.err, err, got, c.auth)
			}
			if !strings.Contains(err.Error(), c.err.Error()) {
				t.Errorf("classify: %q does not say the cause %q", err, c.err)
			}
			// What the replayer reports: the cause, marked when it is a
			// refusal, left alone otherwise.
			if r := refusal(c.err); errors.Is(r, ErrAuthentication) != c.auth || (!c.auth && r != c.err) {
				t.Errorf("refusal(%v) = %v", c.err, r)
			}
		})
	}
	if !errors.Is(ErrAuthentication, ErrUnavailable) || errors.Is(ErrUnavailable, ErrAuthentication) {
		t.Error("ErrAuthentication must be an ErrUnavailable, not the reverse")
	}
	if err := refusal(refusal(kafka.SASLAuthenticationFailed)); strings.Count(err.Error(), "Kafka refused") != 1 {
		t.Errorf("wrapped twice: %v", err)
	}
}
