// Package kubeconfig validates the kubeconfig a PlanetKube install uses to
// push Tickets to a peer install, and turns it into a client configuration.
//
// A peer kubeconfig is stored in a Secret and read by the manager, so it must
// be self-contained and must not make the manager run programs or read files:
// exec plugins, auth providers, file paths, proxies, impersonation and basic
// authentication are refused, TLS verification cannot be turned off, and the
// cluster's certificate authority must be embedded. The client configuration
// is built from the validated fields alone; clientcmd's ClientConfig, which
// may read files, is never called.
package kubeconfig

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// MaxBytes bounds a kubeconfig before it is parsed.
const MaxBytes = 64 << 10

// The client settings of every peer configuration.
const (
	// timeout bounds each request to a peer.
	timeout = 15 * time.Second
	// qps and burst rate-limit the requests to a peer.
	qps   = 20
	burst = 40
	// userAgent is sent with each request to a peer.
	userAgent = "planetkube-federation"
)

// Peer is a validated peer kubeconfig.
type Peer struct {
	Config    *rest.Config // ready for client.New; Timeout set to 15s, QPS 20, Burst 40
	Namespace string       // the current context's namespace: where tickets are pushed
	Server    string
}

// refuse returns a refusal whose message starts with "peer kubeconfig: ".
func refuse(format string, args ...any) error {
	return fmt.Errorf("peer kubeconfig: "+format, args...)
}

// Parse validates data and returns the peer's client configuration. Every
// refusal is an error whose message names what is wrong and how to fix it,
// never echoing a token or key.
func Parse(data []byte) (*Peer, error) {
	if len(data) > MaxBytes {
		return nil, refuse("it is %d bytes, more than the limit of %d; remove the unused clusters, users and contexts (kubectl config view --minify --flatten)", len(data), MaxBytes)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, refuse("it is empty; provide a kubeconfig for the peer install (kubectl config view --minify --flatten)")
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return nil, refuse("it cannot be parsed: %s", parseError(err))
	}

	if cfg.CurrentContext == "" {
		return nil, refuse("current-context is not set; set it to the context to use for the peer (kubectl config use-context)")
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil {
		return nil, refuse("current-context %q names no context in contexts; add that context or point current-context at an existing one", cfg.CurrentContext)
	}
	if ctx.Cluster == "" {
		return nil, refuse("context %q names no cluster; set its cluster to an entry of clusters", cfg.CurrentContext)
	}
	cluster := cfg.Clusters[ctx.Cluster]
	if cluster == nil {
		return nil, refuse("context %q names cluster %q, which is not in clusters; add that cluster or fix the context", cfg.CurrentContext, ctx.Cluster)
	}
	if ctx.AuthInfo == "" {
		return nil, refuse("context %q names no user; set its user to an entry of users", cfg.CurrentContext)
	}
	user := cfg.AuthInfos[ctx.AuthInfo]
	if user == nil {
		return nil, refuse("context %q names user %q, which is not in users; add that user or fix the context", cfg.CurrentContext, ctx.AuthInfo)
	}

	if err := checkCluster(ctx.Cluster, cluster); err != nil {
		return nil, err
	}
	if err := checkUser(ctx.AuthInfo, user); err != nil {
		return nil, err
	}
	if ctx.Namespace == "" {
		return nil, refuse("context %q sets no namespace; set it to the peer namespace where tickets are pushed", cfg.CurrentContext)
	}
	if errs := validation.IsDNS1123Label(ctx.Namespace); len(errs) > 0 {
		return nil, refuse("context %q has namespace %q, which is not a valid namespace name (%s); use a DNS-1123 label such as planetkube-peers", cfg.CurrentContext, ctx.Namespace, strings.Join(errs, "; "))
	}

	config := &rest.Config{
		Host: cluster.Server,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:     clone(cluster.CertificateAuthorityData),
			ServerName: cluster.TLSServerName,
			CertData:   clone(user.ClientCertificateData),
			KeyData:    clone(user.ClientKeyData),
		},
		BearerToken:        user.Token,
		DisableCompression: cluster.DisableCompression,
		UserAgent:          userAgent,
		Timeout:            timeout,
		QPS:                qps,
		Burst:              burst,
	}
	return &Peer{Config: config, Namespace: ctx.Namespace, Server: cluster.Server}, nil
}

// checkCluster refuses a cluster whose server is not a plain https URL, that
// uses a proxy, skips TLS verification, or whose certificate authority is a
// file or is not embedded as PEM certificates.
func checkCluster(name string, c *clientcmdapi.Cluster) error {
	if err := checkServer(name, c.Server); err != nil {
		return err
	}
	if c.ProxyURL != "" {
		return refuse("cluster %q sets proxy-url; remove it, the peer's server must be reached directly", name)
	}
	if c.InsecureSkipTLSVerify {
		return refuse("cluster %q sets insecure-skip-tls-verify; remove it and embed the peer's CA in certificate-authority-data", name)
	}
	if c.CertificateAuthority != "" {
		return refuse("cluster %q sets certificate-authority, a file path; remove it and embed the CA in certificate-authority-data instead (kubectl config view --minify --flatten)", name)
	}
	if len(c.CertificateAuthorityData) == 0 {
		return refuse("cluster %q has no certificate-authority-data; embed the peer's CA certificate, base64-encoded PEM", name)
	}
	if !hasCertificate(c.CertificateAuthorityData) {
		return refuse("cluster %q has certificate-authority-data that holds no parseable PEM CERTIFICATE block; embed the peer's CA certificate, base64-encoded PEM", name)
	}
	return nil
}

