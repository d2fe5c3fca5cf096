package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// profiler reads Go's pprof endpoints of a manager started with
// --pprof-bind-address=127.0.0.1:<port>, and keeps what it fetched in dir.
type profiler struct {
	port int
	dir  string
}

// fetch saves the profile at path (such as "heap?gc=1") as file in p.dir.
func (p profiler) fetch(ctx context.Context, path, file string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(p.port)+"/debug/pprof/"+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("fetching the %s profile: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("reading the %s profile: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("fetching the %s profile: %s: %s", path, resp.Status, bytes.TrimSpace(body))
	}
	out := filepath.Join(p.dir, file)
	return out, os.WriteFile(out, body, 0o644)
}

// top returns the first n lines of `go tool pprof -top` of the profile in
// file, by the sample index given (such as inuse_space; "" for the
// profile's default) and with pprof's extra flags (such as -cum), after
// pprof's header lines.
func (p profiler) top(ctx context.Context, file, sampleIndex string, n int, extra ...string) (string, error) {
	args := append([]string{"tool", "pprof", "-top", "-nodecount=" + strconv.Itoa(n)}, extra...)
	if sampleIndex != "" {
		args = append(args, "-sample_index="+sampleIndex)
	}
	out, err := exec.CommandContext(ctx, "go", append(args, file)...).Output()
	if err != nil {
		return "", fmt.Errorf("go tool pprof -top %s: %w", file, err)
	}
	// Keep pprof's summary lines (what is shown of what total) and the
	// table, not the file and build lines above them.
	var keep []string
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if strings.HasPrefix(line, "File:") || strings.HasPrefix(line, "Build ID:") || strings.HasPrefix(line, "Type:") || strings.HasPrefix(line, "Time:") {
			continue
		}
		keep = append(keep, line)
	}
	return strings.Join(keep, "\n"), nil
}
