// Package skiplog records the tests that skip because of the machine they
// run on (no root, no Chromium, no control-plane binaries), so that `make
// test` can end by naming them instead of letting a suite pass silently in
// a few milliseconds.
//
// Skip and Skipf skip the test as t.Skip does and, when $PLANETKUBE_SKIP_LOG
// names a file, append one line to it: "<package>/<test>: <reason>", the
// package as its folder under the module root. Test binaries running at
// once append whole lines (O_APPEND, one write each).
package skiplog

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// LogEnv names the environment variable that holds the file to append to;
// the Makefile's test target sets it.
const LogEnv = "PLANETKUBE_SKIP_LOG"

// Skip records why t skips (fmt.Sprint of args) and skips it.
func Skip(t testing.TB, args ...any) {
	t.Helper()
	Record(t, fmt.Sprint(args...))
	t.Skip(args...)
}

// Skipf records why t skips (fmt.Sprintf of format and args) and skips it.
func Skipf(t testing.TB, format string, args ...any) {
	t.Helper()
	Record(t, fmt.Sprintf(format, args...))
	t.Skipf(format, args...)
}

// Record appends "<package>/<test>: <reason>" to the file named by
// $PLANETKUBE_SKIP_LOG, if set. A failure to write is logged on t, not
// fatal: the skip itself still happens.
func Record(t testing.TB, reason string) {
	t.Helper()
	file := os.Getenv(LogEnv)
	if file == "" {
		return
	}
	line := packagePath() + "/" + t.Name() + ": " + strings.Join(strings.Fields(reason), " ") + "\n"
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err == nil {
		_, err = f.WriteString(line)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Logf("Recording the skip in $%s: %v", LogEnv, err)
	}
}

// packagePath is the test's package as a folder under the module root: go
// test runs a package's tests in its folder. Outside a module it is the
// working directory.
func packagePath() string {
	wd, err := os.Getwd()
	if err != nil {
		return "?"
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if rel, err := filepath.Rel(dir, wd); err == nil {
				return filepath.ToSlash(rel)
			}
			return wd
		}
		if filepath.Dir(dir) == dir {
			return wd
		}
	}
}

// RequireRootEnv, set to 1, turns the skips of tests that need root (and
// the kernel features root gives) into failures: CI on a machine that has
// them sets it, so that a suite cannot pass by skipping.
const RequireRootEnv = "PLANETKUBE_REQUIRE_ROOT"

// UnlessRoot does nothing when missing is empty; otherwise it skips t with
// missing as the reason, or fails it when $PLANETKUBE_REQUIRE_ROOT is 1.
func UnlessRoot(t testing.TB, missing string) {
	t.Helper()
	if missing == "" {
		return
	}
	if os.Getenv(RequireRootEnv) == "1" {
		t.Fatalf("%s, and %s=1", missing, RequireRootEnv)
	}
	Skip(t, missing)
}
