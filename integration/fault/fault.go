// Package fault puts an in-process toxiproxy in front of each node of a
// region, so that a test can make the region unreachable (black hole,
// refused connections, reset connections), slow, or reachable again.
//
// A client reaches a region only through its proxies: ContactPoints gives the
// proxies' addresses and AddressMap rewrites every address the nodes announce
// (system.local, system.peers) to its proxy, so the driver cannot bypass a
// proxy through peer discovery.
package fault

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

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
	name    string
	srv     *Server
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
	p := &Proxy{name: name, srv: s, addrMap: map[string]string{}}
	for _, up := range upstreams {
		n := s.seq.Add(1)
		pn := fmt.Sprintf("%s-%d", name, n)
		listen := fmt.Sprintf("127.0.%d.%d:0", 1+(n/250)%200, 1+n%250)
		tp := toxiproxy.NewProxy(s.api, pn, listen, up)
		if err := s.api.Collection.Add(tp, true); err != nil {
			p.Close()
			return nil, fmt.Errorf("fault proxy %s -> %s: %w", pn, up, err)
		}
		p.proxies = append(p.proxies, tp)
		p.addrMap[up] = tp.Listen
	}
	return p, nil
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

func (p *Proxy) addToxic(typ, stream string, attrs string) error {
	for _, tp := range p.proxies {
		js := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":1,"attributes":%s}`, typ+"_"+stream, typ, stream, attrs)
		if _, err := tp.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
			return fmt.Errorf("fault proxy %s: add %s toxic: %w", tp.Name, typ, err)
		}
	}
	return nil
}

// Blackhole makes the region unreachable the way a network partition does:
// connections stay open but nothing arrives, so requests time out.
func (p *Proxy) Blackhole() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.addToxic("timeout", "upstream", `{"timeout":0}`); err != nil {
		return err
	}
	return p.addToxic("timeout", "downstream", `{"timeout":0}`)
}

// Refuse makes the region refuse connections: open connections are closed
// and new ones are refused, as when a host is up but the server is down.
func (p *Proxy) Refuse() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, tp := range p.proxies {
		tp.Stop()
	}
	return nil
}

// ResetPeer resets every connection (TCP RST) after delay, and new ones too.
func (p *Proxy) ResetPeer(delay time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addToxic("reset_peer", "upstream", fmt.Sprintf(`{"timeout":%d}`, delay.Milliseconds()))
}

// Slow adds latency (each way) to every connection.
func (p *Proxy) Slow(latency time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addToxic("latency", "downstream", fmt.Sprintf(`{"latency":%d,"jitter":0}`, latency.Milliseconds()))
}

// Heal removes every fault. Connections that lived through a black hole or a
// reset are closed (their byte streams are no longer trustworthy) and the
// client reconnects on the same addresses.
func (p *Proxy) Heal() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	ctx := context.Background()
	for _, tp := range p.proxies {
		tp.Toxics.ResetToxics(ctx)
		tp.Stop()
		if err := tp.Start(); err != nil {
			return fmt.Errorf("fault proxy %s: restart on %s: %w", tp.Name, tp.Listen, err)
		}
	}
	return nil
}

// Close stops and removes the proxies.
func (p *Proxy) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	for _, tp := range p.proxies {
		_ = p.srv.api.Collection.Remove(tp.Name)
	}
}
