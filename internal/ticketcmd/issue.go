package ticketcmd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/cli"
	"github.com/planetkube/planetkube/internal/ticket"
)

// IssueSpec is the YAML a ticket is issued from.
type IssueSpec struct {
	// Audience is the authority the ticket is for (its install redeems it).
	Audience string `json:"audience"`
	// ID is the ticket's jti; default: 16 random bytes in hex.
	ID string `json:"id,omitempty"`
	// NotBefore delays the ticket's validity.
	NotBefore *metav1.Time `json:"notBefore,omitempty"`
	// ExpiresAt or ExpiresIn (default 14 days, PlanetLab's slice lifetime;
	// 8 weeks for a withdrawal, the longest any ticket it revokes lives)
	// is the ticket's expiry.
	ExpiresAt *metav1.Time     `json:"expiresAt,omitempty"`
	ExpiresIn *metav1.Duration `json:"expiresIn,omitempty"`
	// Sliver, Pool or Withdraw is the grant.
	Sliver   *SliverSpec           `json:"sliver,omitempty"`
	Pool     *PoolSpec             `json:"pool,omitempty"`
	Withdraw *ticket.WithdrawGrant `json:"withdraw,omitempty"`
}

// SliverSpec is a sliver grant with its slice expiry as a time.
type SliverSpec struct {
	ticket.SliverGrant `json:",inline"`
	// ExpiresAt is the slice's expiry (default: the ticket's).
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
}

// PoolSpec is a pool grant with its end as a time.
type PoolSpec struct {
	ticket.PoolGrant `json:",inline"`
	// Until is when the binding ends (default: the ticket's expiry).
	Until *metav1.Time `json:"until,omitempty"`
}

// defaultLifetime is a ticket's default lifetime: PlanetLab's 14 days.
const defaultLifetime = 14 * 24 * time.Hour

func issue(args []string, std IO) error {
	fs := cli.NewFlagSet("ticket issue", "-f SPEC.yaml (--key FILE | --key-secret NS/NAME) [flags]",
		"Signs a ticket (a sliver grant, a pool grant, or the withdrawal of a slice, which revokes\n"+
			"its older tickets at the audience: withdraw: {slice: plc.princeton.codeen}) for an audience\n"+
			"from a YAML spec, and prints\n"+
			"the token, or with -o ticket a Ticket manifest to `kubectl apply` at the audience.\n\n"+
			"Spec:\n  audience: ple\n  expiresIn: 336h          # or expiresAt: 2027-01-01T00:00:00Z\n"+
			"  sliver:\n    slice: plc.princeton.codeen\n    description: a content distribution network\n"+
			"    template: {image: nginx}\n    cpuShare: 1\n")
	var (
		k                keyFlags
		file, out, chain string
		name, namespace  string
	)
	k.bind(fs)
	fs.StringVar(&file, "f", "", "The ticket spec (YAML); - reads standard input.")
	fs.StringVar(&chain, "chain", "", "File of the delegations from a root authority to the signer, one token per line, root first (for a delegate's tickets).\n"+
		"A ticket that would expire after the chain's last delegation is refused, as its audience would refuse it.")
	fs.StringVar(&out, "o", "token", "Output: token, or ticket (a Ticket manifest).")
	fs.StringVar(&name, "name", "", "With -o ticket: the Ticket's name (default: from the grant and jti).")
	fs.StringVar(&namespace, "namespace", "", "With -o ticket: the Ticket's namespace.")
	if help, err := parseArgs(fs, args); help || err != nil {
		return err
	}
	if file == "" {
		return errors.New("-f SPEC.yaml is required")
	}
	if out != "token" && out != "ticket" {
		return fmt.Errorf("-o must be token or ticket, got %q", out)
	}
	data, err := readInput(file, std)
	if err != nil {
		return err
	}
	spec := &IssueSpec{}
	if err := yaml.UnmarshalStrict(data, spec); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	claims, err := spec.claims(std.Now())
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if chain != "" {
		links, last, err := readChain(chain)
		if err != nil {
			return err
		}
		if claims.Expiry > last.Expiry {
			return fmt.Errorf("the ticket would expire at %s, after its delegation (%s → %s, which expires at %s): give an earlier expiresAt or a shorter expiresIn",
				unixTime(claims.Expiry), last.Issuer, last.Subject, unixTime(last.Expiry))
		}
		claims.Chain = links
	}
	signer, err := k.signer(context.Background())
	if err != nil {
		return err
	}
	token, err := signer.Issue(claims)
	if err != nil {
		return err
	}
	if out == "token" {
		fmt.Fprintln(std.Out, token)
		return nil
	}
	return printTicket(std, token, &claims, name, namespace)
}

