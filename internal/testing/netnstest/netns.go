// Package netnstest builds real network-namespace topologies for tests of
// the node agent: a "node" namespace standing for a Kubernetes node's host
// network, pod namespaces behind veth pairs, and an "internet" namespace
// behind an uplink, with forwarding, masquerade and conntrack as on a node.
//
// Everything needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and the ip and nft
// commands (Debian packages iproute2 and nftables); tests call RequireRoot
// first. Every name carries a random suffix, so that test packages running
// at the same time do not collide, and every namespace is deleted by
// t.Cleanup.
package netnstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/planetkube/planetkube/internal/agent/netns"
	"github.com/planetkube/planetkube/internal/testing/skiplog"
)

// RequireRootEnv is the environment variable that turns RequireRoot's skip
// into a failure (CI sets it to 1).
const RequireRootEnv = skiplog.RequireRootEnv

// RequireRoot skips the test when the process is not root, or fails it when
// PLANETKUBE_REQUIRE_ROOT=1. A skip is recorded for `make test`'s summary
// (internal/testing/skiplog). It also checks that the ip and nft commands are
// installed.
func RequireRoot(t testing.TB) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, cmd := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(cmd); err != nil {
			missing = append(missing, "the "+cmd+" command")
		}
	}
	if len(missing) == 0 {
		return
	}
	skiplog.UnlessRoot(t, "Test needs "+strings.Join(missing, " and ")+" (apt-get install iproute2 nftables)")
}

// NS is one network namespace, mounted at Path (/run/netns/Name).
type NS struct {
	// Name is the namespace's name for `ip netns`.
	Name string
	// Path is the bind mount of the namespace, for setns(2) or
	// capture.Options.NetNS.
	Path string
	// IPv4 and IPv6 are the namespace's main addresses: a pod's address, the
	// internet host's address, or the node's uplink address (the address
	// masqueraded pod traffic leaves with).
	IPv4, IPv6 netip.Addr

	deleted bool
}

// newNS creates the namespace name and brings its loopback up.
func newNS(name string) (*NS, error) {
	ns := &NS{Name: name, Path: filepath.Join("/run/netns", name)}
	if err := run(context.Background(), nil, "ip", "netns", "add", name); err != nil {
		return nil, err
	}
	if err := ns.Run(context.Background(), "ip", "link", "set", "lo", "up"); err != nil {
		_ = ns.delete()
		return nil, err
	}
	return ns, nil
}

// delete deletes the namespace (it lives on while sockets hold it).
func (ns *NS) delete() error {
	if ns.deleted {
		return nil
	}
	ns.deleted = true
	return run(context.Background(), nil, "ip", "netns", "delete", ns.Name)
}

// Do runs fn on a locked OS thread switched into the namespace, and switches
// back afterwards. Sockets that fn creates stay in the namespace whatever
// thread uses them later; goroutines that fn starts do not run in it.
func (ns *NS) Do(fn func() error) error {
	return Do(ns.Path, fn)
}

// Do runs fn on a locked OS thread switched into the network namespace
// mounted at path, and switches back afterwards (see NS.Do).
func Do(path string, fn func() error) error { return netns.Do(path, fn) }

// Command returns a command that runs name in the namespace (ip netns exec).
func (ns *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Run runs name in the namespace and returns an error carrying its output
// when it fails.
func (ns *NS) Run(ctx context.Context, name string, args ...string) error {
	return run(ctx, nil, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// SetSysctl writes a per-namespace sysctl, named as sysctl(8) names it
// ("net.netfilter.nf_conntrack_acct"), from a thread inside the namespace.
func (ns *NS) SetSysctl(key, value string) error {
	return ns.Do(func() error {
		if err := os.WriteFile(sysctlPath(key), []byte(value), 0o644); err != nil {
			return fmt.Errorf("setting %s=%s in %s: %w", key, value, ns.Name, err)
		}
		return nil
	})
}

// Sysctl reads a per-namespace sysctl from a thread inside the namespace.
func (ns *NS) Sysctl(key string) (string, error) {
	var value string
	err := ns.Do(func() error {
		data, err := os.ReadFile(sysctlPath(key))
		if err != nil {
			return fmt.Errorf("reading %s in %s: %w", key, ns.Name, err)
		}
		value = strings.TrimSpace(string(data))
		return nil
	})
	return value, err
}

// sysctlPath returns the /proc/sys file of a dotted sysctl name.
func sysctlPath(key string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
}

// run runs a command, with stdin when not nil, and returns an error carrying
// its combined output when it fails.
func run(ctx context.Context, stdin []byte, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("running %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// randomSuffix returns 6 random hex characters.
func randomSuffix() string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("reading random bytes: %v", err))
	}
	return hex.EncodeToString(b)
}
