// Package slicecmd is the command line of slices, for their PIs:
//
//	planetkube slice renew NAME --for 14d   renew a slice, at most 8 weeks ahead
//	planetkube slice plan -f SLICE.yaml     what a slice would get, by a dry run
//
// It reaches the cluster through the kubeconfig, with the user's own rights
// (a site PI's are enough).
package slicecmd

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/planetkube/planetkube/internal/cli"
	"github.com/planetkube/planetkube/internal/scheme"
)

// commands maps each sub-command of "planetkube slice" to its function: one
// line each.
var commands = map[string]func([]string, IO) error{
	"renew": renew,
	"plan":  plan,
}

// IO is where a command writes, and its clock (tests set them).
type IO struct {
	Out, Err io.Writer
	// Now returns the current time.
	Now func() time.Time
}

// StdIO is the process's standard streams and clock.
func StdIO() IO { return IO{Out: os.Stdout, Err: os.Stderr, Now: time.Now} }

// Slice runs "planetkube slice <command> ...".
func Slice(args []string, std IO) error {
	return cli.Dispatch("slice", args, std.Out, std, commands)
}

// clusterFlags say which cluster and namespace a command works in.
type clusterFlags struct {
	kubeconfig, namespace string
}

// bind registers the flags on fs.
func (c *clusterFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config or in-cluster).")
	fs.StringVar(&c.namespace, "namespace", "", "The slice's namespace: its site's (default: the kubeconfig context's).")
	fs.StringVar(&c.namespace, "n", "", "Short for --namespace.")
}

// connect returns a client from the kubeconfig, changed by each of tweaks
// (a warning handler, say), and the namespace to work in: --namespace, else
// the kubeconfig context's, else "default".
func (c *clusterFlags) connect(tweaks ...func(*rest.Config)) (client.Client, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if c.kubeconfig != "" {
		rules.ExplicitPath = c.kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("loading kubeconfig: %w", err)
	}
	for _, tweak := range tweaks {
		tweak(cfg)
	}
	ns := c.namespace
	if ns == "" {
		if ns, _, err = cc.Namespace(); err != nil {
			return nil, "", fmt.Errorf("reading the kubeconfig's namespace: %w", err)
		}
	}
	k, err := client.New(cfg, client.Options{Scheme: scheme.Scheme()})
	if err != nil {
		return nil, "", err
	}
	return k, ns, nil
}

// parseArgs parses a command's flags and positional arguments, which may
// come in any order (NAME --for 14d, or --for 14d NAME); everything after
// "--" is positional. help says the usage was printed (--help) and the
// command is done.
func parseArgs(fs *flag.FlagSet, args []string) (positional []string, help bool, err error) {
	if err := cli.ParseFlags(fs, args); err != nil {
		if cli.IsHelp(err) {
			return nil, true, nil
		}
		return nil, false, err
	}
	for {
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, false, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(positional, rest...), false, nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
		if err := fs.Parse(args); err != nil {
			return nil, false, err
		}
	}
}
