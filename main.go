// Command planetkube is PlanetKube's one binary. Its subcommands:
//
//	planetkube manager [flags]      the controllers (default when no subcommand is given)
//	planetkube node-agent [flags]   the node agent: flow auditing per slice (a DaemonSet)
//	planetkube archiver [flags]     the flow archive: every node's sealed segments, kept past the nodes' retention
//	planetkube ticket issue|inspect sign a ticket; print one's claims and whether it verifies
//	planetkube authority keygen|delegate  make an authority key; delegate to a child authority
//	planetkube slice renew|plan     renew a slice (at most 8 weeks ahead); what a slice would get
//
// Every subcommand prints its usage with --help and exits 0.
package main

import (
	"fmt"
	"os"

	"github.com/planetkube/planetkube/internal/agent"
	"github.com/planetkube/planetkube/internal/archiver"
	"github.com/planetkube/planetkube/internal/cli"
	"github.com/planetkube/planetkube/internal/manager"
	"github.com/planetkube/planetkube/internal/slicecmd"
	"github.com/planetkube/planetkube/internal/ticketcmd"
)

const usage = `Usage: planetkube <command> [flags]

Commands:
  manager      the controllers (the default when no command is given)
  node-agent   the node agent: flow auditing per slice (a DaemonSet)
  archiver     the flow archive: downloads every node's sealed flow segments (a StatefulSet)
  ticket       issue | inspect: sign a ticket; print one's claims and whether it verifies
  authority    keygen | delegate: make an authority key; delegate to a child authority
  slice        renew | plan: renew a slice, at most 8 weeks ahead; say what a slice would get (a dry run)

Run "planetkube <command> --help" for a command's flags.
`

func main() {
	args := os.Args[1:]
	cmd := "manager"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	} else if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		fmt.Print(usage)
		return
	}
	var err error
	switch cmd {
	case "manager":
		err = manager.Main(args)
	case "node-agent":
		err = agent.Main(args)
	case "archiver":
		err = archiver.Main(args)
	case "ticket":
		err = ticketcmd.Ticket(args, ticketcmd.StdIO())
	case "authority":
		err = ticketcmd.Authority(args, ticketcmd.StdIO())
	case "slice":
		err = slicecmd.Slice(args, slicecmd.StdIO())
	case "help":
		fmt.Print(usage)
		return
	default:
		err = fmt.Errorf("unknown command %q\n\n%s", cmd, usage)
	}
	if cli.IsHelp(err) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}
