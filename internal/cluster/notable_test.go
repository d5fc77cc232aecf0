package cluster

import (
	"errors"
	"fmt"
	"testing"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

// requestError is a gocql.RequestError with a code and a message.
type requestError struct {
	code int
	msg  string
}

func (e requestError) Code() int       { return e.code }
func (e requestError) Message() string { return e.msg }
func (e requestError) Error() string   { return e.msg }

func TestIsNoTable(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{requestError{gocql.ErrCodeInvalid, "table tidemark_conflicts does not exist"}, true},
		{fmt.Errorf("list: %w", requestError{gocql.ErrCodeInvalid, "unconfigured table tidemark_conflicts"}), true},
		{NoTableError("ks", "tidemark_conflicts"), true},
		{requestError{gocql.ErrCodeInvalid, "table items does not exist"}, false},
		{requestError{gocql.ErrCodeUnavailable, "table tidemark_conflicts does not exist"}, false},
		{requestError{gocql.ErrCodeInvalid, "tidemark_conflicts: invalid column"}, false},
		{&gocql.RequestErrInvalid{}, false},
		{errors.New("table tidemark_conflicts does not exist"), false},
		{gocql.ErrNoConnections, false},
		{nil, false},
	} {
		if got := IsNoTable(c.err, "tidemark_conflicts"); got != c.want {
			t.Errorf("IsNoTable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
