package ticketcmd

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/cli"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/ticket"
)

// defaultDelegation is a delegation's default lifetime: one year.
const defaultDelegation = 365 * 24 * time.Hour

func delegate(args []string, std IO) error {
	fs := cli.NewFlagSet("authority delegate", "--child NAME --child-public-key BASE64 (--key FILE | --key-secret NS/NAME) [flags]",
		"Signs, with the parent authority's key, a delegation that lets a child authority (plc → plc.japan)\n"+
			"issue tickets for names under its own. Prints the delegation token: the child passes it to\n"+
			"`planetkube ticket issue --chain`, after the delegations of its own parents.\n"+
			"A parent that is itself a delegate gives its own chain (--chain): a delegation that would\n"+
			"outlive the parent's own is refused, as every verifier would refuse it.")
	var (
		k          keyFlags
		child, pub string
		chain      string
		expiresIn  time.Duration
	)
	k.bind(fs)
	fs.StringVar(&child, "child", "", "The child authority's name: the parent's plus one label (plc.japan).")
	fs.StringVar(&pub, "child-public-key", "", "The child's Ed25519 public key, base64 (its Authority's keys[].publicKey).")
	fs.DurationVar(&expiresIn, "expires-in", defaultDelegation, "How long the delegation is valid. With --chain, refused when it would outlive the parent's own delegation.")
	fs.StringVar(&chain, "chain", "", "File of the parent's own delegations, from a root authority to the parent, one token per line, root first\n"+
		"(as ticket issue --chain reads them), when the parent is a delegate.")
	if help, err := parseArgs(fs, args); help || err != nil {
		return err
	}
	if child == "" || pub == "" {
		return errors.New("--child and --child-public-key are required")
	}
	key, err := ticket.DecodePublicKey(pub)
	if err != nil {
		return fmt.Errorf("--child-public-key: %w", err)
	}
	signer, err := k.signer(context.Background())
	if err != nil {
		return err
	}
	now := std.Now()
	if chain != "" {
		_, last, err := readChain(chain)
		if err != nil {
			return err
		}
		exp := now.Add(expiresIn).Unix()
		switch {
		case last.Subject != signer.Authority:
			return fmt.Errorf("--chain %s delegates to %s, not to the signer %s", chain, last.Subject, signer.Authority)
		case last.Expiry <= now.Unix():
			return fmt.Errorf("the parent's own delegation (%s → %s) expired at %s", last.Issuer, last.Subject, unixTime(last.Expiry))
		case exp > last.Expiry:
			return fmt.Errorf("the delegation would expire at %s, after the parent's own delegation (%s → %s, which expires at %s): give a shorter --expires-in (at most %s)",
				unixTime(exp), last.Issuer, last.Subject, unixTime(last.Expiry), time.Unix(last.Expiry, 0).Sub(now).Truncate(time.Second))
		}
	}
	token, err := signer.Delegate(child, key, now, now.Add(expiresIn))
	if err != nil {
		return err
	}
	fmt.Fprintln(std.Out, token)
	return nil
}

func keygen(args []string, std IO) error {
	fs := cli.NewFlagSet("authority keygen", "--authority NAME --out FILE",
		"Makes an Ed25519 key for an authority: writes the private key (PEM, PKCS #8, mode 0600) to a\n"+
			"file that must not exist, and prints the Authority object that publishes its public half.\n"+
			"(An install's manager makes its own key in a Secret at first start; this is for the others.)")
	var name, out string
	fs.StringVar(&name, "authority", "", "The authority's name (plc.japan).")
	fs.StringVar(&out, "out", "", "File the private key is written to.")
	if help, err := parseArgs(fs, args); help || err != nil {
		return err
	}
	if !naming.ValidAuthority(name) {
		return fmt.Errorf("--authority %q is not an authority's name (dot-separated lowercase letters and digits)", name)
	}
	if out == "" {
		return errors.New("--out FILE is required")
	}
	priv, err := ticket.GenerateKey()
	if err != nil {
		return err
	}
	pemKey, err := ticket.EncodePrivateKey(priv)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(pemKey); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	pub := ticket.NewSigner(name, priv)
	a := planetv1.Authority{
		TypeMeta:   metav1.TypeMeta{APIVersion: planetv1.GroupVersion.String(), Kind: "Authority"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: planetv1.AuthoritySpec{Keys: []planetv1.AuthorityKey{{
			ID: pub.KeyID, PublicKey: ticket.EncodePublicKey(priv.Public().(ed25519.PublicKey)),
		}}},
	}
	b, err := yaml.Marshal(map[string]any{"apiVersion": a.APIVersion, "kind": a.Kind, "metadata": map[string]string{"name": name}, "spec": a.Spec})
	if err != nil {
		return err
	}
	_, err = std.Out.Write(b)
	return err
}
