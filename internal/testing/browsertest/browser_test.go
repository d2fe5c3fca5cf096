package browsertest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/planetkube/planetkube/internal/testing/skiplog"
)

func TestDumpDOMRunsScripts(t *testing.T) {
	Require(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!DOCTYPE html><html><head><title>before</title></head><body><p id="p">static</p>` +
			`<script>document.title = "after"; document.getElementById("p").textContent = "from " + "script";</script></body></html>`))
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dom, err := DumpDOM(ctx, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dom, "<title>after</title>") || !strings.Contains(dom, `<p id="p">from script</p>`) {
		t.Errorf("the DOM is not the one the script made:\n%s", dom)
	}
}

func TestDumpDOMDeadline(t *testing.T) {
	Require(t)
	// The page never finishes loading; the context ends the browser.
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := DumpDOM(ctx, srv.URL); err == nil {
		t.Fatal("no error")
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("took %v after a 2s deadline", el)
	}
}

// tb records what Require does to a test.
type tb struct {
	testing.TB
	skipped, failed bool
}

func (t *tb) Helper()               {}
func (t *tb) Skip(...any)           { t.skipped = true; runtime.Goexit() }
func (t *tb) Fatalf(string, ...any) { t.failed = true; runtime.Goexit() }
func (t *tb) require() (path string) {
	done := make(chan struct{})
	go func() { defer close(done); path = Require(t) }()
	<-done
	return path
}

func TestRequireWithoutBrowser(t *testing.T) {
	t.Setenv(BrowserEnv, "/nonexistent/chromium")
	t.Setenv(RequireEnv, "")
	t.Setenv(skiplog.LogEnv, "") // the fake test's skip is not one to report
	if r := (&tb{}); r.require() != "" || !r.skipped || r.failed {
		t.Errorf("without %s: skipped %v failed %v", RequireEnv, r.skipped, r.failed)
	}
	t.Setenv(RequireEnv, "1")
	if r := (&tb{}); r.require() != "" || r.skipped || !r.failed {
		t.Errorf("with %s=1: skipped %v failed %v", RequireEnv, r.skipped, r.failed)
	}
}
