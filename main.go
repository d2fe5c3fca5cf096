// Command planetkube is PlanetKube's one binary. Its subcommands:
//
//	planetkube manager [flags]      the controllers (default when no subcommand is given)
//	planetkube node-agent [flags]   the node agent: flow auditing per slice (a DaemonSet)
//
// Run `planetkube manager --help` or `planetkube node-agent --help` for the flags.
package main

import (
	"fmt"
	"os"

	"github.com/planetkube/planetkube/internal/agent"
	"github.com/planetkube/planetkube/internal/manager"
)

func main() {
	args := os.Args[1:]
	cmd := "manager"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "manager":
		err = manager.Main(args)
	case "node-agent":
		err = agent.Main(args)
	default:
		err = fmt.Errorf("unknown subcommand %q (want: manager or node-agent)", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}
