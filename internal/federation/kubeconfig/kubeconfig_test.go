package kubeconfig

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// secretToken is the token of the test kubeconfigs; no refusal may repeat it.
const secretToken = "s3cr3t-t0ken-VALUE-do-not-echo"

// testPKI is a CA and a client certificate and key it signed, all PEM.
type testPKI struct {
	caPEM, certPEM, keyPEM []byte
	// otherKeyPEM is a key that does not match certPEM.
	otherKeyPEM []byte
}

func newTestPKI(tb testing.TB) testPKI {
	tb.Helper()
	newKey := func() (*ecdsa.PrivateKey, []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			tb.Fatal(err)
		}
		return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	caKey, _ := newKey()
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "peer-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	clientKey, clientKeyPEM := newKey()
	client := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "planetkube-federation"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	clientDER, err := x509.CreateCertificate(rand.Reader, client, ca, &clientKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	_, otherKeyPEM := newKey()
	return testPKI{
		caPEM:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		certPEM:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: clientDER}),
		keyPEM:      clientKeyPEM,
		otherKeyPEM: otherKeyPEM,
	}
}

// tokenConfig is a good kubeconfig that authenticates with a token.
func tokenConfig(p testPKI) *clientcmdapi.Config {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["peer"] = &clientcmdapi.Cluster{
		Server:                   "https://peer.example.org:6443",
		TLSServerName:            "kubernetes.default.svc",
		CertificateAuthorityData: p.caPEM,
	}
	cfg.AuthInfos["pusher"] = &clientcmdapi.AuthInfo{Token: secretToken}
	cfg.Contexts["peer"] = &clientcmdapi.Context{Cluster: "peer", AuthInfo: "pusher", Namespace: "planetkube-peers"}
	cfg.CurrentContext = "peer"
	return cfg
}

// certConfig is a good kubeconfig that authenticates with a client
// certificate.
func certConfig(p testPKI) *clientcmdapi.Config {
	cfg := tokenConfig(p)
	cfg.AuthInfos["pusher"] = &clientcmdapi.AuthInfo{ClientCertificateData: p.certPEM, ClientKeyData: p.keyPEM}
	return cfg
}

func write(tb testing.TB, cfg *clientcmdapi.Config) []byte {
	tb.Helper()
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

func TestParseAccepts(t *testing.T) {
	p := newTestPKI(t)

	t.Run("token", func(t *testing.T) {
		peer, err := Parse(write(t, tokenConfig(p)))
		if err != nil {
			t.Fatal(err)
		}
		c := peer.Config
		if peer.Server != "https://peer.example.org:6443" || c.Host != peer.Server {
			t.Errorf("server %q, host %q", peer.Server, c.Host)
		}
		if peer.Namespace != "planetkube-peers" {
			t.Errorf("namespace %q", peer.Namespace)
		}
		if c.BearerToken != secretToken {
			t.Errorf("bearer token not set")
		}
		if !bytes.Equal(c.CAData, p.caPEM) || c.ServerName != "kubernetes.default.svc" {
			t.Errorf("TLS: CA data set %v, server name %q", bytes.Equal(c.CAData, p.caPEM), c.ServerName)
		}
		if c.CertData != nil || c.KeyData != nil || c.Insecure || c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" {
			t.Errorf("unexpected TLS settings: %+v", c.TLSClientConfig)
		}
		if c.Timeout != 15*time.Second || c.QPS != 20 || c.Burst != 40 || c.UserAgent != "planetkube-federation" {
			t.Errorf("timeout %v, QPS %v, burst %v, user agent %q", c.Timeout, c.QPS, c.Burst, c.UserAgent)
		}
		if c.ExecProvider != nil || c.AuthProvider != nil || c.BearerTokenFile != "" || c.Username != "" || c.Password != "" || c.Proxy != nil || c.Impersonate.UserName != "" {
			t.Errorf("unexpected credentials or proxy in %+v", c)
		}
	})

	t.Run("client certificate", func(t *testing.T) {
		peer, err := Parse(write(t, certConfig(p)))
		if err != nil {
			t.Fatal(err)
		}
		c := peer.Config
		if !bytes.Equal(c.CertData, p.certPEM) || !bytes.Equal(c.KeyData, p.keyPEM) {
			t.Error("client certificate or key not set")
		}
		if c.BearerToken != "" {
			t.Error("bearer token set")
		}
		if !bytes.Equal(c.CAData, p.caPEM) || peer.Namespace != "planetkube-peers" {
			t.Errorf("CA data set %v, namespace %q", bytes.Equal(c.CAData, p.caPEM), peer.Namespace)
		}
	})

	t.Run("variants", func(t *testing.T) {
		for name, mutate := range map[string]func(*clientcmdapi.Config){
			"server with slash": func(c *clientcmdapi.Config) { c.Clusters["peer"].Server = "https://peer.example.org/" },
			"server IPv6":       func(c *clientcmdapi.Config) { c.Clusters["peer"].Server = "https://[2001:db8::1]:6443" },
			"CA bundle after another block": func(c *clientcmdapi.Config) {
				c.Clusters["peer"].CertificateAuthorityData = append(pem.EncodeToMemory(&pem.Block{Type: "COMMENT", Bytes: []byte("x")}), p.caPEM...)
			},
			"token and client certificate": func(c *clientcmdapi.Config) {
				c.AuthInfos["pusher"].ClientCertificateData, c.AuthInfos["pusher"].ClientKeyData = p.certPEM, p.keyPEM
			},
			"unused insecure cluster": func(c *clientcmdapi.Config) {
				c.Clusters["other"] = &clientcmdapi.Cluster{Server: "http://other", InsecureSkipTLSVerify: true}
			},
			"unused exec user": func(c *clientcmdapi.Config) {
				c.AuthInfos["other"] = &clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{Command: "sh"}}
			},
		} {
			cfg := tokenConfig(p)
			mutate(cfg)
			if _, err := Parse(write(t, cfg)); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	})
}

