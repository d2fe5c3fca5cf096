package capture

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"github.com/planetkube/planetkube/internal/agent/netns"
)

// EnableAccounting sets net.netfilter.nf_conntrack_acct=1 (byte and packet
// counters) and net.netfilter.nf_conntrack_timestamp=1 (start and stop
// times) in the network namespace mounted at netns ("" for the current one).
// Both are per-namespace and apply to conntrack entries created afterwards.
// A setting that is already 1 is left alone, so an agent whose /proc/sys is
// read-only (a container that is not privileged) runs once something else
// (the DaemonSet's privileged init container) has set them.
func EnableAccounting(netns string) error {
	return inNetNS(netns, func() error {
		for _, name := range []string{"nf_conntrack_acct", "nf_conntrack_timestamp"} {
			path := "/proc/sys/net/netfilter/" + name
			if cur, err := os.ReadFile(path); err == nil && string(bytes.TrimSpace(cur)) == "1" {
				continue
			}
			err := os.WriteFile(path, []byte("1"), 0o644)
			switch {
			case err == nil:
			case errors.Is(err, fs.ErrNotExist):
				return fmt.Errorf("setting net.netfilter.%s=1: %w (is the nf_conntrack module loaded?)", name, err)
			case errors.Is(err, fs.ErrPermission) || errors.Is(err, unix.EROFS):
				return fmt.Errorf("setting net.netfilter.%s=1: %w (the agent needs CAP_NET_ADMIN over the network namespace and a writable /proc/sys: set it on the node, or run planetkube node-agent --setup-only privileged first, as the DaemonSet's init container does)", name, err)
			default:
				return fmt.Errorf("setting net.netfilter.%s=1: %w", name, err)
			}
		}
		return nil
	})
}

// inNetNS runs fn inside the network namespace mounted at path, or directly
// when path is "".
func inNetNS(path string, fn func() error) error { return netns.Do(path, fn) }
