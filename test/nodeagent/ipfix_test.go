package nodeagent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/planetkube/planetkube/internal/testing/ports"
)

// collector is a real IPFIX collector, Debian's nfcapd, on a loopback UDP
// port, rotating its file every 2 s so that what it received can be read
// while it runs.
type collector struct {
	addr, dir string
}

// startCollector starts nfcapd, or returns nil when it is not installed
// (the test that reads it then skips, saying so).
func startCollector(t *testing.T) *collector {
	t.Helper()
	nfcapd, err := exec.LookPath("nfcapd")
	if err != nil {
		return nil
	}
	port := ports.FreeUDP(t)
	col := &collector{addr: fmt.Sprintf("127.0.0.1:%d", port), dir: t.TempDir()}
	cmd := exec.Command(nfcapd, "-b", "127.0.0.1", "-p", strconv.Itoa(port), "-w", col.dir, "-t", "2")
	log, err := os.Create(filepath.Join(t.TempDir(), "nfcapd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait(); log.Close() })
	return col
}

// records returns what nfdump reads from the files nfcapd has closed, one
// line per record: proto|src|sport|dst|dport|packets|bytes|slice number|slice name.
func (c *collector) records(ctx context.Context) (string, error) {
	files, _ := filepath.Glob(filepath.Join(c.dir, "nfcapd.2*"))
	if len(files) == 0 {
		return "", fmt.Errorf("no file closed yet in %s", c.dir)
	}
	var out strings.Builder
	for _, f := range files {
		b, err := exec.CommandContext(ctx, "nfdump", "-q", "-N", "-6", "-r", f, "-o", "fmt:%pr|%sa|%sp|%da|%dp|%pkt|%byt|%ivrf|%ivrfnam").CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("nfdump -r %s: %v: %s", f, err, b)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			fs := strings.Split(line, "|")
			for i := range fs {
				fs[i] = strings.TrimSpace(fs[i])
			}
			out.WriteString(strings.Join(fs, "|") + "\n")
		}
	}
	return out.String(), nil
}
