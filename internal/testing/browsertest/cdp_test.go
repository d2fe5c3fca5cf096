package browsertest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// formStyle is the page's only style, allowed by its hash alone.
const formStyle = `body{background-color:rgb(10, 20, 30);color:#fff;margin:0;padding:16px;font:16px sans-serif}` +
	`input{display:block;width:100%;box-sizing:border-box;margin:8px 0}`

// formServer serves, under a CSP that forbids scripts and all but its
// hashed inline style, a search form at / (a label for an input, submitted
// by Enter) and, at /plain, a page with `default-src 'none'` and a script
// that must not run.
func formServer(t *testing.T) *httptest.Server {
	t.Helper()
	sum := sha256.Sum256([]byte(formStyle))
	csp := "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", csp)
		_, _ = w.Write([]byte(`<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">` +
			`<meta name="viewport" content="width=device-width, initial-scale=1">` +
			`<title>Search</title><style>` + formStyle + `</style></head><body>` +
			`<h1>Search</h1><form method="get" action="/"><label for="q">Query</label>` +
			`<input id="q" name="q" type="text"><button type="submit">Go</button></form>` +
			`<p>Some text so that the page is not blank.</p></body></html>`))
	})
	mux.HandleFunc("/go", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/?from=go", http.StatusFound)
	})
	mux.HandleFunc("/plain", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'")
		_, _ = w.Write([]byte(`<!DOCTYPE html><html><head><title>plain</title></head><body><p>plain</p>` +
			`<script>document.title = "script ran";</script></body></html>`))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// launch starts a browser for t, closed (and checked) when t ends, and
// returns it with t's context.
func launch(t *testing.T) (*Browser, context.Context) {
	t.Helper()
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	b, err := Launch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return b, ctx
}

// open opens a page at url.
func open(t *testing.T, ctx context.Context, b *Browser, url string, width, height int, mobile bool) *Page {
	t.Helper()
	p, err := b.NewPage(ctx, width, height, mobile)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Navigate(ctx, url); err != nil {
		t.Fatal(err)
	}
	return p
}

// evalString evaluates expr to a string.
func evalString(t *testing.T, ctx context.Context, p *Page, expr string) string {
	t.Helper()
	var s string
	if err := p.Eval(ctx, expr, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestEvalStyleUnderCSP(t *testing.T) {
	b, ctx := launch(t)
	srv := formServer(t)
	p := open(t, ctx, b, srv.URL+"/", 1280, 800, false)
	if got := evalString(t, ctx, p, "document.title"); got != "Search" {
		t.Errorf("title %q", got)
	}
	if got := evalString(t, ctx, p, "getComputedStyle(document.body).backgroundColor"); got != "rgb(10, 20, 30)" {
		t.Errorf("body background %q: the hashed style was not applied", got)
	}
	var n int
	if err := p.Eval(ctx, "new Promise(r => setTimeout(() => r(6 * 7), 10))", &n); err != nil || n != 42 {
		t.Errorf("awaited promise: %d, %v", n, err)
	}
	// Through a redirect, Navigate still waits for the page's load.
	if err := p.Navigate(ctx, srv.URL+"/go"); err != nil {
		t.Fatal(err)
	}
	if got := evalString(t, ctx, p, "location.search + ' ' + document.readyState"); got != "?from=go complete" {
		t.Errorf("after a redirect: %q", got)
	}
}

func TestEvalUnderDefaultSrcNone(t *testing.T) {
	b, ctx := launch(t)
	srv := formServer(t)
	p := open(t, ctx, b, srv.URL+"/plain", 800, 600, false)
	// The page's own script is blocked, yet Eval runs.
	if got := evalString(t, ctx, p, "document.title"); got != "plain" {
		t.Errorf("title %q: the CSP did not block the page's script", got)
	}
	if got := evalString(t, ctx, p, `document.querySelector("p").textContent`); got != "plain" {
		t.Errorf("text %q", got)
	}
	if err := p.Eval(ctx, `document.title = "set by Eval"`, nil); err != nil {
		t.Fatal(err)
	}
	if got := evalString(t, ctx, p, "document.title"); got != "set by Eval" {
		t.Errorf("title %q after Eval set it", got)
	}
	// DevTools evaluations are exempt from the CSP, eval() within them too...
	var n int
	if err := p.Eval(ctx, `eval("1 + 1")`, &n); err != nil || n != 2 {
		t.Logf("eval() within Eval under default-src 'none': %d, %v", n, err)
	}
	// ...but a script Eval adds to the page is the page's, and blocked.
	err := p.Eval(ctx, `(() => { const s = document.createElement("script");`+
		` s.textContent = 'document.title = "injected"'; document.body.append(s) })()`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := evalString(t, ctx, p, "document.title"); got != "set by Eval" {
		t.Errorf("title %q: a script added by Eval ran under default-src 'none'", got)
	}
}

func TestMobileWidth(t *testing.T) {
	b, ctx := launch(t)
	srv := formServer(t)
	p := open(t, ctx, b, srv.URL+"/", 390, 844, true)
	var w int
	if err := p.Eval(ctx, "document.documentElement.scrollWidth", &w); err != nil {
		t.Fatal(err)
	}
	if w != 390 {
		t.Errorf("scrollWidth %d at width 390, want 390", w)
	}
	// Something too wide shows (set through the CSSOM, which the CSP allows).
	err := p.Eval(ctx, `(() => { const d = document.createElement("div"); d.style.width = "600px";`+
		` d.style.height = "1px"; document.body.append(d); return document.documentElement.scrollWidth })()`, &w)
	if err != nil {
		t.Fatal(err)
	}
	if w < 600 {
		t.Errorf("scrollWidth %d with a 600px wide element", w)
	}
}

func TestKeyboardSubmitsForm(t *testing.T) {
	b, ctx := launch(t)
	srv := formServer(t)
	p := open(t, ctx, b, srv.URL+"/", 390, 844, true)
	if err := p.Key(ctx, "Tab"); err != nil {
		t.Fatal(err)
	}
	if got := evalString(t, ctx, p, "document.activeElement.name"); got != "q" {
		t.Fatalf("focus on %q after Tab, want the input q", got)
	}
	if err := p.Type(ctx, "hello worldx"); err != nil {
		t.Fatal(err)
	}
	if err := p.Key(ctx, "Backspace"); err != nil {
		t.Fatal(err)
	}
	if err := p.Key(ctx, "Escape"); err != nil { // nothing to close; must not fail
		t.Fatal(err)
	}
	if got := evalString(t, ctx, p, "document.activeElement.value"); got != "hello world" {
		t.Errorf("input value %q", got)
	}
	if err := p.Key(ctx, "F13"); err == nil {
		t.Error("an unknown key did not fail")
	}
	if err := p.PressAndWaitLoad(ctx, "Enter"); err != nil {
		t.Fatal(err)
	}
	if got := evalString(t, ctx, p, "location.search"); got != "?q=hello+world" {
		t.Errorf("after Enter, location.search %q", got)
	}
	if got := evalString(t, ctx, p, "document.readyState"); got != "complete" {
		t.Errorf("readyState %q after the load event", got)
	}
}

func TestScreenshotNotBlank(t *testing.T) {
	b, ctx := launch(t)
	srv := formServer(t)
	p := open(t, ctx, b, srv.URL+"/", 390, 844, true)
	shot, err := p.Screenshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(shot))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Width != 390 || cfg.Height != 844 {
		t.Errorf("screenshot %dx%d, want 390x844", cfg.Width, cfg.Height)
	}
	if err := NotBlank(shot); err != nil {
		t.Error(err)
	}

	blank := open(t, ctx, b, "about:blank", 390, 844, true)
	shot, err = blank.Screenshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := NotBlank(shot); err == nil {
		t.Error("NotBlank passed a screenshot of about:blank")
	}
}

func TestNotBlankRefusesWhite(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 100, 100))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	err := NotBlank(buf.Bytes())
	if err == nil || !strings.Contains(err.Error(), "0.00% of its 100x100 pixels") || !strings.Contains(err.Error(), "in 1 distinct colours") {
		t.Errorf("all white: %v", err)
	}
	// A few dots of two colours are too few; a band of them is enough.
	img.Set(1, 1, color.Black)
	img.Set(2, 2, color.RGBA{255, 0, 0, 255})
	buf.Reset()
	_ = png.Encode(&buf, img)
	if err := NotBlank(buf.Bytes()); err == nil {
		t.Error("NotBlank passed two dots")
	}
	for x := range 100 {
		for y := 40; y < 45; y++ {
			img.Set(x, y, color.Black)
		}
	}
	buf.Reset()
	_ = png.Encode(&buf, img)
	if err := NotBlank(buf.Bytes()); err != nil {
		t.Error(err)
	}
	if err := NotBlank([]byte("not a png")); err == nil {
		t.Error("NotBlank passed something that is not a PNG")
	}
}

func TestEvalErrors(t *testing.T) {
	b, ctx := launch(t)
	srv := formServer(t)
	p := open(t, ctx, b, srv.URL+"/", 800, 600, false)
	for _, c := range []struct{ expr, want string }{
		{`(() => { throw new Error("boom") })()`, "Error: boom"},
		{`Promise.reject(new TypeError("nope"))`, "TypeError: nope"},
		{`throw "a string"`, `"a string"`},
		{`no_such_name`, "ReferenceError: no_such_name is not defined"},
	} {
		err := p.Eval(ctx, c.expr, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Eval(%s): %v, want an error with %q", c.expr, err, c.want)
		}
	}
	var s string
	if err := p.Eval(ctx, "undefined", &s); err == nil {
		t.Error("undefined decoded into a string")
	}
	if err := p.Eval(ctx, "undefined", nil); err != nil {
		t.Errorf("undefined, out nil: %v", err)
	}
	if err := p.Eval(ctx, "42", &s); err == nil {
		t.Error("a number decoded into a string")
	}
	if err := p.Navigate(ctx, "http://127.0.0.1:1/"); err == nil {
		t.Error("navigating to a closed port did not fail")
	}
}

func TestCallAfterClose(t *testing.T) {
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := Launch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p, err := b.NewPage(ctx, 800, 600, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Eval(ctx, "1", nil); err == nil {
		t.Error("Eval on a closed page did not fail")
	}
	if p, err = b.NewPage(ctx, 800, 600, false); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	start := time.Now()
	if err := p.Eval(ctx, "1", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Eval after Close: %v, want ErrClosed", err)
	}
	if _, err := b.NewPage(ctx, 800, 600, false); !errors.Is(err, ErrClosed) {
		t.Errorf("NewPage after Close: %v, want ErrClosed", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("calls after Close took %v", el)
	}
}

// A browser that dies fails the calls that wait on it, and later ones.
func TestBrowserDies(t *testing.T) {
	for _, c := range []struct {
		name string
		kill func(b *Browser, cancel context.CancelFunc)
	}{
		{"killed", func(b *Browser, _ context.CancelFunc) { _ = b.cmd.Process.Kill() }},
		{"context done", func(_ *Browser, cancel context.CancelFunc) { cancel() }},
	} {
		t.Run(c.name, func(t *testing.T) {
			Require(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			bctx, bcancel := context.WithCancel(ctx)
			defer bcancel()
			b, err := Launch(bctx)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			p, err := b.NewPage(ctx, 800, 600, false)
			if err != nil {
				t.Fatal(err)
			}
			// The page logs once it runs the expression, so the Eval is
			// pending in the browser when it dies.
			logged := b.watch(p.s, "Runtime.consoleAPICalled", nil)
			defer b.unwatch(logged)
			pending := make(chan error, 1)
			go func() { pending <- p.Eval(ctx, `new Promise(() => console.log("pending"))`, nil) }()
			if _, err := b.next(ctx, p.s, logged); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			c.kill(b, bcancel)
			select {
			case err := <-pending:
				if err == nil || ctx.Err() != nil {
					t.Errorf("pending Eval: %v", err)
				}
			case <-ctx.Done():
				t.Fatal("the pending Eval hung")
			}
			if err := p.Eval(ctx, "1", nil); err == nil || ctx.Err() != nil {
				t.Errorf("Eval after the browser died: %v", err)
			}
			if el := time.Since(start); el > 10*time.Second {
				t.Errorf("took %v to fail", el)
			}
		})
	}
}
