package fleet_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// A fleet reaches Redis over TLS (verifying the server's certificate
// against the CA bundle that SSL_CERT_FILE names, as Go does for the system
// store) as an ACL user whose password comes from the environment; the
// default user is off. One proxy's fill is the other's shared hit.
func TestFleetOverTLSWithACL(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := selfSigned(t, dir)
	tlsPort := testkit.FreePort(t)
	testkit.StartRedis(t, testkit.RedisArgs(
		"--tls-port", strconv.Itoa(tlsPort), "--tls-cert-file", cert, "--tls-key-file", key,
		"--tls-ca-cert-file", ca, "--tls-auth-clients", "no",
		"--user", "default", "off", "--user", "fleet", "on", ">s3cret", "~edgecache:*", "&edgecache:*", "+@all"))

	o := newOrigin(t, 0)
	ps := startFleet(t, 2, []string{"127.0.0.1:" + strconv.Itoa(tlsPort)}, fleetOptions{
		Origin: o.Addr(),
		Shared: "timeout 1s\n\t\t\ttls on\n\t\t\tusername fleet\n\t\t\tpassword {env.EDGECACHE_REDIS_PASSWORD}",
		Env:    []string{"SSL_CERT_FILE=" + ca, "EDGECACHE_REDIS_PASSWORD=s3cret"},
	})
	const path = "/webgateway/render_thumbnail/7/"
	if r := ps[0].mustGet(t, path); r.cache != "MISS" {
		t.Fatalf("first request on p1: %s, want MISS", r.cache)
	}
	// The store to Redis follows the answer: wait for it, then p2 hits it.
	testkit.Eventually(t, 5*time.Second, testkit.Holds("p1 stored the entry in Redis", func() bool {
		return ps[0].metric(t, "edgecache_shared_stores_total") > 0
	}))
	r := ps[1].mustGet(t, path)
	if r.cache != "HIT" || r.tier != "shared" || string(r.body) != string(o.body(path)) {
		t.Fatalf("p2: %s from %q, body %.40q; want a HIT from the shared tier", r.cache, r.tier, r.body)
	}
	if n := o.RequestsFor(path); n != 1 {
		t.Errorf("%d origin requests, want 1", n)
	}
}

// selfSigned writes a CA certificate and a server certificate for
// 127.0.0.1 signed by it, and returns the CA's, the server's and its key's
// paths.
func selfSigned(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "edgecache test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caTmpl, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server-key.pem", "EC PRIVATE KEY", keyDER)
}