// claims turns the spec into a ticket's claims.
func (s *IssueSpec) claims(now time.Time) (ticket.Claims, error) {
	c := ticket.Claims{Audience: s.Audience, ID: s.ID, IssuedAt: now.Unix()}
	if c.ID == "" {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return c, err
		}
		c.ID = hex.EncodeToString(b)
	}
	switch {
	case s.ExpiresAt != nil && s.ExpiresIn != nil:
		return c, errors.New("give expiresAt or expiresIn, not both")
	case s.ExpiresAt != nil:
		c.Expiry = s.ExpiresAt.Unix()
	case s.ExpiresIn != nil:
		c.Expiry = now.Add(s.ExpiresIn.Duration).Unix()
	case s.Withdraw != nil:
		c.Expiry = now.Unix() + ticket.MaxLifetimeSeconds
	default:
		c.Expiry = now.Add(defaultLifetime).Unix()
	}
	if s.NotBefore != nil {
		c.NotBefore = s.NotBefore.Unix()
	}
	if s.Sliver != nil {
		g := s.Sliver.SliverGrant
		if s.Sliver.ExpiresAt != nil {
			g.ExpiresAt = s.Sliver.ExpiresAt.Unix()
		}
		c.Sliver = &g
	}
	if s.Pool != nil {
		g := s.Pool.PoolGrant
		if s.Pool.Until != nil {
			g.Until = s.Pool.Until.Unix()
		}
		c.Pool = &g
	}
	c.Withdraw = s.Withdraw
	return c, nil
}

// printTicket writes a Ticket manifest holding the token.
func printTicket(std IO, token string, c *ticket.Claims, name, namespace string) error {
	if name == "" {
		name = strings.ReplaceAll(c.Issuer, ".", "-") + "-" + strings.ToLower(c.Kind()) + "-" + strings.ToLower(c.ID)
		if len(name) > 63 {
			name = name[:63]
		}
		name = strings.TrimRight(strings.Map(func(r rune) rune {
			if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' {
				return r
			}
			return '-'
		}, name), "-")
	}
	tk := planetv1.Ticket{
		TypeMeta:   metav1.TypeMeta{APIVersion: planetv1.GroupVersion.String(), Kind: "Ticket"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec:       planetv1.TicketSpec{Token: token},
	}
	b, err := yaml.Marshal(map[string]any{"apiVersion": tk.APIVersion, "kind": tk.Kind, "metadata": compactMeta(tk.ObjectMeta), "spec": tk.Spec})
	if err != nil {
		return err
	}
	_, err = std.Out.Write(b)
	return err
}

func compactMeta(m metav1.ObjectMeta) map[string]string {
	out := map[string]string{"name": m.Name}
	if m.Namespace != "" {
		out["namespace"] = m.Namespace
	}
	return out
}

// readChain reads a --chain file: delegation tokens from a root authority,
// root first, separated by white space (one a line). It returns them and
// the claims of the last one, read for their form only (the receiver
// verifies the chain), so that nothing is signed to outlive it.
func readChain(file string) ([]string, *ticket.DelegationClaims, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, err
	}
	links := strings.Fields(string(data))
	if len(links) == 0 {
		return nil, nil, fmt.Errorf("--chain %s holds no delegation", file)
	}
	last, err := ticket.InspectDelegation(links[len(links)-1])
	if err != nil {
		return nil, nil, fmt.Errorf("--chain %s: its last delegation: %w", file, err)
	}
	return links, last, nil
}

// unixTime writes Unix seconds as an RFC 3339 time, UTC.
func unixTime(s int64) string { return time.Unix(s, 0).UTC().Format(time.RFC3339) }

// readInput reads a file, or standard input for "-".
func readInput(file string, std IO) ([]byte, error) {
	if file == "-" {
		return readAllLimited(std.In)
	}
	return os.ReadFile(file)
}
