package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

// Kind is what a gocql error means to Tidemark. Classify is the only place
// that decides it; the store (hint or not, breaker or not), the hint
// applier (retry, pause, or dead-letter), repair (retry a segment or give
// up) and repaird (keep reconnecting or stop) all act on the Kind.
type Kind int

const (
	// OK is no error.
	OK Kind = iota
	// NotFound: the query found no row (gocql.ErrNotFound).
	NotFound
	// Unavailable: the region did not take the request and may later: no
	// connection, too few live replicas, an overloaded or bootstrapping
	// coordinator. An availability failure.
	Unavailable
	// Timeout: the region did not answer in time (a coordinator's read or
	// write timeout, or no response on the connection). An availability
	// failure; a write that timed out may have been applied.
	Timeout
	// Refused: the region answered and will not take the request, and
	// retrying the same request cannot help: an invalid or unknown table,
	// a syntax error, no permission, bad credentials, an untrusted TLS
	// certificate.
	Refused
	// Canceled: the request's own context ended (the caller canceled it or
	// its deadline passed). It says nothing about the region.
	Canceled
	// Failed: the coordinator answered that the request failed on its side
	// or on the replicas, in a way that may heal (a replica's read or write
	// failure, an internal server error, a full CDC space, a statement the
	// node forgot). An availability failure — the write is hinted, the
	// breaker counts it — but the region did answer: a hint replayer that
	// probes the region sees it reachable, so one hint that keeps failing
	// this way is given up after its attempts instead of pausing replay.
	Failed
)

// Availability reports whether k is an availability failure (Unavailable,
// Timeout or Failed): the kind of failure circuit breakers count and that
// turns a write into a hint.
func (k Kind) Availability() bool { return k == Unavailable || k == Timeout || k == Failed }

// Answered reports whether the region's coordinator answered the request
// (OK, NotFound, Refused, Failed), as opposed to not answering in time or at
// all (Unavailable, Timeout) or the request's own context ending. The hint
// replayer pauses while its region does not answer.
func (k Kind) Answered() bool { return k == OK || k == NotFound || k == Refused || k == Failed }

// String returns the kind's name, as metrics label it.
func (k Kind) String() string {
	switch k {
	case OK:
		return "ok"
	case NotFound:
		return "not_found"
	case Unavailable:
		return "unavailable"
	case Timeout:
		return "timeout"
	case Refused:
		return "refused"
	case Canceled:
		return "canceled"
	case Failed:
		return "failed"
	}
	return "unknown"
}

// Classify says what err, returned by a gocql request (or by Connect) that
// ran under ctx, means. ctx tells the caller's cancellation apart from the
// driver's: a context error while ctx has ended is Canceled, while ctx is
// still live it came from the driver (a connection closed under the
// request) and is an availability failure. ctx may be nil when the request
// had no context of its own.
//
// Errors the driver does not type — a session that failed to start wraps
// its cause as text — are classified by their message: bad credentials and
// TLS verification failures are Refused (waiting cannot fix them),
// everything else from a connection attempt is Unavailable. An error this
// function does not recognise is Unavailable: treating an unknown failure
// as an outage hints the write and retries, and never loses it.
func Classify(ctx context.Context, err error) Kind {
	if err == nil {
		return OK
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if ctx != nil && ctx.Err() != nil {
			return Canceled
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return Timeout
		}
		return Unavailable
	}
	if errors.Is(err, gocql.ErrNotFound) {
		return NotFound
	}
	var reqErr gocql.RequestError
	if errors.As(err, &reqErr) {
		return byCode(codeOf(reqErr))
	}
	switch {
	case errors.Is(err, gocql.ErrTimeoutNoResponse):
		return Timeout
	case errors.Is(err, gocql.ErrKeyspaceDoesNotExist), errors.Is(err, gocql.ErrNoKeyspace),
		errors.Is(err, gocql.ErrUnsupported),
		errors.Is(err, gocql.ErrTooManyStmts), errors.Is(err, gocql.ErrUseStmt),
		errors.Is(err, gocql.ErrNoHosts), errors.Is(err, gocql.ErrFrameTooBig):
		return Refused
	}
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var tlsAlert tls.AlertError
	var tlsRecord tls.RecordHeaderError
	if errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		errors.As(err, &tlsAlert) || errors.As(err, &tlsRecord) {
		return Refused
	}
	switch {
	case errors.Is(err, gocql.ErrNoConnections), errors.Is(err, gocql.ErrConnectionClosed),
		errors.Is(err, gocql.ErrUnavailable), errors.Is(err, gocql.ErrNoStreams),
		errors.Is(err, gocql.ErrNoConnectionsStarted), errors.Is(err, gocql.ErrSessionClosed),
		errors.Is(err, gocql.ErrNoMetadata),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, net.ErrClosed):
		return Unavailable
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		if netErr.Timeout() {
			return Timeout
		}
		return Unavailable
	}
	if refusedText(err.Error()) {
		return Refused
	}
	return Unavailable
}

