package agent

import (
	"flag"
	"strings"
	"testing"
)

// TestMemorySourceFlag: the watchdog measures the node by default, the
// pods on request, and nothing else.
func TestMemorySourceFlag(t *testing.T) {
	parse := func(args ...string) (Options, error) {
		var o Options
		fs := flag.NewFlagSet("node-agent", flag.ContinueOnError)
		o.BindFlags(fs)
		if err := fs.Parse(append([]string{"--node-name=n1", "--memory-watchdog"}, args...)); err != nil {
			return o, err
		}
		return o, o.Validate()
	}
	if o, err := parse(); err != nil || o.MemorySource != "node" {
		t.Errorf("Default: source %q, %v; want node", o.MemorySource, err)
	}
	if o, err := parse("--memory-source=pods"); err != nil || o.MemorySource != "pods" {
		t.Errorf("--memory-source=pods: source %q, %v", o.MemorySource, err)
	}
	if _, err := parse("--memory-source=kubepods"); err == nil || !strings.Contains(err.Error(), "--memory-source") {
		t.Errorf("--memory-source=kubepods: %v, want an error naming the flag", err)
	}
}
