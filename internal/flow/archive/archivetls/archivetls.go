// Package archivetls secures the archiver's downloads from the node agents
// (raw segments: every flow of a node) with TLS and a certificate authority
// of the install's own, kept in a Secret of the agents' namespace. The
// archiver makes and renews the Secret (Ensure) and trusts its CAs
// (ClientConfig); the agents mount its serving certificate and key
// (ServerConfig). One certificate serves every agent, for the fixed name
// ServerName, since the archiver reaches the agents by their IPs. TLS 1.3's
// ephemeral keys keep a node that holds the key from reading another's
// downloads; the archiver's token still says who downloads.
package archivetls

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
)

const (
	// ServerName is the name the agents' certificate is for, and the
	// archiver checks.
	ServerName = "planetkube-node-agent.archive"
	// SecretName is the chart's Secret, in the agents' namespace.
	SecretName = "planetkube-archive-tls"
	// The Secret's keys: the trusted CAs (the current one first, then one
	// being replaced), the current CA's key, and the agents' certificate
	// and key (the names of a kubernetes.io/tls Secret).
	KeyCA     = "ca.crt"
	KeyCAKey  = "ca.key"
	KeyCert   = corev1.TLSCertKey
	KeyCertPK = corev1.TLSPrivateKeyKey
)

// Lifetimes: what expires within RenewBefore is made anew.
const (
	CALifetime     = 5 * 365 * 24 * time.Hour
	ServerLifetime = 365 * 24 * time.Hour
	RenewBefore    = 90 * 24 * time.Hour
)

// Ensure makes sure the Secret namespace/SecretName holds a CA and the
// agents' certificate, valid for more than RenewBefore after now, and
// returns the CAs to trust. A certificate near its end is issued anew by
// the same CA; a CA near its end (or a Secret that does not check out) is
// replaced, and the CA it replaces stays trusted until it expires, so that
// agents still serving the old certificate (the kubelet updates mounted
// Secrets within a minute or two) are not refused meanwhile.
func Ensure(ctx context.Context, c client.Client, namespace string, now time.Time) (*x509.CertPool, error) {
	for range 3 { // a conflict with a concurrent writer: read again
		s := &corev1.Secret{}
		err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: SecretName}, s)
		missing := apierrors.IsNotFound(err)
		if err != nil && !missing {
			return nil, fmt.Errorf("archivetls: reading Secret %s/%s: %w", namespace, SecretName, err)
		}
		data, changed, err := renew(s.Data, now)
		if err != nil {
			return nil, err
		}
		if changed {
			s.Data = data
			s.Type = corev1.SecretTypeOpaque
			if missing {
				s.ObjectMeta = metav1.ObjectMeta{Namespace: namespace, Name: SecretName,
					Labels: map[string]string{planetv1.LabelManagedBy: planetv1.ManagedByValue}}
				err = c.Create(ctx, s)
			} else {
				err = c.Update(ctx, s)
			}
			if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("archivetls: writing Secret %s/%s: %w", namespace, SecretName, err)
			}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data[KeyCA]) {
			return nil, errors.New("archivetls: no CA to trust")
		}
		return pool, nil
	}
	return nil, fmt.Errorf("archivetls: Secret %s/%s keeps changing under us", namespace, SecretName)
}

// ClientConfig is the archiver's TLS configuration: the CAs of Ensure, for
// ServerName, TLS 1.3.
func ClientConfig(cas *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: cas, ServerName: ServerName, MinVersion: tls.VersionTLS13}
}

// ServerConfig is an agent's TLS configuration: the certificate and key in
// dir (the Secret's KeyCert and KeyCertPK, mounted), read again a minute
// after they were last read, so that a renewed certificate is served. Until
// the files are there (the archiver makes the Secret), handshakes fail.
func ServerConfig(dir string) *tls.Config {
	k := &keyPair{dir: dir}
	return &tls.Config{MinVersion: tls.VersionTLS13, GetCertificate: k.get}
}

// reloadEvery is how long an agent serves a certificate before reading it
// again.
const reloadEvery = time.Minute

