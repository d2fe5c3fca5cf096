package emulator

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

// pki holds the paths of the key material the control plane is started with.
type pki struct {
	CACert, CAKey           string // cluster CA: signs the serving and client certificates
	ServingCert, ServingKey string // kube-apiserver serving certificate
	AdminCert, AdminKey     string // client certificate of the admin (O=system:masters)
	SAKey, SAPub            string // service-account token signing key pair
	// KubeletClientCert and KubeletClientKey: how kube-apiserver
	// authenticates to real kubelets (with Options.RealNodes only).
	KubeletClientCert, KubeletClientKey string

	ca *keyPair // signs further serving certificates (the manager's webhook server)
}

// keyPair is a certificate with its private key, used to sign other certificates.
type keyPair struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// writePKI generates a CA, the API server's serving certificate, the admin's
// client certificate and the service-account key pair as PEM files in dir;
// for real nodes also the API server's kubelet client certificate, and its
// serving certificate names NodeAPIAddress.
func writePKI(dir string, realNodes bool) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating pki dir: %w", err)
	}
	p := &pki{
		CACert: filepath.Join(dir, "ca.crt"), CAKey: filepath.Join(dir, "ca.key"),
		ServingCert: filepath.Join(dir, "apiserver.crt"), ServingKey: filepath.Join(dir, "apiserver.key"),
		AdminCert: filepath.Join(dir, "admin.crt"), AdminKey: filepath.Join(dir, "admin.key"),
		SAKey: filepath.Join(dir, "sa.key"), SAPub: filepath.Join(dir, "sa.pub"),
	}
	ca, err := issue(nil, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "planetkube-emulator-ca"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
	}, p.CACert, p.CAKey)
	if err != nil {
		return nil, fmt.Errorf("creating CA: %w", err)
	}
	p.ca = ca
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 96, 0, 1)}
	if realNodes {
		ips = append(ips, net.ParseIP(NodeAPIAddress))
		p.KubeletClientCert, p.KubeletClientKey = filepath.Join(dir, "kubelet-client.crt"), filepath.Join(dir, "kubelet-client.key")
		if _, err := issue(ca, &x509.Certificate{
			Subject:     pkix.Name{CommonName: KubeletClientUser},
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}, p.KubeletClientCert, p.KubeletClientKey); err != nil {
			return nil, fmt.Errorf("creating the kubelet client certificate: %w", err)
		}
	}
	if _, err := issue(ca, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: ips,
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default",
			"kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
	}, p.ServingCert, p.ServingKey); err != nil {
		return nil, fmt.Errorf("creating serving certificate: %w", err)
	}
	if _, err := issue(ca, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, p.AdminCert, p.AdminKey); err != nil {
		return nil, fmt.Errorf("creating admin certificate: %w", err)
	}
	if err := writeSAKeys(p.SAKey, p.SAPub); err != nil {
		return nil, fmt.Errorf("creating service-account keys: %w", err)
	}
	return p, nil
}

// issue creates a key and a certificate from tmpl, signed by parent (self-signed
// when parent is nil), and writes both as PEM files.
func issue(parent *keyPair, tmpl *x509.Certificate, certPath, keyPath string) (*keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, fmt.Errorf("generating serial: %w", err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(10 * 365 * 24 * time.Hour)
	signerCert, signerKey := tmpl, key
	if parent != nil {
		signerCert, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, &key.PublicKey, signerKey)
	if err != nil {
		return nil, fmt.Errorf("signing certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing certificate: %w", err)
	}
	if err := writePEM(certPath, "CERTIFICATE", der); err != nil {
		return nil, err
	}
	if err := writeECKey(keyPath, key); err != nil {
		return nil, err
	}
	return &keyPair{cert: cert, key: key}, nil
}

// writeSAKeys writes the service-account token signing key and its public key.
func writeSAKeys(keyPath, pubPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generating key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return fmt.Errorf("encoding public key: %w", err)
	}
	if err := writeECKey(keyPath, key); err != nil {
		return err
	}
	return writePEM(pubPath, "PUBLIC KEY", pub)
}

func writeECKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding key %s: %w", path, err)
	}
	return writePEM(path, "EC PRIVATE KEY", der)
}

func writePEM(path, blockType string, der []byte) error {
	data := pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
