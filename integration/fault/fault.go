// Package fault puts an in-process toxiproxy in front of each node of a
// region, so that a test can make the region unreachable (black hole,
// refused connections, reset connections), slow, or reachable again.
//
// A client reaches a region only through its proxies: ContactPoints gives the
// proxies' addresses and AddressMap rewrites every address the nodes announce
// (system.local, system.peers) to its proxy, so the driver cannot bypass a
// proxy through peer discovery.
//
// Toxiproxy can wedge when a toxic is added to or removed from connections
// that carry traffic (a link whose peer stops reading cannot be interrupted,
// and the toxic collection's lock is held meanwhile; upstream issues
// Shopify/toxiproxy#558 and #412). A wedged proxy blocks its accept loop, so
// stopping it blocks too. This package therefore never changes a live
// connection's toxic chain:
//
//   - every proxy is created with one toxic of this package, a switch, whose
//     mode (pass, drop, delay) is an atomic value read per chunk: Blackhole
//     and Slow flip it, and live connections feel it at once;
//   - ResetPeer and Heal replace the proxy by a fresh one on the same address
//     whose chain is built before it accepts anything (the old proxy's
//     connections are closed);
//   - proxies are not registered in toxiproxy's shared collection, whose lock
//     would let one wedged proxy stall every test's proxies;
//   - every toxiproxy call that could block runs under a deadline and returns
//     an error naming the proxy instead of hanging the test.
package fault

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/stream"
	"github.com/Shopify/toxiproxy/v2/toxics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// opTimeout bounds each toxiproxy call (start, stop, building a chain).
const opTimeout = 20 * time.Second

// switchType is the toxic type this package registers with toxiproxy.
const switchType = "tidemark_switch"

func init() {
	toxics.Register(switchType, new(switchToxic))
}

// Server is one in-process toxiproxy; make one per test process.
type Server struct {
	api *toxiproxy.ApiServer
	seq atomic.Int64
}

// NewServer returns an in-process toxiproxy with no HTTP API (tests drive it
// directly).
func NewServer() *Server {
	return &Server{api: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())}
}

// Proxy is a set of proxies in front of one region's nodes.
type Proxy struct {
	name  string
	srv   *Server
	state *switchState // shared by every link of every proxy of the set

	mu      sync.Mutex
	proxies []*toxiproxy.Proxy
	// upstream "ip:port" -> proxy "ip:port"
	addrMap map[string]string
	closed  bool
}

// Front creates and starts proxies in front of the given upstream "ip:port"
// addresses. name labels the proxies. Each proxy listens on an ephemeral port
// of its own loopback address in 127.0.1.0/24 … 127.0.200.0/24: the driver
// identifies hosts by address, and token-aware routing would conflate
// several proxies sharing one IP.
func (s *Server) Front(name string, upstreams []string) (*Proxy, error) {
	p := &Proxy{name: name, srv: s, state: &switchState{}, addrMap: map[string]string{}}
	for _, up := range upstreams {
		n := s.seq.Add(1)
		pn := fmt.Sprintf("%s-%d", name, n)
		listen := fmt.Sprintf("127.0.%d.%d:0", 1+(n/250)%200, 1+n%250)
		tp, err := p.start(pn, listen, up, "")
		if err != nil {
			p.Close()
			return nil, err
		}
		p.proxies = append(p.proxies, tp)
		p.addrMap[up] = tp.Listen
	}
	return p, nil
}

// start builds a proxy whose chain is the switch (and, if extra is not
// empty, one more toxic given as JSON) and starts it: the chain is complete
// before the first connection is accepted.
func (p *Proxy) start(name, listen, upstream, extra string) (*toxiproxy.Proxy, error) {
	tp := toxiproxy.NewProxy(p.srv.api, name, listen, upstream)
	for _, dir := range []string{"upstream", "downstream"} {
		w, err := tp.Toxics.AddToxicJson(strings.NewReader(fmt.Sprintf(`{"name":"switch_%s","type":%q,"stream":%q}`, dir, switchType, dir)))
		if err != nil {
			return nil, fmt.Errorf("fault proxy %s: switch toxic: %w", name, err)
		}
		sw := w.Toxic.(*switchToxic)
		sw.downstream = dir == "downstream"
		sw.state.Store(p.state)
	}
	if extra != "" {
		if _, err := tp.Toxics.AddToxicJson(strings.NewReader(extra)); err != nil {
			return nil, fmt.Errorf("fault proxy %s: toxic: %w", name, err)
		}
	}
	if err := bounded(name, "start", tp.Start); err != nil {
		return nil, err
	}
	return tp, nil
}

