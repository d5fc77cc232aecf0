// Package cluster opens one gocql session per region, restricted to that
// region's data center, so that a region's traffic never leaks to another
// region's nodes and a fault proxy in front of a region cannot be bypassed
// through peer discovery.
package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

// Region is everything needed to reach one region's Cassandra cluster.
type Region struct {
	// Name is the region's name in Tidemark (e.g. "us-east-1").
	Name string
	// ContactPoints are "host" or "host:port" addresses of the region's nodes.
	ContactPoints []string
	// LocalDC is the Cassandra data center of the region. Empty means "do not
	// filter by data center" (a single-DC cluster).
	LocalDC string
	// Username and Password enable PasswordAuthenticator when Username is set.
	Username, Password string
	// TLS, when non-nil, is used for every connection.
	TLS *tls.Config
	// AddressMap rewrites the "ip:port" a node announces to the "ip:port"
	// the client should dial (NAT, proxies). Nodes absent from the map are
	// dialed as announced.
	AddressMap map[string]string
	// ConnectTimeout bounds dialing and the initial handshake.
	ConnectTimeout time.Duration
	// Timeout bounds one request on one connection (the driver's own timeout).
	Timeout time.Duration
	// NumConns is the number of connections per host.
	NumConns int
	// Logger receives the driver's warnings and errors; nil discards them.
	Logger *slog.Logger
	// Configure, when set, adjusts the driver's cluster configuration after
	// Tidemark's own settings and before the session is created: observers
	// (tracing, per-query metrics), retry and speculative-execution
	// policies, compression, an authenticator. It must leave the host
	// selection policy and host filter alone: they keep the region's
	// traffic inside its data center.
	Configure func(*gocql.ClusterConfig)
	// Answered, when set, is called once a byte arrives on any connection
	// to the region's nodes (the region answers; see driver.Reach). It is
	// called at once when Configure sets a HostDialer, whose connections
	// Tidemark cannot watch.
	Answered func()
}

// Connect opens a session to r. The session's default consistency is
// LOCAL_QUORUM; callers set it per query.
func Connect(ctx context.Context, r Region, keyspace string) (*gocql.Session, error) {
	if len(r.ContactPoints) == 0 {
		return nil, fmt.Errorf("region %q: no contact points", r.Name)
	}
	c := gocql.NewCluster(r.ContactPoints...)
	c.Keyspace = keyspace
	c.Consistency = gocql.LocalQuorum
	c.ConnectTimeout = orDefault(r.ConnectTimeout, 5*time.Second)
	c.Timeout = orDefault(r.Timeout, 5*time.Second)
	c.WriteTimeout = c.Timeout
	if r.NumConns > 0 {
		c.NumConns = r.NumConns
	}
	c.ProtoVersion = 5
	c.ReconnectInterval = time.Second
	c.Logger = slogAdapter{log: r.Logger}
	c.RetryPolicy = &gocql.SimpleRetryPolicy{NumRetries: 0}
	if r.LocalDC != "" {
		// Replicas are shuffled so that one replica of a hot partition does
		// not take every request.
		c.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.DCAwareRoundRobinPolicy(r.LocalDC), gocql.ShuffleReplicas())
		c.HostFilter = gocql.DataCenterHostFilter(r.LocalDC)
	} else {
		c.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.RoundRobinHostPolicy(), gocql.ShuffleReplicas())
	}
	if r.Username != "" {
		c.Authenticator = gocql.PasswordAuthenticator{Username: r.Username, Password: r.Password}
	}
	if r.TLS != nil {
		c.SslOpts = &gocql.SslOptions{Config: r.TLS}
	}
	if len(r.AddressMap) > 0 {
		m, err := parseAddressMap(r.AddressMap)
		if err != nil {
			return nil, fmt.Errorf("region %q: %w", r.Name, err)
		}
		c.AddressTranslator = gocql.AddressTranslatorFunc(func(ip net.IP, port int) (net.IP, int) {
			if to, ok := m[net.JoinHostPort(ip.String(), strconv.Itoa(port))]; ok {
				return to.ip, to.port
			}
			return ip, port
		})
	}
	if r.Configure != nil {
		r.Configure(c)
	}
	if r.Answered != nil {
		watchAnswers(c, r.Answered)
	}
	type result struct {
		s   *gocql.Session
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := c.CreateSession()
		ch <- result{s, err}
	}()
	select {
	case r := <-ch:
		return r.s, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.s != nil {
				r.s.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

type hostPort struct {
	ip   net.IP
	port int
}

func parseAddressMap(in map[string]string) (map[string]hostPort, error) {
	out := make(map[string]hostPort, len(in))
	for from, to := range in {
		fh, fp, err := net.SplitHostPort(from)
		if err != nil {
			return nil, fmt.Errorf("address map key %q: %w", from, err)
		}
		th, tp, err := net.SplitHostPort(to)
		if err != nil {
			return nil, fmt.Errorf("address map value %q: %w", to, err)
		}
		fip, tip := net.ParseIP(fh), net.ParseIP(th)
		if fip == nil || tip == nil {
			return nil, errors.New("address map entries must be ip:port, not host names")
		}
		port, err := strconv.Atoi(tp)
		if err != nil {
			return nil, fmt.Errorf("address map value %q: %w", to, err)
		}
		out[net.JoinHostPort(fip.String(), fp)] = hostPort{tip, port}
	}
	return out, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// slogAdapter forwards the driver's warnings and errors to slog.
type slogAdapter struct{ log *slog.Logger }

func (a slogAdapter) emit(level slog.Level, msg string, fields []gocql.LogField) {
	if a.log == nil {
		return
	}
	args := make([]any, 0, 2*len(fields))
	for _, f := range fields {
		args = append(args, f.Name, f.Value)
	}
	a.log.Log(context.Background(), level, "gocql: "+msg, args...)
}

func (a slogAdapter) Error(msg string, fields ...gocql.LogField) {
	a.emit(slog.LevelError, msg, fields)
}
func (a slogAdapter) Warning(msg string, fields ...gocql.LogField) {
	a.emit(slog.LevelWarn, msg, fields)
}
func (a slogAdapter) Info(string, ...gocql.LogField)  {}
func (a slogAdapter) Debug(string, ...gocql.LogField) {}

// watchAnswers makes c's dialer call answered once when the first byte
// arrives on any of its connections. It wraps the configured Dialer, or
// the one gocql would make (its ConnectTimeout and SocketKeepalive); a
// HostDialer cannot be watched, so answered is called at once.
func watchAnswers(c *gocql.ClusterConfig, answered func()) {
	if c.HostDialer != nil {
		answered()
		return
	}
	d := c.Dialer
	if d == nil {
		nd := &net.Dialer{Timeout: c.ConnectTimeout}
		if c.SocketKeepalive > 0 {
			nd.KeepAlive = c.SocketKeepalive
		}
		d = nd
	}
	c.Dialer = &answerDialer{next: d, answered: sync.OnceFunc(answered)}
}

// answerDialer is a gocql.Dialer whose connections report their first
// byte.
type answerDialer struct {
	next     gocql.Dialer
	answered func()
	heard    atomic.Bool
}

func (d *answerDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := d.next.DialContext(ctx, network, addr)
	if err != nil || d.heard.Load() {
		return conn, err
	}
	return &answerConn{Conn: conn, d: d}, nil
}

// answerConn reports the first byte read to its dialer.
type answerConn struct {
	net.Conn
	d *answerDialer
}

func (c *answerConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.d.heard.Load() {
		c.d.heard.Store(true)
		c.d.answered()
	}
	return n, err
}