type keyPair struct {
	dir    string
	mu     sync.Mutex
	cert   *tls.Certificate
	loaded time.Time
}

func (k *keyPair) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cert != nil && time.Since(k.loaded) < reloadEvery {
		return k.cert, nil
	}
	c, err := tls.LoadX509KeyPair(filepath.Join(k.dir, KeyCert), filepath.Join(k.dir, KeyCertPK))
	if err != nil {
		if k.cert != nil { // keep serving the last one
			return k.cert, nil
		}
		return nil, fmt.Errorf("archivetls: no certificate yet: %w", err)
	}
	k.cert, k.loaded = &c, time.Now()
	return k.cert, nil
}

// renew returns the Secret's data made good for now, and whether it
// changed.
func renew(data map[string][]byte, now time.Time) (map[string][]byte, bool, error) {
	ca, caKey, cas, caOK := parseCA(data, now)
	if caOK && serverOK(data, ca, now) {
		return data, false, nil
	}
	if !caOK {
		var err error
		if ca, caKey, err = newCA(now); err != nil {
			return nil, false, err
		}
		cas = append([]*x509.Certificate{ca}, cas...) // the old ones stay trusted until they expire
	}
	certPEM, keyPEM, err := newServer(ca, caKey, now)
	if err != nil {
		return nil, false, err
	}
	keyDER, err := x509.MarshalECPrivateKey(caKey)
	if err != nil {
		return nil, false, err
	}
	var bundle []byte
	for _, c := range cas {
		bundle = append(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return map[string][]byte{
		KeyCA:     bundle,
		KeyCAKey:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		KeyCert:   certPEM,
		KeyCertPK: keyPEM,
	}, true, nil
}

// parseCA reads the current CA (the first of KeyCA) and its key; ok says
// they belong together and the CA is good for more than RenewBefore. cas
// are the bundle's CAs still valid at now.
func parseCA(data map[string][]byte, now time.Time) (ca *x509.Certificate, key *ecdsa.PrivateKey, cas []*x509.Certificate, ok bool) {
	rest := data[KeyCA]
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil || !c.IsCA || now.After(c.NotAfter) {
			continue
		}
		cas = append(cas, c)
	}
	if len(cas) == 0 {
		return nil, nil, nil, false
	}
	ca = cas[0]
	b, _ := pem.Decode(data[KeyCAKey])
	if b == nil {
		return nil, nil, cas, false
	}
	key, err := x509.ParseECPrivateKey(b.Bytes)
	if err != nil || !key.PublicKey.Equal(ca.PublicKey) || ca.NotAfter.Sub(now) <= RenewBefore {
		return nil, nil, cas, false
	}
	return ca, key, cas, true
}

// serverOK says whether the agents' certificate and key belong together,
// are the CA's for ServerName and are good for more than RenewBefore.
func serverOK(data map[string][]byte, ca *x509.Certificate, now time.Time) bool {
	pair, err := tls.X509KeyPair(data[KeyCert], data[KeyCertPK])
	if err != nil || pair.Leaf == nil || pair.Leaf.NotAfter.Sub(now) <= RenewBefore {
		return false
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	_, err = pair.Leaf.Verify(x509.VerifyOptions{DNSName: ServerName, Roots: roots, CurrentTime: now})
	return err == nil
}

// newKey makes a certificate's key and serial number.
func newKey() (*ecdsa.PrivateKey, *big.Int, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return key, sn, err
}

// newCA makes a CA valid from now for CALifetime.
func newCA(now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, sn, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn, Subject: pkix.Name{Organization: []string{"planetkube"}, CommonName: "planetkube-archive-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(CALifetime),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	return ca, key, err
}

// newServer makes the agents' certificate, for ServerName, signed by ca.
func newServer(ca *x509.Certificate, caKey *ecdsa.PrivateKey, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, sn, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	notAfter := now.Add(ServerLifetime)
	if ca.NotAfter.Before(notAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn, Subject: pkix.Name{Organization: []string{"planetkube"}, CommonName: ServerName},
		DNSNames:  []string{ServerName},
		NotBefore: now.Add(-time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}