// refusedMessages are what gocql's untyped session-start errors say when
// the cause is a refusal: the driver formats its causes into the message
// (gocql: unable to create session: …), so the text is all there is.
var refusedMessages = []string{
	"authentication failed",
	"provided username", // Cassandra: "Provided username x and/or password are incorrect"
	"and/or password are incorrect",
	"authentication required",  // the cluster wants credentials and none were given
	"unexpected authenticator", // gocql: an authenticator the client does not allow
	"x509:",                    // a certificate that does not verify
	"tls: ",                    // a TLS handshake the server refused
	"first record does not look like a tls handshake",
}

func refusedText(msg string) bool {
	msg = strings.ToLower(msg)
	for _, m := range refusedMessages {
		if strings.Contains(msg, m) {
			return true
		}
	}
	return false
}

// codeOf returns the protocol error code of a request error: from its type
// for the typed errors gocql returns, from Code() for the rest.
func codeOf(e gocql.RequestError) int {
	switch e.(type) {
	case *gocql.RequestErrUnavailable:
		return gocql.ErrCodeUnavailable
	case *gocql.RequestErrOverloaded:
		return gocql.ErrCodeOverloaded
	case *gocql.RequestErrBootstrapping:
		return gocql.ErrCodeBootstrapping
	case *gocql.RequestErrTruncate:
		return gocql.ErrCodeTruncate
	case *gocql.RequestErrWriteTimeout:
		return gocql.ErrCodeWriteTimeout
	case *gocql.RequestErrReadTimeout:
		return gocql.ErrCodeReadTimeout
	case *gocql.RequestErrReadFailure:
		return gocql.ErrCodeReadFailure
	case *gocql.RequestErrFunctionFailure:
		return gocql.ErrCodeFunctionFailure
	case *gocql.RequestErrWriteFailure:
		return gocql.ErrCodeWriteFailure
	case *gocql.RequestErrCDCWriteFailure:
		return gocql.ErrCodeCDCWriteFailure
	case *gocql.RequestErrCASWriteUnknown:
		return gocql.ErrCodeCASWriteUnknown
	case *gocql.RequestErrSyntax:
		return gocql.ErrCodeSyntax
	case *gocql.RequestErrUnauthorized:
		return gocql.ErrCodeUnauthorized
	case *gocql.RequestErrInvalid:
		return gocql.ErrCodeInvalid
	case *gocql.RequestErrConfig:
		return gocql.ErrCodeConfig
	case *gocql.RequestErrAlreadyExists:
		return gocql.ErrCodeAlreadyExists
	case *gocql.RequestErrUnprepared:
		return gocql.ErrCodeUnprepared
	case *gocql.RequestErrCredentials:
		return gocql.ErrCodeCredentials
	}
	return e.Code()
}

// byCode is the decision per protocol error code.
func byCode(code int) Kind {
	switch code {
	case gocql.ErrCodeWriteTimeout, gocql.ErrCodeReadTimeout, gocql.ErrCodeCASWriteUnknown:
		// The coordinator gave up waiting for replicas; the write may
		// have been applied (CAS: its outcome is unknown).
		return Timeout
	case gocql.ErrCodeUnavailable, gocql.ErrCodeOverloaded, gocql.ErrCodeBootstrapping:
		// Too few replicas alive, or a coordinator that cannot serve.
		return Unavailable
	case gocql.ErrCodeServer, gocql.ErrCodeTruncate, gocql.ErrCodeReadFailure, gocql.ErrCodeWriteFailure,
		gocql.ErrCodeCDCWriteFailure, gocql.ErrCodeUnprepared:
		// Replicas or the coordinator failed (a replica's write or read
		// failure, an internal error, a full CDC space, a statement the
		// node forgot): the region may take the same request later. A
		// write that failed this way is hinted and a hint that keeps
		// failing is retried, never silently dropped.
		return Failed
	case gocql.ErrCodeProtocol, gocql.ErrCodeCredentials, gocql.ErrCodeSyntax, gocql.ErrCodeUnauthorized,
		gocql.ErrCodeInvalid, gocql.ErrCodeConfig, gocql.ErrCodeAlreadyExists, gocql.ErrCodeFunctionFailure:
		// The region answered and refuses the statement itself.
		return Refused
	}
	return Unavailable
}
