// Package cli holds what the subcommands of the one binary share: flag
// parsing with the zap logging flags, and setting controller-runtime's
// logger from them.
package cli

import (
	"flag"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// Parse parses a subcommand's arguments: the flags bind registers plus the
// zap logging flags (--zap-log-level...), then sets controller-runtime's
// logger.
func Parse(name string, args []string, bind func(*flag.FlagSet)) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	bind(fs)
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	return nil
}
