package emulator

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"os"
	"path/filepath"
)

// NodeAPIAddress is where real nodes (internal/testing/realnode) reach the
// API server, an address on the host's side of their links that the API
// server's certificate names (with Options.RealNodes). The kubernetes
// Service's endpoint is there too, so that pods reach the API server through
// kube-proxy as on any cluster.
const NodeAPIAddress = "10.201.255.1"

// KubeletClientUser is who kube-apiserver is to the real kubelets (its
// client certificate's name, in no group): realnode binds it to the
// ClusterRole system:kubelet-api-admin, as kubeadm does, not to
// cluster-admin.
const KubeletClientUser = "kube-apiserver-kubelet-client"

// realNodeAPIServerArgs are kube-apiserver's flags: without real nodes no
// service-account tokens are minted and new nodes are not tainted not-ready
// (kube-controller-manager, at its default 20 QPS, would take minutes to
// untaint a thousand fake nodes that kwok makes Ready at once). With real
// nodes, pods get their tokens, the API server reaches kubelets (logs, exec)
// at their InternalIP with a client certificate of its own, and calls
// webhooks at their Service's endpoints (there is no kube-proxy on its side).
func (c *Cluster) realNodeAPIServerArgs() []string {
	if !c.realNodes {
		return []string{"--disable-admission-plugins=ServiceAccount,TaintNodesByCondition"}
	}
	return []string{
		"--disable-admission-plugins=TaintNodesByCondition",
		"--kubelet-client-certificate=" + c.pki.KubeletClientCert,
		"--kubelet-client-key=" + c.pki.KubeletClientKey,
		"--kubelet-preferred-address-types=InternalIP",
		"--enable-aggregator-routing=true",
	}
}

// realNodeControllerManagerArgs: a real node whose kubelet stops is to go
// NotReady within a minute, as on a real cluster, not the 5 minutes the
// fake nodes get: 60 s beside fake nodes (kwok heartbeats up to 45 s
// apart), 20 s with real nodes alone (a kubelet reports every 5 s here).
func (c *Cluster) realNodeControllerManagerArgs() []string {
	switch {
	case !c.realNodes:
		return nil
	case c.fakeNodes < 0:
		return []string{"--node-monitor-grace-period=20s"}
	}
	return []string{"--node-monitor-grace-period=60s"}
}

// RealNodes says whether the cluster was started for real nodes.
func (c *Cluster) RealNodes() bool { return c.realNodes }

// CACert is the path of the cluster CA's certificate (PEM).
func (c *Cluster) CACert() string { return c.pki.CACert }

// IssueClientCert writes a client certificate for user cn in groups orgs,
// signed by the cluster CA, as dir/name.crt and dir/name.key (a kubelet:
// system:node:NAME in system:nodes), and returns their paths.
func (c *Cluster) IssueClientCert(dir, name, cn string, orgs ...string) (cert, key string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	cert, key = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if _, err := issue(c.pki.ca, &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: orgs},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, cert, key); err != nil {
		return "", "", fmt.Errorf("issuing a client certificate for %s: %w", cn, err)
	}
	return cert, key, nil
}