// refusal is a kubeconfig Parse must refuse, and a part of the refusal's
// message.
type refusal struct {
	name string
	data []byte
	want string
}

// refusals lists a kubeconfig for each rule, each made from a good one.
func refusals(tb testing.TB, p testPKI) []refusal {
	tb.Helper()
	fromToken := func(mutate func(*clientcmdapi.Config)) []byte {
		cfg := tokenConfig(p)
		mutate(cfg)
		return write(tb, cfg)
	}
	fromCert := func(mutate func(*clientcmdapi.Config)) []byte {
		cfg := certConfig(p)
		mutate(cfg)
		return write(tb, cfg)
	}
	cluster := func(mutate func(*clientcmdapi.Cluster)) []byte {
		return fromToken(func(c *clientcmdapi.Config) { mutate(c.Clusters["peer"]) })
	}
	server := func(s string) []byte {
		return cluster(func(c *clientcmdapi.Cluster) { c.Server = s })
	}
	user := func(mutate func(*clientcmdapi.AuthInfo)) []byte {
		return fromToken(func(c *clientcmdapi.Config) { mutate(c.AuthInfos["pusher"]) })
	}
	certUser := func(mutate func(*clientcmdapi.AuthInfo)) []byte {
		return fromCert(func(c *clientcmdapi.Config) { mutate(c.AuthInfos["pusher"]) })
	}
	namespace := func(ns string) []byte {
		return fromToken(func(c *clientcmdapi.Config) { c.Contexts["peer"].Namespace = ns })
	}
	good := write(tb, tokenConfig(p))
	notCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})

	return []refusal{
		// Size and syntax.
		{"empty", nil, "empty"},
		{"blank", []byte(" \n\t\n"), "empty"},
		{"too large", append(bytes.Repeat([]byte("#"), MaxBytes+1-len(good)), good...), "more than the limit"},
		{"not YAML", []byte("users:\n- name: u\n  user:\n    token: " + secretToken + "\n  bad: ["), "syntax error at or near line 5"},
		{"tagged token", []byte("users:\n- name: u\n  user:\n    token: !!int " + secretToken), "not valid YAML or JSON"},
		{"token as map key", []byte("{[" + secretToken + "]: x}"), "not valid YAML or JSON"},
		{"wrong field type", []byte("users:\n- name: u\n  user:\n    token: [" + secretToken + "]"), "field AuthInfo.users.user.token has the wrong type (array, expected string)"},
		{"bad base64", []byte("users:\n- name: u\n  user:\n    client-key-data: " + secretToken + "!!"), "not valid base64"},
		{"wrong kind", []byte("apiVersion: v1\nkind: Secret\n"), "apiVersion and kind"},

		// Contexts.
		{"no current context", fromToken(func(c *clientcmdapi.Config) { c.CurrentContext = "" }), "current-context is not set"},
		{"missing current context", fromToken(func(c *clientcmdapi.Config) { c.CurrentContext = "gone" }), `current-context "gone" names no context`},
		{"context without cluster", fromToken(func(c *clientcmdapi.Config) { c.Contexts["peer"].Cluster = "" }), "names no cluster"},
		{"missing cluster", fromToken(func(c *clientcmdapi.Config) { delete(c.Clusters, "peer") }), `cluster "peer", which is not in clusters`},
		{"context without user", fromToken(func(c *clientcmdapi.Config) { c.Contexts["peer"].AuthInfo = "" }), "names no user"},
		{"missing user", fromToken(func(c *clientcmdapi.Config) { delete(c.AuthInfos, "pusher") }), `user "pusher", which is not in users`},

		// Server.
		{"no server", server(""), "has no server"},
		{"http server", server("http://peer.example.org"), "does not start with https://"},
		{"upper-case scheme", server("HTTPS://peer.example.org"), "does not start with https://"},
		{"no scheme", server("peer.example.org:6443"), "https://"},
		{"not a URL", server("https://peer.example.org:port"), "not a URL"},
		{"no host", server("https://"), "no host"},
		{"port only", server("https://:6443"), "no host"},
		{"path", server("https://peer.example.org/k8s/clusters/c-1"), "with a path"},
		{"query", server("https://peer.example.org/?a=b"), "with a query"},
		{"empty query", server("https://peer.example.org?"), "with a query"},
		{"fragment", server("https://peer.example.org/#x"), "with a fragment"},
		{"empty fragment", server("https://peer.example.org#"), "with a fragment"},
		{"userinfo", server("https://admin:" + secretToken + "@peer.example.org"), "user information"},

		// Cluster TLS.
		{"proxy", cluster(func(c *clientcmdapi.Cluster) { c.ProxyURL = "http://proxy:3128" }), "proxy-url"},
		{"insecure", cluster(func(c *clientcmdapi.Cluster) { c.InsecureSkipTLSVerify = true }), "insecure-skip-tls-verify"},
		{"CA file", cluster(func(c *clientcmdapi.Cluster) { c.CertificateAuthority = "/etc/kubernetes/ca.crt" }), "certificate-authority, a file path"},
		{"no CA data", cluster(func(c *clientcmdapi.Cluster) { c.CertificateAuthorityData = nil }), "no certificate-authority-data"},
		{"CA data not PEM", cluster(func(c *clientcmdapi.Cluster) { c.CertificateAuthorityData = []byte("not PEM") }), "no parseable PEM CERTIFICATE"},
		{"CA data a key", cluster(func(c *clientcmdapi.Cluster) { c.CertificateAuthorityData = p.keyPEM }), "no parseable PEM CERTIFICATE"},
		{"CA data not x509", cluster(func(c *clientcmdapi.Cluster) { c.CertificateAuthorityData = notCA }), "no parseable PEM CERTIFICATE"},

		// User.
		{"exec", user(func(u *clientcmdapi.AuthInfo) {
			u.Exec = &clientcmdapi.ExecConfig{Command: "aws", APIVersion: "client.authentication.k8s.io/v1"}
		}), "exec credential plugin"},
		{"auth provider", user(func(u *clientcmdapi.AuthInfo) { u.AuthProvider = &clientcmdapi.AuthProviderConfig{Name: "oidc"} }), "auth-provider"},
		{"token file", user(func(u *clientcmdapi.AuthInfo) { u.TokenFile = "/var/run/token" }), "tokenFile, a file path"},
		{"client certificate file", certUser(func(u *clientcmdapi.AuthInfo) { u.ClientCertificate = "/tmp/tls.crt" }), "client-certificate, a file path"},
		{"client key file", certUser(func(u *clientcmdapi.AuthInfo) { u.ClientKey = "/tmp/tls.key" }), "client-key, a file path"},
		{"username", user(func(u *clientcmdapi.AuthInfo) { u.Username = "admin" }), "username or password"},
		{"password", user(func(u *clientcmdapi.AuthInfo) { u.Password = secretToken }), "username or password"},
		{"impersonate", user(func(u *clientcmdapi.AuthInfo) { u.Impersonate = "system:admin" }), "impersonates"},
		{"impersonate uid", user(func(u *clientcmdapi.AuthInfo) { u.ImpersonateUID = "1" }), "impersonates"},
		{"impersonate groups", user(func(u *clientcmdapi.AuthInfo) { u.ImpersonateGroups = []string{"system:masters"} }), "impersonates"},
		{"impersonate extra", user(func(u *clientcmdapi.AuthInfo) { u.ImpersonateUserExtra = map[string][]string{"scopes": {"all"}} }), "impersonates"},
		{"no credentials", user(func(u *clientcmdapi.AuthInfo) { u.Token = "" }), "has no credentials"},
		{"certificate without key", certUser(func(u *clientcmdapi.AuthInfo) { u.ClientKeyData = nil }), "no client-key-data"},
		{"key without certificate", certUser(func(u *clientcmdapi.AuthInfo) { u.ClientCertificateData = nil }), "no client-certificate-data"},
		{"token and key without certificate", user(func(u *clientcmdapi.AuthInfo) { u.ClientKeyData = p.keyPEM }), "no client-certificate-data"},
		{"mismatched key", certUser(func(u *clientcmdapi.AuthInfo) { u.ClientKeyData = p.otherKeyPEM }), "not a matching PEM certificate and key"},
		{"key not PEM", certUser(func(u *clientcmdapi.AuthInfo) { u.ClientKeyData = []byte(secretToken) }), "not a matching PEM certificate and key"},

		// Namespace.
		{"no namespace", namespace(""), "sets no namespace"},
		{"namespace upper case", namespace("Peers"), "not a valid namespace name"},
		{"namespace with dot", namespace("planetkube.peers"), "not a valid namespace name"},
		{"namespace too long", namespace(strings.Repeat("a", 64)), "not a valid namespace name"},
	}
}

