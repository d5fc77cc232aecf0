package cluster

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

// listen accepts connections and, when speak is set, writes one byte to
// each; otherwise it holds them open in silence.
func listen(t *testing.T, speak bool) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
			if speak {
				_, _ = c.Write([]byte{0x84})
			}
		}
	}()
	return l.Addr().String()
}

// TestWatchAnswers: the watched dialer reports a region that sends a byte
// and not one that accepts connections and stays silent; a HostDialer,
// which Tidemark cannot watch, counts as answered at once.
func TestWatchAnswers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		speak bool
	}{{"silent", false}, {"answers", true}} {
		t.Run(tc.name, func(t *testing.T) {
			addr := listen(t, tc.speak)
			var heard atomic.Int32
			c := gocql.NewCluster(addr)
			c.ConnectTimeout = time.Second
			watchAnswers(c, func() { heard.Add(1) })
			conn, err := c.Dialer.DialContext(context.Background(), "tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			buf := make([]byte, 8)
			_, _ = conn.Read(buf)
			_, _ = conn.Read(buf) // a second byte, or none, changes nothing
			want := int32(0)
			if tc.speak {
				want = 1
			}
			if got := heard.Load(); got != want {
				t.Fatalf("answered called %d times, want %d", got, want)
			}
		})
	}
	t.Run("host dialer", func(t *testing.T) {
		c := gocql.NewCluster("127.0.0.1")
		c.HostDialer = hostDialerFunc(nil)
		var heard atomic.Int32
		watchAnswers(c, func() { heard.Add(1) })
		if heard.Load() != 1 {
			t.Fatal("a HostDialer was not counted as answered")
		}
	})
}

type hostDialerFunc func(ctx context.Context, host *gocql.HostInfo) (*gocql.DialedHost, error)

func (f hostDialerFunc) DialHost(ctx context.Context, host *gocql.HostInfo) (*gocql.DialedHost, error) {
	return f(ctx, host)
}
