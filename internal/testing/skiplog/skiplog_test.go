package skiplog

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// fakeTB records what Skip does to a test.
type fakeTB struct {
	testing.TB
	name    string
	skipped bool
}

func (t *fakeTB) Helper()              {}
func (t *fakeTB) Name() string         { return t.name }
func (t *fakeTB) Skip(...any)          { t.skipped = true; runtime.Goexit() }
func (t *fakeTB) Skipf(string, ...any) { t.skipped = true; runtime.Goexit() }
func (t *fakeTB) Logf(string, ...any)  {}
func (t *fakeTB) run(f func(*fakeTB)) { // as testing runs a test: Goexit ends it
	done := make(chan struct{})
	go func() { defer close(done); f(t) }()
	<-done
}

func TestSkipAppendsOneLinePerSkip(t *testing.T) {
	log := filepath.Join(t.TempDir(), "skips")
	t.Setenv(LogEnv, log)
	a, b := &fakeTB{name: "TestA"}, &fakeTB{name: "TestB/sub"}
	a.run(func(t *fakeTB) { Skip(t, "needs root", " and nft") })
	b.run(func(t *fakeTB) { Skipf(t, "no chromium\n(apt-get install %s)", "chromium") })
	if !a.skipped || !b.skipped {
		t.Errorf("skipped: %v %v, want both", a.skipped, b.skipped)
	}
	got, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	want := "internal/testing/skiplog/TestA: needs root and nft\n" +
		"internal/testing/skiplog/TestB/sub: no chromium (apt-get install chromium)\n"
	if string(got) != want {
		t.Errorf("log:\n%s\nwant:\n%s", got, want)
	}
}

func TestSkipWithoutLogOnlySkips(t *testing.T) {
	t.Setenv(LogEnv, "")
	f := &fakeTB{name: "TestC"}
	f.run(func(t *fakeTB) { Skip(t, "no reason") })
	if !f.skipped {
		t.Error("not skipped")
	}
}
