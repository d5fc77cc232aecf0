// The http section: the listener, its bearer token and its TLS.

package config

import (
	"crypto/tls"
)

// HTTP configures the daemon's endpoints: the status page, /healthz,
// /readyz, /metrics, /status and the control API under /v1/.
type HTTP struct {
	// Listen is the host:port to listen on (default "127.0.0.1:9190":
	// this host only).
	Listen string `yaml:"listen"`
	// TokenFile or TokenEnv holds the bearer token that the control
	// API's mutating requests must carry (Authorization: Bearer …).
	// Without one, those requests are refused (403).
	TokenFile string `yaml:"token_file"`
	TokenEnv  string `yaml:"token_env"`
	// TLS, when set, serves HTTPS with this certificate and key.
	TLS *ServerTLS `yaml:"tls"`
}

// ServerTLS is the certificate the daemon's listener presents.
type ServerTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// MinTokenBytes is the shortest bearer token accepted.
const MinTokenBytes = 16

// Token returns the bearer token ("" when none is configured).
func (h *HTTP) Token() (string, error) {
	v, err := secretValue("http token", "", h.TokenFile, h.TokenEnv)
	if err != nil || v == "" {
		return "", err
	}
	if len(v) < MinTokenBytes {
		return "", invalid("http token must be at least %d characters (got %d)", MinTokenBytes, len(v))
	}
	return v, nil
}

// ServerTLSConfig returns the listener's TLS configuration, nil without
// http.tls.
func (h *HTTP) ServerTLSConfig() (*tls.Config, error) {
	if h.TLS == nil {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(h.TLS.CertFile, h.TLS.KeyFile)
	if err != nil {
		return nil, invalid("http.tls: %v", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}
