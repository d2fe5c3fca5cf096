// Package ticketcmd is the command line of tickets and authorities:
//
//	planetkube ticket issue     sign a sliver or pool grant from a YAML spec
//	planetkube ticket inspect   print a ticket's claims and whether it verifies
//	planetkube authority keygen make an authority key (PEM) and its Authority
//	planetkube authority delegate  sign a delegation for a child authority
//
// Signing keys come from a PEM file (--key) or from the authority's Secret
// through the kubeconfig (--key-secret). No private key is ever printed.
package ticketcmd

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/authority"
	"github.com/planetkube/planetkube/internal/cli"
	"github.com/planetkube/planetkube/internal/ticket"
)

// IO is where a command reads and writes (tests set it).
type IO struct {
	In       io.Reader
	Out, Err io.Writer
	// Now returns the current time.
	Now func() time.Time
}

// StdIO is the process's standard streams and clock.
func StdIO() IO { return IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, Now: time.Now} }

// Ticket runs "planetkube ticket <issue|inspect> ...".
func Ticket(args []string, std IO) error {
	return dispatch("ticket", args, std, map[string]func([]string, IO) error{"issue": issue, "inspect": inspect})
}

// Authority runs "planetkube authority <keygen|delegate> ...".
func Authority(args []string, std IO) error {
	return dispatch("authority", args, std, map[string]func([]string, IO) error{"keygen": keygen, "delegate": delegate})
}

func dispatch(name string, args []string, std IO, cmds map[string]func([]string, IO) error) error {
	return cli.Dispatch(name, args, std.Out, std, cmds)
}

// keyFlags locate a signing key: a PEM file, or the authority's Secret read
// through the kubeconfig.
type keyFlags struct {
	file, secret, kubeconfig, authority string
}

func (k *keyFlags) bind(fs interface {
	StringVar(*string, string, string, string)
}) {
	fs.StringVar(&k.file, "key", "", "PEM (PKCS #8) file of the authority's Ed25519 private key.")
	fs.StringVar(&k.secret, "key-secret", "", "The authority's key Secret as NAMESPACE/NAME (say planetkube-system/planetkube-authority-key), read through the kubeconfig; instead of --key.")
	fs.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig for --key-secret and --from-cluster (default: $KUBECONFIG, ~/.kube/config or in-cluster).")
	fs.StringVar(&k.authority, "authority", "", "The signing authority's name (plc). With --key-secret, default: the name the Secret records.")
}

// signer loads the signing key.
func (k *keyFlags) signer(ctx context.Context) (ticket.Signer, error) {
	var (
		priv ed25519.PrivateKey
		err  error
	)
	switch {
	case k.file != "" && k.secret != "":
		return ticket.Signer{}, errors.New("give --key or --key-secret, not both")
	case k.file != "":
		data, rerr := os.ReadFile(k.file)
		if rerr != nil {
			return ticket.Signer{}, rerr
		}
		if priv, err = ticket.DecodePrivateKey(data); err != nil {
			return ticket.Signer{}, fmt.Errorf("--key %s: %w", k.file, err)
		}
	case k.secret != "":
		ns, name, ok := strings.Cut(k.secret, "/")
		if !ok || ns == "" || name == "" {
			return ticket.Signer{}, fmt.Errorf("--key-secret %q is not NAMESPACE/NAME", k.secret)
		}
		c, cerr := k.client()
		if cerr != nil {
			return ticket.Signer{}, cerr
		}
		secret := &corev1.Secret{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, secret); err != nil {
			return ticket.Signer{}, fmt.Errorf("reading --key-secret %s: %w", k.secret, err)
		}
		if k.authority == "" {
			k.authority = string(secret.Data[authority.SecretKeyAuthority])
		}
		if priv, err = authority.KeyFromSecret(secret, k.authority); err != nil {
			return ticket.Signer{}, err
		}
	default:
		return ticket.Signer{}, errors.New("give the signing key: --key FILE or --key-secret NAMESPACE/NAME")
	}
	if k.authority == "" {
		return ticket.Signer{}, errors.New("--authority is required (the signing authority's name)")
	}
	return ticket.NewSigner(k.authority, priv), nil
}

// client returns an API client from the kubeconfig.
func (k *keyFlags) client() (client.Client, error) {
	cfg, err := config.GetConfig()
	if k.kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", k.kubeconfig)
	}
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	s, err := planetv1.SchemeBuilder.Build()
	if err != nil {
		return nil, err
	}
	if err := corev1.AddToScheme(s); err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: s})
}

// maxInput bounds what a command reads from standard input.
const maxInput = 1 << 20

// readAllLimited reads r, refusing more than maxInput bytes.
func readAllLimited(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxInput+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxInput {
		return nil, fmt.Errorf("the input is larger than %d bytes", maxInput)
	}
	return b, nil
}

// parseArgs parses a command's flags; help says the usage was printed
// (--help) and the command is done.
func parseArgs(fs *flag.FlagSet, args []string) (help bool, err error) {
	if err := cli.ParseFlags(fs, args); err != nil {
		if cli.IsHelp(err) {
			return true, nil
		}
		return false, err
	}
	return false, nil
}