// checkServer refuses a server that is not an https URL with a host and at
// most the path "/". The server is not repeated: it might carry credentials.
func checkServer(name, server string) error {
	if server == "" {
		return refuse("cluster %q has no server; set it to the peer API server's https:// URL", name)
	}
	u, err := url.Parse(server)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // url.Error repeats the whole URL.
		}
		return refuse("cluster %q has a server that is not a URL (%v); set it to the peer API server's https:// URL", name, err)
	}
	switch {
	case u.Scheme != "https" || !strings.HasPrefix(server, "https://"):
		return refuse("cluster %q has a server that does not start with https://; set it to the peer API server's https:// URL", name)
	case u.User != nil:
		return refuse("cluster %q has a server URL with user information; remove it and authenticate with a token or client certificate", name)
	case u.Host == "" || u.Hostname() == "":
		return refuse("cluster %q has a server URL with no host; set it to https://<host>[:<port>]", name)
	case u.Path != "" && u.Path != "/", u.Opaque != "":
		return refuse("cluster %q has a server URL with a path; set it to https://<host>[:<port>] with no path", name)
	case u.RawQuery != "" || u.ForceQuery:
		return refuse("cluster %q has a server URL with a query; remove the query", name)
	case u.Fragment != "" || strings.Contains(server, "#"):
		return refuse("cluster %q has a server URL with a fragment; remove the fragment", name)
	}
	return nil
}

// hasCertificate says whether data is PEM holding at least one CERTIFICATE
// block that parses as an x509 certificate.
func hasCertificate(data []byte) bool {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return false
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(block.Bytes); err == nil {
			return true
		}
	}
}

// checkUser refuses a user that would run a program, read a file, use basic
// authentication or impersonate, and one with no usable credentials.
func checkUser(name string, u *clientcmdapi.AuthInfo) error {
	switch {
	case u.Exec != nil:
		return refuse("user %q uses an exec credential plugin, which would run a program in the manager; use a token or an embedded client certificate instead", name)
	case u.AuthProvider != nil:
		return refuse("user %q uses an auth-provider, which may run a program or refresh credentials; use a token or an embedded client certificate instead", name)
	case u.TokenFile != "":
		return refuse("user %q sets tokenFile, a file path; remove it and embed the token in token instead", name)
	case u.ClientCertificate != "":
		return refuse("user %q sets client-certificate, a file path; remove it and embed the certificate in client-certificate-data instead (kubectl config view --minify --flatten)", name)
	case u.ClientKey != "":
		return refuse("user %q sets client-key, a file path; remove it and embed the key in client-key-data instead (kubectl config view --minify --flatten)", name)
	case u.Username != "" || u.Password != "":
		return refuse("user %q sets username or password; basic authentication is not supported, use a token or an embedded client certificate instead", name)
	case u.Impersonate != "" || u.ImpersonateUID != "" || len(u.ImpersonateGroups) > 0 || len(u.ImpersonateUserExtra) > 0:
		return refuse("user %q impersonates (act-as, act-as-uid, act-as-groups or act-as-user-extra); remove impersonation and grant the user itself the rights to push tickets", name)
	}

	hasCert, hasKey := len(u.ClientCertificateData) > 0, len(u.ClientKeyData) > 0
	switch {
	case hasCert && !hasKey:
		return refuse("user %q has client-certificate-data but no client-key-data; embed the matching key, or remove the certificate and use a token", name)
	case hasKey && !hasCert:
		return refuse("user %q has client-key-data but no client-certificate-data; embed the matching certificate, or remove the key and use a token", name)
	case !hasCert && u.Token == "":
		return refuse("user %q has no credentials; set token, or both client-certificate-data and client-key-data", name)
	case hasCert:
		// The error of X509KeyPair names what is wrong without the key.
		if _, err := tls.X509KeyPair(u.ClientCertificateData, u.ClientKeyData); err != nil {
			return refuse("user %q has client-certificate-data and client-key-data that are not a matching PEM certificate and key (%v); embed the certificate and its key", name, err)
		}
	}
	return nil
}

// The decoder's errors whose parts may be repeated: each names a place or a
// type, never a value.
var (
	yamlLineRE = regexp.MustCompile(`^yaml: line ([0-9]+):`)
	jsonTypeRE = regexp.MustCompile(`json: cannot unmarshal ([a-z]+) into Go struct field ([A-Za-z0-9_.-]+) of type ([][A-Za-z0-9_.]+)`)
	base64RE   = regexp.MustCompile(`illegal base64 data at input byte ([0-9]+)`)
	kindRE     = regexp.MustCompile(`^no kind .* is registered for version`)
)

// parseError describes why the decoder refused a kubeconfig. The decoder's
// messages can quote the input (a YAML tag on a token, a map key), so only
// the parts of known messages that name a place or a type are repeated.
func parseError(err error) string {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		return "there is a YAML syntax error at or near line " + m[1] + "; fix that line"
	}
	if m := jsonTypeRE.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("field %s has the wrong type (%s, expected %s); fix that field", m[2], m[1], m[3])
	}
	if base64RE.MatchString(msg) {
		return "a *-data field is not valid base64; embed the base64 encoding of the PEM (base64 -w0)"
	}
	if kindRE.MatchString(msg) {
		return "apiVersion and kind are not v1 and Config; set them so, or leave them out"
	}
	return "it is not valid YAML or JSON; provide a kubeconfig such as kubectl config view --minify --flatten prints"
}

// clone copies b, so the configuration shares nothing with the parsed
// kubeconfig.
func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return bytes.Clone(b)
}
