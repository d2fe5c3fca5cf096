// Package browsertest loads pages in a real, headless Chromium for tests:
// what a browser makes of the HTML (the DOM after parsing and running what
// may run), rather than the bytes the server sent.
//
// Tests call Require first: it skips the test when Chromium is missing,
// unless PLANETKUBE_REQUIRE_BROWSER=1 (as in CI), where it fails it.
package browsertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/planetkube/planetkube/internal/testing/skiplog"
)

// RequireEnv is the environment variable that, set to 1, makes a missing
// browser a test failure rather than a skip.
const RequireEnv = "PLANETKUBE_REQUIRE_BROWSER"

// BrowserEnv, if set, is the path of the browser to use.
const BrowserEnv = "PLANETKUBE_BROWSER"

// names are the browser's executable names tried on $PATH, in order.
var names = []string{"chromium", "chromium-browser", "google-chrome"}

// Path returns the path of the Chromium to run: $PLANETKUBE_BROWSER, or the
// first of chromium, chromium-browser and google-chrome on $PATH.
func Path() (string, error) {
	if p := os.Getenv(BrowserEnv); p != "" {
		return exec.LookPath(p)
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", errors.New("browsertest: no chromium on $PATH (apt-get install chromium)")
}

// Require returns the browser's path; without one it skips t (recorded for
// `make test`'s summary, see internal/testing/skiplog), or fails it if
// $PLANETKUBE_REQUIRE_BROWSER is 1.
func Require(t testing.TB) string {
	t.Helper()
	p, err := Path()
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("%v, and %s=1", err, RequireEnv)
		}
		skiplog.Skip(t, err)
	}
	return p
}

// flags make Chromium headless and quiet on a machine with a closed network:
// no sandbox (tests run as root in containers), no GPU, no background
// traffic, and a fresh profile (--user-data-dir, added by run).
var flags = []string{
	"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
	"--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
}

// DumpDOM loads url in headless Chromium and returns the DOM it ends with,
// serialized as HTML. ctx bounds the browser's run.
func DumpDOM(ctx context.Context, url string) (string, error) {
	out, err := run(ctx, "--dump-dom", url)
	if err != nil {
		return "", err
	}
	return string(out), nil
}

// run runs the browser with a fresh profile and args, and returns its stdout.
func run(ctx context.Context, args ...string) ([]byte, error) {
	p, err := Path()
	if err != nil {
		return nil, err
	}
	profile, err := os.MkdirTemp("", "browsertest-profile-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(profile)
	cmd := exec.CommandContext(ctx, p, append(append(flags[:len(flags):len(flags)], "--user-data-dir="+profile), args...)...)
	cmd.Dir = profile
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Chromium forks helpers that may keep the pipes open: do not wait on
	// them once the browser itself is gone.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		tail := stderr.Bytes()
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return nil, fmt.Errorf("browsertest: %s: %w\n%s", filepath.Base(p), err, tail)
	}
	return stdout.Bytes(), nil
}
