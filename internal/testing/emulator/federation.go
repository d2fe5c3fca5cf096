package emulator

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/scheme"
	"github.com/planetkube/planetkube/internal/ticket"
)

// ManagerNamespace is the manager's namespace in the emulated cluster.
const ManagerNamespace = "planetkube-system"

// FeedServing issues (once) the serving certificate of the manager's
// federation feed for 127.0.0.1, signed by the cluster CA, and returns the
// feed's port, the certificate's folder and the CA (PEM), which a peer
// gives as its Authority's feedCABundle.
func (c *Cluster) FeedServing() (int, string, []byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ca, err := os.ReadFile(c.pki.CACert)
	if err != nil {
		return 0, "", nil, err
	}
	if c.feedPort != 0 {
		return c.feedPort, c.feedCertDir, ca, nil
	}
	port, err := freePort()
	if err != nil {
		return 0, "", nil, err
	}
	dir := filepath.Join(c.WorkDir, "feed-certs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, "", nil, err
	}
	if _, err := issue(c.pki.ca, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "planetkube-feed"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")); err != nil {
		return 0, "", nil, fmt.Errorf("creating the feed serving certificate: %w", err)
	}
	c.feedPort, c.feedCertDir = port, dir
	return port, dir, ca, nil
}

// FeedURL is the URL of the cluster's feed (FeedServing must have run).
func (c *Cluster) FeedURL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return "https://127.0.0.1:" + strconv.Itoa(c.feedPort) + "/federation/v1/feed"
}

// FeedArgs are the manager flags that serve the feed (FeedServing's port
// and certificate).
func (c *Cluster) FeedArgs() ([]string, error) {
	port, dir, _, err := c.FeedServing()
	if err != nil {
		return nil, err
	}
	return []string{"--feed-bind-address=127.0.0.1:" + strconv.Itoa(port), "--feed-cert-dir=" + dir}, nil
}

// PutAuthorityKey stores an authority's key as the Helm release brings it
// (Secret planetkube-authority-key in ManagerNamespace), so that an install
// made again (wiped and reinstalled) signs with the key its peers know.
func (c *Cluster) PutAuthorityKey(ctx context.Context, authority string, key ed25519.PrivateKey) error {
	pemKey, err := ticket.EncodePrivateKey(key)
	if err != nil {
		return err
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ManagerNamespace, Name: "planetkube-authority-key"},
		Immutable:  ptr.To(true),
		Data:       map[string][]byte{"ed25519.pem": pemKey, "authority": []byte(authority)},
	}
	if _, err := c.Client.CoreV1().Secrets(ManagerNamespace).Create(ctx, s, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the authority key secret: %w", err)
	}
	return nil
}

// PushAccess gives a peer authority the right to push tickets here, as a
// site operator would: a namespace planetkube-peer-<peer>, a ServiceAccount
// in it allowed to get, list, create and delete Tickets there only, and a
// kubeconfig with a token for it (HTTPS, the CA inline, the namespace as
// its context's). It returns the kubeconfig.
func (c *Cluster) PushAccess(ctx context.Context, peer string) ([]byte, error) {
	ns := "planetkube-peer-" + peer
	name := "peer-" + peer
	core := c.Client.CoreV1()
	for _, create := range []func() error{
		func() error {
			_, err := core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := core.ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.Client.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Rules: []rbacv1.PolicyRule{{APIGroups: []string{"planetkube.io"}, Resources: []string{"tickets"},
					Verbs: []string{"get", "list", "watch", "create", "delete"}}},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.Client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
				Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}},
			}, metav1.CreateOptions{})
			return err
		},
	} {
		if err := create(); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("giving %s push access: %w", peer, err)
		}
	}
	tok, err := core.ServiceAccounts(ns).CreateToken(ctx, name, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](24 * 3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("making a token for %s: %w", peer, err)
	}
	ca, err := os.ReadFile(c.pki.CACert)
	if err != nil {
		return nil, err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["peer"] = &clientcmdapi.Cluster{Server: c.Config.Host, CertificateAuthorityData: ca}
	cfg.AuthInfos["peer"] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	cfg.Contexts["peer"] = &clientcmdapi.Context{Cluster: "peer", AuthInfo: "peer", Namespace: ns}
	cfg.CurrentContext = "peer"
	return clientcmd.Write(*cfg)
}

// PeerOptions say how an install reaches a peer.
type PeerOptions struct {
	// Push applies tickets at the peer through a kubeconfig it grants
	// (PushAccess), kept in the Secret peer-<peer>.
	Push bool
	// Pull polls the peer's feed (FeedServing must have run on the peer)
	// every PollSeconds (default 600).
	Pull        bool
	PollSeconds int32
}

// Peer makes, in c (authority local), the Authority of peer (its key, and
// its feed and push access as opts say), as an operator federating two
// installs does.
func (c *Cluster) Peer(ctx context.Context, local string, peer *Cluster, peerName string, peerKey ed25519.PublicKey, opts PeerOptions) error {
	a := &planetv1.Authority{
		ObjectMeta: metav1.ObjectMeta{Name: peerName},
		Spec: planetv1.AuthoritySpec{
			Keys:                []planetv1.AuthorityKey{{ID: ticket.KeyID(peerKey), PublicKey: ticket.EncodePublicKey(peerKey)}},
			PollIntervalSeconds: opts.PollSeconds,
		},
	}
	if opts.Pull {
		_, _, ca, err := peer.FeedServing()
		if err != nil {
			return err
		}
		a.Spec.FeedURL, a.Spec.FeedCABundle = peer.FeedURL(), string(ca)
	}
	if opts.Push {
		kubeconfig, err := peer.PushAccess(ctx, local)
		if err != nil {
			return err
		}
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ManagerNamespace, Name: "peer-" + peerName},
			Data:       map[string][]byte{"kubeconfig": kubeconfig},
		}
		if _, err := c.Client.CoreV1().Secrets(ManagerNamespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("storing the push kubeconfig of %s: %w", peerName, err)
		}
		a.Spec.Push = &planetv1.AuthorityPush{SecretName: secret.Name}
	}
	k8s, err := client.New(c.Config, client.Options{Scheme: scheme.Scheme()})
	if err != nil {
		return err
	}
	if err := k8s.Create(ctx, a); err != nil {
		return fmt.Errorf("creating Authority %s: %w", peerName, err)
	}
	return nil
}
