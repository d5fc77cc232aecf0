package env

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// The secure mode's throwaway PKI: one CA made at every environment start,
// and one leaf certificate per server, all ECDSA P-256, written as PEM
// files under the environment's directory. The CA's private key is never
// written: nothing can be signed with it after the start.

// certValidity is how long the environment's certificates are valid. The
// start is backdated an hour, so that a clock a little behind does not
// see them as not yet valid.
const certValidity = 30 * 24 * time.Hour

// pki is a CA able to sign leaf certificates while the environment starts.
type pki struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

// newPKI makes a fresh self-signed CA.
func newPKI() (*pki, error) {
	key, tmpl, err := newKeyAndTemplate("tidemark-env CA " + time.Now().UTC().Format(time.RFC3339))
	if err != nil {
		return nil, err
	}
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid, tmpl.IsCA, tmpl.MaxPathLenZero = true, true, true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &pki{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// newKeyAndTemplate makes a P-256 key and the fields every certificate of
// the environment shares: a random serial, the subject, the validity.
func newKeyAndTemplate(commonName string) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	return key, &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{"tidemark test environment"}, CommonName: commonName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certValidity),
	}, nil
}

// leaf is a server's key and certificate as PEM: the key in PKCS #8
// ("PRIVATE KEY", unencrypted), the chain leaf first, then the CA.
type leaf struct {
	keyPEM, chainPEM []byte
}

// issue signs a server certificate for the given IP addresses (also its
// common name, the first of them) and DNS names.
func (p *pki) issue(ips []string, dnsNames ...string) (*leaf, error) {
	key, tmpl, err := newKeyAndTemplate(ips[0])
	if err != nil {
		return nil, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	tmpl.DNSNames = dnsNames
	for _, s := range ips {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("certificate for %q: not an IP address", s)
		}
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		return nil, err
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	chain := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	chain = append(chain, p.certPEM...)
	return &leaf{keyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), chainPEM: chain}, nil
}

// write writes the leaf as dir/base.pem (mode 0600): the private key, then
// the chain. Cassandra's PEMBasedSslContextFactory and Kafka's PEM
// keystore both read this one file as a keystore. It returns the path.
func (l *leaf) write(dir, base string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, base+".pem")
	return path, os.WriteFile(path, append(append([]byte{}, l.keyPEM...), l.chainPEM...), 0o600)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n.Add(n, big.NewInt(1))
}
