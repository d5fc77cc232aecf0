package cluster

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

// codeErr is a request error known only by its code, as gocql returns
// server and protocol errors.
type codeErr int

func (c codeErr) Code() int       { return int(c) }
func (c codeErr) Message() string { return fmt.Sprintf("code %#x", int(c)) }
func (c codeErr) Error() string   { return c.Message() }

type netTimeout struct{}

func (netTimeout) Error() string   { return "i/o timeout" }
func (netTimeout) Timeout() bool   { return true }
func (netTimeout) Temporary() bool { return true }

// TestClassify is the table of what every driver error means. A new driver
// error that should count as an outage is added here and in Classify, and
// nowhere else (docs/architecture.md, "Where to change what").
func TestClassify(t *testing.T) {
	live := context.Background()
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name string
		ctx  context.Context
		err  error
		want Kind
	}{
		{"nil", live, nil, OK},
		{"not found", live, gocql.ErrNotFound, NotFound},
		{"not found wrapped", live, fmt.Errorf("read: %w", gocql.ErrNotFound), NotFound},

		// Typed request errors, as gocql returns them.
		{"unavailable", live, &gocql.RequestErrUnavailable{}, Unavailable},
		{"overloaded", live, &gocql.RequestErrOverloaded{}, Unavailable},
		{"bootstrapping", live, &gocql.RequestErrBootstrapping{}, Unavailable},
		{"truncate", live, &gocql.RequestErrTruncate{}, Failed},
		{"write timeout", live, &gocql.RequestErrWriteTimeout{}, Timeout},
		{"read timeout", live, &gocql.RequestErrReadTimeout{}, Timeout},
		{"cas write unknown", live, &gocql.RequestErrCASWriteUnknown{}, Timeout},
		{"read failure", live, &gocql.RequestErrReadFailure{}, Failed},
		{"write failure", live, &gocql.RequestErrWriteFailure{}, Failed},
		{"cdc write failure", live, &gocql.RequestErrCDCWriteFailure{}, Failed},
		{"unprepared", live, &gocql.RequestErrUnprepared{}, Failed},
		{"function failure", live, &gocql.RequestErrFunctionFailure{}, Refused},
		{"syntax", live, &gocql.RequestErrSyntax{}, Refused},
		{"unauthorized", live, &gocql.RequestErrUnauthorized{}, Refused},
		{"invalid (unconfigured table)", live, &gocql.RequestErrInvalid{}, Refused},
		{"config", live, &gocql.RequestErrConfig{}, Refused},
		{"already exists", live, &gocql.RequestErrAlreadyExists{}, Refused},
		{"credentials", live, &gocql.RequestErrCredentials{}, Refused},
		{"wrapped invalid", live, fmt.Errorf("apply: %w", &gocql.RequestErrInvalid{}), Refused},

		// Errors known by their code only.
		{"server error", live, codeErr(gocql.ErrCodeServer), Failed},
		{"protocol error", live, codeErr(gocql.ErrCodeProtocol), Refused},
		{"unknown code", live, codeErr(0x7777), Unavailable},

		// The driver's own failures.
		{"no response", live, gocql.ErrTimeoutNoResponse, Timeout},
		{"no connections", live, gocql.ErrNoConnections, Unavailable},
		{"connection closed", live, gocql.ErrConnectionClosed, Unavailable},
		{"gocql unavailable", live, gocql.ErrUnavailable, Unavailable},
		{"no streams", live, gocql.ErrNoStreams, Unavailable},
		{"no connections started", live, gocql.ErrNoConnectionsStarted, Unavailable},
		{"session closed", live, gocql.ErrSessionClosed, Unavailable},
		{"keyspace does not exist", live, gocql.ErrKeyspaceDoesNotExist, Refused},

		// The network.
		{"eof", live, io.EOF, Unavailable},
		{"unexpected eof", live, io.ErrUnexpectedEOF, Unavailable},
		{"refused", live, &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, Unavailable},
		{"reset", live, syscall.ECONNRESET, Unavailable},
		{"broken pipe", live, syscall.EPIPE, Unavailable},
		{"net closed", live, net.ErrClosed, Unavailable},
		{"net timeout", live, netTimeout{}, Timeout},
		{"untrusted certificate", live, x509.UnknownAuthorityError{}, Refused},

		// Untyped session-start errors: only the message tells.
		{"bad password at connect", live, errors.New("gocql: unable to create session: unable to connect to initial hosts: Provided username tidemark and/or password are incorrect"), Refused},
		{"no credentials given", live, errors.New("gocql: unable to create session: authentication required (using \"org.apache.cassandra.auth.PasswordAuthenticator\")"), Refused},
		{"tls at connect", live, errors.New("gocql: unable to create session: unable to connect to initial hosts: tls: failed to verify certificate: x509: certificate signed by unknown authority"), Refused},
		// Messages of Cassandra 5.0.8's TLS-only, PasswordAuthenticator
		// node (the secure region of the local environment) to gocql v2.1.2.
		{"unknown role at connect", live, errors.New("gocql: unable to create session: unable to connect to initial hosts: Provided username nobody and/or password are incorrect"), Refused},
		{"certificate for another address (a proxy dialed without ServerName)", live, errors.New("gocql: unable to create session: unable to connect to initial hosts: tls: failed to verify certificate: x509: certificate is valid for 127.0.0.71, not 127.0.0.1"), Refused},
		// A plaintext client on a TLS-only port: the node resets the
		// connection, which reads like a network failure. It is one, as
		// far as the text tells: an outage.
		{"plaintext client on a TLS port", live, errors.New("gocql: unable to create session: unable to connect to initial hosts: read tcp 127.0.0.1:48414->127.0.0.71:9042: read: connection reset by peer"), Unavailable},
		{"unreachable at connect", live, errors.New("gocql: unable to create session: unable to connect to initial hosts: dial tcp 127.0.0.9:9042: connect: connection refused"), Unavailable},
		{"anything else", live, errors.New("something unexpected"), Unavailable},

		// Contexts.
		{"caller canceled", ended, context.Canceled, Canceled},
		{"caller deadline", ended, fmt.Errorf("query: %w", context.DeadlineExceeded), Canceled},
		{"driver canceled, caller live", live, context.Canceled, Unavailable},
		{"driver deadline, caller live", live, context.DeadlineExceeded, Timeout},
		{"no context", nil, context.Canceled, Unavailable},
		{"caller canceled, region answered first", ended, &gocql.RequestErrInvalid{}, Refused},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Classify(c.ctx, c.err); got != c.want {
				t.Errorf("Classify(%v) = %v, want %v", c.err, got, c.want)
			}
		})
	}
}

func TestKindAvailability(t *testing.T) {
	for k := OK; k <= Failed; k++ {
		want := k == Unavailable || k == Timeout || k == Failed
		if got := k.Availability(); got != want {
			t.Errorf("%v.Availability() = %v, want %v", k, got, want)
		}
		answered := k == OK || k == NotFound || k == Refused || k == Failed
		if got := k.Answered(); got != answered {
			t.Errorf("%v.Answered() = %v, want %v", k, got, answered)
		}
		if k.String() == "unknown" {
			t.Errorf("kind %d has no name", int(k))
		}
	}
}
