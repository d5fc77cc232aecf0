package daemon

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"testing"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/internal/cluster"
)

// TestSessionsGetSaysWhyConnectFailed: a region that refuses the
// connection (bad credentials, an untrusted certificate) is reported as
// refused, with advice about credentials and TLS; one that does not answer
// as unreachable, with advice about contact points.
func TestSessionsGetSaysWhyConnectFailed(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		sentinel error
		advice   string
	}{
		{"bad password", errors.New("gocql: unable to create session: unable to discover protocol version: Provided username repaird and/or password are incorrect"),
			ErrRefused, "check username/password/TLS"},
		{"untrusted certificate", fmt.Errorf("gocql: unable to create session: control: unable to connect to initial hosts: %w", x509.UnknownAuthorityError{}),
			ErrRefused, "check username/password/TLS"},
		{"down", fmt.Errorf("gocql: unable to create session: %w", gocql.ErrNoConnectionsStarted),
			ErrUnreachable, "check contact_points and that the region is up"},
		{"connection refused", errors.New("dial tcp 127.0.0.1:1: connect: connection refused"),
			ErrUnreachable, "check contact_points and that the region is up"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSessions(testConfig(t), func(context.Context, cluster.Region, string) (*gocql.Session, error) {
				return nil, tc.err
			}, nil)
			_, err := s.Get(context.Background(), "a")
			if !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.advice) ||
				!strings.Contains(err.Error(), `region "a" (contact points 127.0.0.1:1)`) {
				t.Fatalf("Get = %v; want %v naming region a and advising %q", err, tc.sentinel, tc.advice)
			}
			other := ErrUnreachable
			if tc.sentinel == ErrUnreachable {
				other = ErrRefused
			}
			if errors.Is(err, other) {
				t.Errorf("Get = %v; also %v", err, other)
			}
			if st := s.State()["a"]; st.Connected || st.Error == "" {
				t.Errorf("State = %+v; want not connected, with the error", st)
			}
		})
	}
}
