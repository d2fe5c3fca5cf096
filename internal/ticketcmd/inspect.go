package ticketcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/authority"
	"github.com/planetkube/planetkube/internal/cli"
	"github.com/planetkube/planetkube/internal/ticket"
)

func inspect(args []string, std IO) error {
	fs := cli.NewFlagSet("ticket inspect", "TOKEN|- [--authorities FILE | --from-cluster] [flags]",
		"Prints a ticket's claims and, given the Authorities to check it against (a YAML file of\n"+
			"Authority objects, or those of the cluster), whether it verifies and, if not, why.\n"+
			"Exit status 0 when it verifies or nothing was given to verify against, 1 when it is refused.")
	var (
		k           keyFlags
		authorities string
		fromCluster bool
		audience    string
	)
	k.bind(fs)
	fs.StringVar(&authorities, "authorities", "", "YAML file of Authority objects (several documents, or a List) to verify against.")
	fs.BoolVar(&fromCluster, "from-cluster", false, "Verify against the cluster's Authorities (through the kubeconfig).")
	fs.StringVar(&audience, "audience", "", "The audience to check (default: the ticket's own aud).")
	if help, err := parseArgs(fs, args); help || err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("give one TOKEN (or - to read it from standard input)")
	}
	token := fs.Arg(0)
	if token == "-" {
		b, err := readAllLimited(std.In)
		if err != nil {
			return err
		}
		token = strings.TrimSpace(string(b))
	}
	claims, kid, err := ticket.Inspect(token)
	if err != nil {
		return err
	}
	out, err := yaml.Marshal(struct {
		KeyID  string         `json:"kid"`
		Claims *ticket.Claims `json:"claims"`
	}{kid, claims})
	if err != nil {
		return err
	}
	fmt.Fprintf(std.Out, "%s", out)

	var list []planetv1.Authority
	switch {
	case authorities != "" && fromCluster:
		return errors.New("give --authorities or --from-cluster, not both")
	case authorities != "":
		if list, err = readAuthorities(authorities); err != nil {
			return err
		}
	case fromCluster:
		c, err := k.client()
		if err != nil {
			return err
		}
		all := &planetv1.AuthorityList{}
		if err := c.List(context.Background(), all); err != nil {
			return fmt.Errorf("listing Authorities: %w", err)
		}
		list = all.Items
	default:
		fmt.Fprintln(std.Out, "verified: not checked (give --authorities FILE or --from-cluster)")
		return nil
	}
	if audience == "" {
		audience = claims.Audience
	}
	v := &ticket.Verifier{Audience: audience, Keys: authority.Keyring(list)}
	got, err := v.Verify(token, std.Now())
	if err != nil {
		fmt.Fprintf(std.Out, "verified: no\nreason: %s\n", ticket.ReasonOf(err))
		return err
	}
	fmt.Fprintf(std.Out, "verified: yes\nroot: %s\nexpires: %s\n", got.Root, got.Expires().Format("2006-01-02T15:04:05Z"))
	return nil
}

// readAuthorities reads Authority objects from a YAML file: documents of
// kind Authority, or a List of them.
func readAuthorities(file string) ([]planetv1.Authority, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	var out []planetv1.Authority
	for {
		var doc struct {
			Kind  string               `json:"kind"`
			Items []planetv1.Authority `json:"items"`
			planetv1.Authority
		}
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		switch doc.Kind {
		case "Authority":
			out = append(out, doc.Authority)
		case "List", "AuthorityList":
			out = append(out, doc.Items...)
		case "":
		default:
			return nil, fmt.Errorf("%s: a %s, want Authority objects", file, doc.Kind)
		}
	}
}
