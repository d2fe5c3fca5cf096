// Package tour holds the README to what `make run` shows: it sets up the
// emulated cluster as `make run` does (the Makefile's 50 nodes over its five
// sites, the real node real-princeton-0 with the chart installed by helm,
// config/samples) and compares the README's sample output of `kubectl get
// sites` and `kubectl get slices -A -o wide` with what kubectl prints, the
// AGE and EXPIRES columns aside; then it runs the README's commands on the
// real node (the keys, the traffic, the lookup naming codeen). It needs
// what a real node needs (root, make tools, make test-deps), as the
// README's tour does; without, it skips and says so (and fails under
// PLANETKUBE_REQUIRE_ROOT=1).
package tour

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/planetkube/planetkube/internal/testing/emulator"
	"github.com/planetkube/planetkube/internal/testing/poll"
	"github.com/planetkube/planetkube/internal/testing/realnode"
	"github.com/planetkube/planetkube/internal/testing/skiplog"
)

// The Makefile's `make run` defaults (NODES, SITES).
const makeRunNodes = 50

var makeRunSites = []string{"princeton", "mit", "berkeley", "ethz", "tokyo"}

// sample is one command of the README's console block and what it prints.
type sample struct {
	command string   // after "$ "
	output  []string // its lines
}

// readmeSamples reads the console block of README.md that shows the
// samples.
func readmeSamples(t *testing.T, root string) []sample {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		out     []sample
		inBlock bool
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "```console":
			inBlock = true
		case inBlock && line == "```":
			if len(out) > 0 && out[0].command == "kubectl get sites" {
				return out
			}
			inBlock, out = false, nil
		case inBlock && strings.HasPrefix(line, "$ "):
			out = append(out, sample{command: strings.TrimPrefix(line, "$ ")})
		case inBlock && len(out) > 0:
			out[len(out)-1].output = append(out[len(out)-1].output, line)
		}
	}
	t.Fatal("README.md has no console block that starts with `$ kubectl get sites`")
	return nil
}

// normalize drops the columns that change from run to run (AGE, EXPIRES)
// and the padding: what is left is one line of single-space fields a row.
func normalize(lines []string) []string {
	if len(lines) == 0 {
		return nil
	}
	header := splitColumns(lines[0])
	drop := map[int]bool{}
	for i, h := range header {
		if h == "AGE" || h == "EXPIRES" {
			drop[i] = true
		}
	}
	var out []string
	for _, l := range lines {
		// Columns are split on two or more spaces: a DISPLAY name holds single ones.
		var fields []string
		for i, f := range splitColumns(l) {
			if !drop[i] {
				fields = append(fields, f)
			}
		}
		out = append(out, strings.Join(fields, " | "))
	}
	return out
}

// splitColumns splits a kubectl table row at runs of two or more spaces.
func splitColumns(l string) []string {
	var out []string
	for _, part := range strings.Split(l, "  ") {
		if p := strings.TrimSpace(part); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func TestReadmeTourIsWhatMakeRunShows(t *testing.T) {
	bin, err := emulator.FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	if err := emulator.CheckBinaries(bin); err != nil {
		t.Fatalf("%v: run `make tools build` first", err)
	}
	root := filepath.Dir(bin)
	want := readmeSamples(t, root)

	// Long enough to wait for another package's real node (one at a time
	// on a machine: realnode.LockFile).
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	if err := realnode.Check(bin); err != nil {
		skiplog.UnlessRoot(t, "Skipping: the README's tour is make run's with a real node, and there is none here: "+err.Error())
	}
	c, err := emulator.Start(ctx, emulator.Options{BinDir: bin, Nodes: makeRunNodes, Sites: makeRunSites, RealNodes: true, Log: testLog{t}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	}()
	site, err := realnode.InstallSite(ctx, c, realnode.SiteOptions{Log: testLog{t}})
	if site != nil {
		defer func() { _ = site.Nodes.Stop() }()
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ApplySamples(ctx, filepath.Join(root, "config", "samples")); err != nil {
		t.Fatal(err)
	}
	if _, err := site.ServeInternet(); err != nil {
		t.Fatal(err)
	}

	// Every sample at once, until all print what the README shows: the
	// failure names each that does not.
	poll.Until(t, "kubectl printing what the README shows", 90*time.Second, time.Second, func() error {
		var errs []error
		for _, s := range want {
			args := append([]string{"--kubeconfig", c.Kubeconfig}, strings.Fields(strings.TrimPrefix(s.command, "kubectl "))...)
			out, err := exec.CommandContext(ctx, filepath.Join(bin, "kubectl"), args...).CombinedOutput()
			if err != nil {
				errs = append(errs, fmt.Errorf("`%s`: %v: %s", s.command, err, out))
				continue
			}
			got := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
			if g, w := strings.Join(normalize(got), "\n"), strings.Join(normalize(s.output), "\n"); g != w {
				errs = append(errs, fmt.Errorf("`%s` prints (AGE and EXPIRES aside):\n%s\nthe README shows:\n%s\nkubectl's output as is:\n%s", s.command, g, w, out))
			}
		}
		return errors.Join(errs...)
	})
	// The flow of the README's tcp-send ends at once (the node forgets
	// closed connections in a second, not conntrack's 2 minutes): the
	// agent records it when it ends, or within its minute's dump.
	if _, err := site.Node.ShortenConntrack(realnode.ClosedTCPConntrack...); err != nil {
		t.Fatal(err)
	}
	checkRealNodeCommands(ctx, t, root, bin, c.Kubeconfig)
}

// testLog writes the emulator's progress to the test log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// readmeRealNodeCommands returns the README's commands about the real node:
// the kubectl exec lines and the lookup URL that the curl line fetches.
func readmeRealNodeCommands(t *testing.T, root string) (execs [][]string, lookup string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		cmd, _, _ := strings.Cut(line, "  #")
		switch {
		case strings.HasPrefix(cmd, "kubectl exec "):
			execs = append(execs, strings.Fields(strings.TrimPrefix(cmd, "kubectl ")))
		case strings.HasPrefix(cmd, "curl -s '"):
			lookup, _, _ = strings.Cut(strings.TrimPrefix(cmd, "curl -s '"), "'")
		}
	}
	if len(execs) != 2 || lookup == "" {
		t.Fatalf("README.md's real-node commands: %d kubectl exec lines and lookup %q, want 2 and the curl line's URL", len(execs), lookup)
	}
	return execs, lookup
}

// checkRealNodeCommands runs the README's kubectl exec lines (the keys
// printed, the traffic sent) and waits for the lookup it shows to name
// codeen for that traffic.
func checkRealNodeCommands(ctx context.Context, t *testing.T, root, bin, kubeconfig string) {
	t.Helper()
	execs, lookup := readmeRealNodeCommands(t, root)
	for i, args := range execs {
		out, err := exec.CommandContext(ctx, filepath.Join(bin, "kubectl"), append([]string{"--kubeconfig", kubeconfig}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("`kubectl %s`: %v: %s", strings.Join(args, " "), err, out)
		}
		if i == 0 && !strings.Contains(string(out), "alice@princeton") {
			t.Errorf("`kubectl %s` printed %q, want alice's key", strings.Join(args, " "), out)
		}
	}
	poll.Until(t, "the README's lookup naming codeen", 3*time.Minute, 2*time.Second, func() error {
		resp, err := http.Get(lookup)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(body), `"slice":"plc.princeton.codeen"`) {
			return fmt.Errorf("HTTP %d: %.300s", resp.StatusCode, body)
		}
		return nil
	})
}
