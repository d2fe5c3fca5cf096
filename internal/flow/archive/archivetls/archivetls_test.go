package archivetls

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/planetkube/planetkube/internal/testing/testenv"
)

var t0 = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

// cas decodes a bundle.
func cas(t *testing.T, bundle []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for rest := bundle; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return out
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

// verifies says whether the Secret's certificate verifies for ServerName
// against its bundle at now.
func verifies(t *testing.T, data map[string][]byte, now time.Time) bool {
	t.Helper()
	pair, err := tls.X509KeyPair(data[KeyCert], data[KeyCertPK])
	if err != nil {
		t.Fatalf("the certificate and key: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(data[KeyCA])
	_, err = pair.Leaf.Verify(x509.VerifyOptions{DNSName: ServerName, Roots: roots, CurrentTime: now})
	return err == nil
}

// TestRenew: made from nothing; kept while good; the certificate issued
// anew by the same CA near its end; the CA replaced near its end, the old
// one still trusted; a Secret that does not check out replaced.
func TestRenew(t *testing.T) {
	data, changed, err := renew(nil, t0)
	if err != nil || !changed || !verifies(t, data, t0) {
		t.Fatalf("from nothing: changed %v, %v", changed, err)
	}
	if again, changed, _ := renew(data, t0.Add(24*time.Hour)); changed || !bytes.Equal(again[KeyCert], data[KeyCert]) {
		t.Error("a good Secret was changed")
	}

	// The certificate near its end: a new one, the same CA.
	late := t0.Add(ServerLifetime - RenewBefore + time.Hour)
	renewed, changed, err := renew(data, late)
	if err != nil || !changed || bytes.Equal(renewed[KeyCert], data[KeyCert]) || !bytes.Equal(renewed[KeyCA], data[KeyCA]) || !verifies(t, renewed, late) {
		t.Errorf("certificate near its end: changed %v, %v; want a new certificate of the same CA", changed, err)
	}

	// The CA near its end: a new CA first in the bundle, the old one after.
	caLate := t0.Add(CALifetime - RenewBefore + time.Hour)
	renewed, changed, err = renew(renewed, caLate)
	if err != nil || !changed || !verifies(t, renewed, caLate) {
		t.Fatalf("CA near its end: changed %v, %v", changed, err)
	}
	old, now := cas(t, data[KeyCA]), cas(t, renewed[KeyCA])
	if len(now) != 2 || !now[1].Equal(old[0]) || now[0].Equal(old[0]) {
		t.Errorf("CA near its end: bundle of %d, want the new CA then the old", len(now))
	}
	// Once the old CA has expired, it is dropped at the next renewal.
	after := old[0].NotAfter.Add(ServerLifetime - RenewBefore + time.Hour)
	if renewed, _, err = renew(renewed, after); err != nil || len(cas(t, renewed[KeyCA])) != 1 {
		t.Errorf("after the old CA expired: %d CAs, %v", len(cas(t, renewed[KeyCA])), err)
	}

	for name, mangle := range map[string]func(map[string][]byte){
		"garbage certificate": func(d map[string][]byte) { d[KeyCert] = []byte("not a certificate") },
		"another CA's key":    func(d map[string][]byte) { other, _, _ := renew(nil, t0); d[KeyCAKey] = other[KeyCAKey] },
		"another CA's certificate": func(d map[string][]byte) {
			other, _, _ := renew(nil, t0)
			d[KeyCert], d[KeyCertPK] = other[KeyCert], other[KeyCertPK]
		},
		"no CA": func(d map[string][]byte) { delete(d, KeyCA) },
	} {
		d := map[string][]byte{}
		for k, v := range data {
			d[k] = v
		}
		mangle(d)
		got, changed, err := renew(d, t0)
		if err != nil || !changed || !verifies(t, got, t0) {
			t.Errorf("%s: changed %v, %v; want a good Secret again", name, changed, err)
		}
	}
}

// TestEnsureAndHandshake: Ensure makes the Secret in a real API server and
// keeps it while good; an agent serving its certificate is trusted by the
// archiver's configuration and by no other, and refuses handshakes until
// the certificate is there.
func TestEnsureAndHandshake(t *testing.T) {
	env := testenv.Start(t, filepath.Join("..", "..", "..", ".."))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := Ensure(ctx, env.Client, "default", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s := &corev1.Secret{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: SecretName}, s); err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(ctx, env.Client, "default", time.Now()); err != nil {
		t.Fatal(err)
	}
	again := &corev1.Secret{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(s), again); err != nil || again.ResourceVersion != s.ResourceVersion {
		t.Errorf("a second Ensure rewrote a good Secret (%v)", err)
	}

	dir := t.TempDir()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("segments")) }))
	srv.TLS = ServerConfig(dir)
	srv.StartTLS()
	defer srv.Close()
	get := func(cfg *tls.Config) error {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
		defer c.CloseIdleConnections()
		resp, err := c.Get(srv.URL)
		if err != nil {
			return err
		}
		return resp.Body.Close()
	}
	if err := get(ClientConfig(pool)); err == nil {
		t.Error("a handshake succeeded before the agent had its certificate")
	}
	for _, k := range []string{KeyCert, KeyCertPK} {
		if err := os.WriteFile(filepath.Join(dir, k), s.Data[k], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := get(ClientConfig(pool)); err != nil {
		t.Errorf("the archiver's configuration: %v", err)
	}
	otherData, _, _ := renew(nil, time.Now())
	other := x509.NewCertPool()
	other.AppendCertsFromPEM(otherData[KeyCA])
	var unknown x509.UnknownAuthorityError
	if err := get(ClientConfig(other)); err == nil || !errors.As(err, &unknown) {
		t.Errorf("another CA's configuration: %v, want an unknown authority", err)
	}
	host, _, _ := net.SplitHostPort(srv.Listener.Addr().String())
	wrongName := ClientConfig(pool)
	wrongName.ServerName = host
	if err := get(wrongName); err == nil {
		t.Error("the certificate was accepted for the agent's IP: it is for ServerName only")
	}
}