func TestParseRefuses(t *testing.T) {
	p := newTestPKI(t)
	for _, tc := range refusals(t, p) {
		t.Run(tc.name, func(t *testing.T) {
			peer, err := Parse(tc.data)
			if err == nil {
				t.Fatalf("accepted, server %q namespace %q", peer.Server, peer.Namespace)
			}
			if peer != nil {
				t.Error("refusal returned a peer")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "peer kubeconfig: ") {
				t.Errorf("error %q does not say it is about the peer kubeconfig", err)
			}
		})
	}
}

// TestParseNeverEchoesSecrets checks that no refusal repeats the token, the
// client key or the CA, whether raw or base64-encoded.
func TestParseNeverEchoesSecrets(t *testing.T) {
	p := newTestPKI(t)
	secrets := map[string]string{
		"token":        secretToken,
		"key":          string(p.keyPEM),
		"key (base64)": base64.StdEncoding.EncodeToString(p.keyPEM),
		"key line":     strings.Split(string(p.keyPEM), "\n")[1],
	}
	for _, tc := range refusals(t, p) {
		_, err := Parse(tc.data)
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		for what, secret := range secrets {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: error repeats the %s: %q", tc.name, what, err)
			}
		}
	}
}

// TestParseDoesNotShareInput checks that the configuration does not alias the
// caller's bytes.
func TestParseDoesNotShareInput(t *testing.T) {
	p := newTestPKI(t)
	peer, err := Parse(write(t, certConfig(p)))
	if err != nil {
		t.Fatal(err)
	}
	other, err := Parse(write(t, certConfig(p)))
	if err != nil {
		t.Fatal(err)
	}
	peer.Config.CAData[0] ^= 0xff
	if bytes.Equal(peer.Config.CAData, other.Config.CAData) {
		t.Error("configurations share their CA data")
	}
}
