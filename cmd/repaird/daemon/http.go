package daemon

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler returns the daemon's HTTP endpoints:
//
//	/         the status page (HTML, embedded)
//	/healthz  200 while the process runs
//	/readyz   200 once every region is connected, 503 (with the reasons) otherwise or while stopping
//	/metrics  the daemon's registry (Prometheus text format)
//	/status   JSON: regions, hint replay, and per namespace the current and last run, warnings
//	/v1/…     the control API (api.go; docs/operations.md lists every path)
func (d *Daemon) Handler() http.Handler {
	mux := http.NewServeMux()
	d.routeAPI(mux)
	d.routePage(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		s := d.Status()
		var reasons []string
		if s.Stopping {
			reasons = append(reasons, "stopping")
		}
		for name, r := range s.Regions {
			if !r.Connected {
				msg := "region " + name + " not connected"
				if r.Error != "" {
					msg += ": " + r.Error
				}
				reasons = append(reasons, msg)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		if len(reasons) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ready": len(reasons) == 0, "reasons": reasons})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{Registry: d.reg}))
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(d.Status())
	})
	return mux
}

// Bounds of the HTTP server: how long a request's headers may take, and how
// long shutdown waits for requests in flight (well inside
// DefaultShutdownGrace).
const (
	httpReadHeaderTimeout = 10 * time.Second
	httpDrainTimeout      = 5 * time.Second
)

type httpServer struct {
	ln  net.Listener
	srv *http.Server
	tls bool
}

func (d *Daemon) listen() (*httpServer, error) {
	tc, err := d.cfg.HTTP.ServerTLSConfig()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", d.cfg.HTTP.Listen)
	if err != nil {
		return nil, fmt.Errorf("http.listen %s: %w", d.cfg.HTTP.Listen, err)
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	return &httpServer{ln: ln, tls: tc != nil, srv: &http.Server{Handler: d.Handler(), ReadHeaderTimeout: httpReadHeaderTimeout,
		ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)}}, nil
}

// loopback reports whether addr (host:port) is on this host only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (h *httpServer) addr() string { return h.ln.Addr().String() }

// run serves until ctx ends, then shuts down gracefully (httpDrainTimeout
// at most).
func (h *httpServer) run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- h.srv.Serve(h.ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), httpDrainTimeout)
	defer cancel()
	err := h.srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