// bounded runs f, giving up (and leaving it running) after opTimeout.
func bounded(proxy, what string, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("fault proxy %s: %s: %w", proxy, what, err)
		}
		return nil
	case <-time.After(opTimeout):
		return fmt.Errorf("fault proxy %s: toxiproxy did not %s within %s", proxy, what, opTimeout)
	}
}

func stopProxy(tp *toxiproxy.Proxy) error {
	return bounded(tp.Name, "stop", func() error { tp.Stop(); return nil })
}

// ContactPoints are the proxies' "ip:port" addresses, in upstream order.
func (p *Proxy) ContactPoints() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.proxies))
	for _, tp := range p.proxies {
		out = append(out, tp.Listen)
	}
	return out
}

// AddressMap maps each upstream node "ip:port" to its proxy's "ip:port", for
// the driver's address translation.
func (p *Proxy) AddressMap() map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := make(map[string]string, len(p.addrMap))
	for k, v := range p.addrMap {
		m[k] = v
	}
	return m
}

// Blackhole makes the region unreachable the way a network partition does:
// connections stay open but nothing arrives, so requests time out.
func (p *Proxy) Blackhole() error {
	p.state.set(modeDrop, 0)
	return nil
}

// Refuse makes the region refuse connections: open connections are closed
// and new ones are refused, as when a host is up but the server is down.
func (p *Proxy) Refuse() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var first error
	for _, tp := range p.proxies {
		if err := stopProxy(tp); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// ResetPeer resets every connection (TCP RST) after delay, and new ones too.
// Open connections are closed first.
func (p *Proxy) ResetPeer(delay time.Duration) error {
	return p.replace(modePass, fmt.Sprintf(`{"name":"reset","type":"reset_peer","stream":"upstream","attributes":{"timeout":%d}}`, delay.Milliseconds()))
}

// Slow delays every chunk of data the region sends back by latency.
func (p *Proxy) Slow(latency time.Duration) error {
	p.state.set(modeDelay, latency)
	return nil
}

// Heal removes every fault. Connections that lived through a fault are
// closed (their byte streams are no longer trustworthy) and the client
// reconnects on the same addresses.
func (p *Proxy) Heal() error {
	return p.replace(modePass, "")
}

// replace stops every proxy of the set (their connections close), sets the
// switch to mode, and starts a fresh proxy on each address with the switch
// and extra (a toxic as JSON, or "") in its chain.
func (p *Proxy) replace(mode int32, extra string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("fault proxy %s: closed", p.name)
	}
	for _, tp := range p.proxies {
		if err := stopProxy(tp); err != nil {
			return err
		}
	}
	p.state.set(mode, 0)
	for i, tp := range p.proxies {
		fresh, err := p.start(tp.Name, tp.Listen, tp.Upstream, extra)
		if err != nil {
			return err
		}
		p.proxies[i] = fresh
	}
	return nil
}

// Close stops the proxies (each under a deadline; a proxy that does not
// stop in time is left behind, and the test process ends it).
func (p *Proxy) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	p.state.set(modeDrop, 0) // whatever lingers carries nothing
	for _, tp := range p.proxies {
		_ = stopProxy(tp)
	}
}

// The switch's modes.
const (
	modePass int32 = iota
	modeDrop
	modeDelay
)

// switchState is a set of proxies' current fault, read by every chunk.
type switchState struct {
	mode  atomic.Int32
	delay atomic.Int64 // nanoseconds, for modeDelay
}

func (s *switchState) set(mode int32, delay time.Duration) {
	s.delay.Store(int64(delay))
	s.mode.Store(mode)
}

// switchToxic passes, drops or delays each chunk as its state says. It is
// never added to or removed from a live connection, so toxiproxy never
// interrupts it; it still returns on an interrupt, as a toxic must.
type switchToxic struct {
	state      atomic.Pointer[switchState]
	downstream bool // delays apply to what the region sends back
}

// GetBufferSize lets chunks queue while one is delayed (as toxiproxy's
// latency toxic does), so a delay does not also throttle throughput.
func (t *switchToxic) GetBufferSize() int { return 1024 }

// Pipe implements toxics.Toxic.
func (t *switchToxic) Pipe(stub *toxics.ToxicStub) {
	st := t.state.Load() // set by Proxy.start before the proxy accepts anything
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			switch st.mode.Load() {
			case modeDrop:
				continue
			case modeDelay:
				if !t.downstream {
					break
				}
				if d := time.Duration(st.delay.Load()) - time.Since(c.Timestamp); d > 0 {
					select {
					case <-time.After(d):
					case <-stub.Interrupt:
						return
					}
				}
			}
			if !forward(stub, c) {
				return
			}
		}
	}
}

// forward passes c on; false if the stub was interrupted first.
func forward(stub *toxics.ToxicStub, c *stream.StreamChunk) bool {
	select {
	case stub.Output <- c:
		return true
	case <-stub.Interrupt:
		return false
	}
}
