// Package cli holds what the subcommands of the one binary share: flag
// parsing with the zap logging flags, usage on --help (exit status 0), and
// setting controller-runtime's logger from the flags.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// ErrHelp is returned when the user asked for --help: the usage was
// printed and the program exits 0.
var ErrHelp = flag.ErrHelp

// Stdout is where usage goes (tests may set it).
var Stdout io.Writer = os.Stdout

// Parse parses a subcommand's arguments: the flags bind registers plus the
// zap logging flags (--zap-log-level...), then sets controller-runtime's
// logger. On --help it prints the usage to standard output and returns
// ErrHelp.
func Parse(name string, args []string, bind func(*flag.FlagSet)) error {
	fs := NewFlagSet(name, "[flags]", "")
	bind(fs)
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	if err := ParseFlags(fs, args); err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	return nil
}

// NewFlagSet returns a flag set for "planetkube <name>" whose --help prints
// "Usage: planetkube <name> <synopsis>", the description and the flags to
// standard output. Parse errors go to standard error.
func NewFlagSet(name, synopsis, description string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: planetkube %s %s\n", name, synopsis)
		if description != "" {
			fmt.Fprintf(out, "\n%s\n", description)
		}
		fmt.Fprintln(out, "\nFlags:")
		fs.PrintDefaults()
	}
	return fs
}

// ParseFlags parses args with fs; on --help it prints the usage to
// standard output and returns ErrHelp.
func ParseFlags(fs *flag.FlagSet, args []string) error {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" || a == "--h" {
			fs.SetOutput(Stdout)
			fs.Usage()
			return ErrHelp
		}
	}
	return fs.Parse(args)
}

// IsHelp says whether err is the user asking for help.
func IsHelp(err error) bool { return errors.Is(err, flag.ErrHelp) }

// SplitList splits a comma-separated flag value, dropping empty items and
// the spaces around each.
func SplitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// ParseCIDRs parses a comma-separated list of CIDRs given to flagName; an
// error names the flag, the bad item and an example.
func ParseCIDRs(flagName, list, example string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range SplitList(list) {
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a CIDR such as %s", flagName, f, example)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// EnvOr returns the environment variable's value, or def when it is unset
// or empty.
func EnvOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Dispatch runs the sub-command of "planetkube name" that args start with,
// from cmds, with the rest of args and std; with no sub-command it returns
// the usage as an error, with help it prints the usage to out.
func Dispatch[T any](name string, args []string, out io.Writer, std T, cmds map[string]func([]string, T) error) error {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	slices.Sort(names)
	usage := fmt.Sprintf("Usage: planetkube %s <%s> [flags]\nRun `planetkube %s <command> --help` for a command's flags.\n", name, strings.Join(names, "|"), name)
	if len(args) == 0 {
		return errors.New(strings.TrimSpace(usage))
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(out, usage)
		return nil
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		return fmt.Errorf("unknown command %q\n%s", args[0], usage)
	}
	return cmd(args[1:], std)
}
