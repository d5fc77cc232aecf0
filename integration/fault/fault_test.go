package fault

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// echoServer echoes lines; with sink set it accepts and never reads.
func echoServer(t *testing.T, sink bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			if sink {
				continue // never read: the proxy's writes back up
			}
			go func() { _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func front(t *testing.T, upstream string) (*Proxy, string) {
	t.Helper()
	p, err := NewServer().Front("t", []string{upstream})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	addr := p.AddressMap()[upstream]
	if addr == "" || p.ContactPoints()[0] != addr {
		t.Fatalf("address map %v, contact points %v", p.AddressMap(), p.ContactPoints())
	}
	return p, addr
}

// roundTrip sends a line and waits up to wait for its echo.
func roundTrip(c net.Conn, r *bufio.Reader, line string, wait time.Duration) error {
	if err := c.SetDeadline(time.Now().Add(wait)); err != nil {
		return err
	}
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return err
	}
	got, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(got) != line {
		return errors.New("echo " + got)
	}
	return nil
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestBlackholeKeepsConnectionsOpenAndHealReconnects(t *testing.T) {
	pp, paddr := front(t, echoServer(t, false))
	c, r := dial(t, paddr)
	if err := roundTrip(c, r, "healthy", 2*time.Second); err != nil {
		t.Fatalf("through a healthy proxy: %v", err)
	}
	if err := pp.Blackhole(); err != nil {
		t.Fatal(err)
	}
	// The live connection stays open and nothing comes back: a timeout,
	// not a closed connection.
	if err := roundTrip(c, r, "cut", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("through a black hole: %v, want a timeout", err)
	}
	// New connections are black-holed too.
	c2, r2 := dial(t, paddr)
	if err := roundTrip(c2, r2, "cut-new", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("new connection through a black hole: %v, want a timeout", err)
	}
	if err := pp.Heal(); err != nil {
		t.Fatal(err)
	}
	// Connections that lived through the black hole are closed...
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := r.ReadString('\n'); err == nil || isTimeout(err) {
		t.Fatalf("old connection after heal: %v, want closed", err)
	}
	// ...and a new one on the same address works.
	c3, r3 := dial(t, paddr)
	if err := roundTrip(c3, r3, "healed", 2*time.Second); err != nil {
		t.Fatalf("after heal: %v", err)
	}
}

func TestRefuseAndResetPeer(t *testing.T) {
	p, addr := front(t, echoServer(t, false))
	if err := p.Refuse(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("dial succeeded through a refusing proxy")
	}
	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}
	c, r := dial(t, addr)
	if err := roundTrip(c, r, "back", 2*time.Second); err != nil {
		t.Fatalf("after heal from refuse: %v", err)
	}
	if err := p.ResetPeer(0); err != nil {
		t.Fatal(err)
	}
	c2, r2 := dial(t, addr)
	err := roundTrip(c2, r2, "reset", 2*time.Second)
	if err == nil || isTimeout(err) {
		t.Fatalf("through reset_peer: %v, want a reset connection", err)
	}
	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}
	c3, r3 := dial(t, addr)
	if err := roundTrip(c3, r3, "healed", 2*time.Second); err != nil {
		t.Fatalf("after heal from reset: %v", err)
	}
}

func TestSlowDelaysReplies(t *testing.T) {
	p, addr := front(t, echoServer(t, false))
	c, r := dial(t, addr)
	if err := p.Slow(300 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := roundTrip(c, r, "slow", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 300*time.Millisecond || took > 3*time.Second {
		t.Fatalf("round trip took %s with 300ms latency", took)
	}
}

// TestFaultsNeverWedgeOnABackedUpPeer: the upstream stops reading while a
// client floods the proxy, so toxiproxy's link is stuck writing. Changing
// faults on toxiproxy's own toxics can wedge there; here every operation
// returns promptly.
func TestFaultsNeverWedgeOnABackedUpPeer(t *testing.T) {
	p, addr := front(t, echoServer(t, true))
	c, _ := dial(t, addr)
	flooded := make(chan struct{})
	go func() {
		defer close(flooded)
		buf := make([]byte, 64<<10)
		_ = c.SetWriteDeadline(time.Now().Add(3 * time.Second))
		for {
			if _, err := c.Write(buf); err != nil {
				return // the kernel buffers are full: the link is stuck
			}
		}
	}()
	<-flooded
	for _, op := range []struct {
		name string
		f    func() error
	}{
		{"blackhole", p.Blackhole},
		{"slow", func() error { return p.Slow(time.Millisecond) }},
		{"heal", p.Heal},
		{"reset", func() error { return p.ResetPeer(0) }},
		{"refuse", p.Refuse},
		{"heal again", p.Heal},
	} {
		start := time.Now()
		if err := op.f(); err != nil {
			t.Fatalf("%s: %v", op.name, err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("%s took %s", op.name, took)
		}
	}
	done := make(chan struct{})
	go func() { p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return within 5s")
	}
}
