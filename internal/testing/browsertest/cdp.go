package browsertest

// A small Chrome DevTools Protocol (CDP) client over --remote-debugging-pipe:
// Chromium reads commands from its fd 3 and writes responses and events to
// its fd 4, each message a JSON object followed by a NUL byte. One reader
// goroutine hands responses (by id) to the calls that wait for them and
// events to the watches that match them; an event no watch wants is dropped.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrClosed is the error (see errors.Is) of calls on a Browser after Close.
var ErrClosed = errors.New("browsertest: browser closed")

// Browser is a headless Chromium driven over the DevTools protocol. Its
// methods, and those of its pages, may be called from several goroutines.
type Browser struct {
	cmd *exec.Cmd
	dir string // temporary: the profile and the browser's output
	log string // the browser's stdout and stderr

	in  *os.File // commands: the browser's fd 3
	out *os.File // responses and events: the browser's fd 4

	wmu sync.Mutex // one message written at a time

	mu       sync.Mutex
	nextID   int64
	calls    map[int64]chan *message
	watches  map[*watch]struct{}
	sessions map[string]*session // attached, not yet detached
	err      error               // why the connection ended; set once, before dead is closed
	closing  bool

	dead   chan struct{} // closed when no more responses can come
	exited chan struct{} // closed once the process has exited and been waited for

	closeOnce sync.Once
	closeErr  error
}

// message is any message from the browser: a response (ID set) or an event.
type message struct {
	ID        int64           `json:"id"`
	Method    string          `json:"method"`
	SessionID string          `json:"sessionId"`
	Params    json.RawMessage `json:"params"`
	Result    json.RawMessage `json:"result"`
	Error     *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Data    string `json:"data"`
	} `json:"error"`
}

// session is a flat session attached to a target (a page).
type session struct {
	id   string
	done chan struct{} // closed when the target crashed or was detached
	err  error         // why; set before done is closed
}

// watch receives, while registered, the params of the events with its
// session and method for which match (if set) is true. It buffers a few;
// the reader drops what does not fit rather than block or grow.
type watch struct {
	session, method string
	match           func(params json.RawMessage) bool
	ch              chan json.RawMessage
}

// Launch starts headless Chromium (the flags of DumpDOM, a fresh profile
// and --remote-debugging-pipe) and connects to it. ctx bounds the browser's
// whole life: when it is done the browser is killed. Close ends it.
func Launch(ctx context.Context) (*Browser, error) {
	p, err := Path()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "browsertest-")
	if err != nil {
		return nil, fmt.Errorf("browsertest: launch: %w", err)
	}
	b := &Browser{
		dir:      dir,
		log:      filepath.Join(dir, "output"),
		calls:    map[int64]chan *message{},
		watches:  map[*watch]struct{}{},
		sessions: map[string]*session{},
		dead:     make(chan struct{}),
		exited:   make(chan struct{}),
	}
	if err := b.start(ctx, p); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("browsertest: launch %s: %w", p, err)
	}
	// The first answer says the pipe works (or why the browser did not start).
	if err := b.call(ctx, nil, "Browser.getVersion", nil, nil); err != nil {
		_ = b.Close()
		return nil, fmt.Errorf("browsertest: launch %s: %w", p, err)
	}
	return b, nil
}

// start runs the browser and the goroutines that wait for it and read it.
func (b *Browser) start(ctx context.Context, path string) error {
	profile := filepath.Join(b.dir, "profile")
	if err := os.Mkdir(profile, 0o700); err != nil {
		return err
	}
	logFile, err := os.Create(b.log)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmdR, cmdW, err := os.Pipe() // the browser reads commands from cmdR
	if err != nil {
		return err
	}
	defer cmdR.Close()
	evR, evW, err := os.Pipe() // and writes to evW
	if err != nil {
		cmdW.Close()
		return err
	}
	defer evW.Close()
	args := append(flags[:len(flags):len(flags)], "--user-data-dir="+profile, "--remote-debugging-pipe")
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = profile
	// A file, not a pipe: helpers that inherit the output must not delay Wait.
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.ExtraFiles = []*os.File{cmdR, evW} // fds 3 and 4
	// Its own process group, so that killing it kills its helpers too; and
	// killed if this process dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Start(); err != nil {
		cmdW.Close()
		evR.Close()
		return err
	}
	b.cmd, b.in, b.out = cmd, cmdW, evR
	go b.wait()
	go b.read()
	return nil
}

// wait waits for the browser to exit, then kills what is left of its
// process group and ends the connection.
func (b *Browser) wait() {
	err := b.cmd.Wait()
	_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	if err == nil {
		err = errors.New("the browser exited")
	} else {
		err = fmt.Errorf("the browser exited: %w", err)
	}
	if tail := b.outputTail(); tail != "" {
		err = fmt.Errorf("%w; its output ends:\n%s", err, tail)
	}
	b.fail(err)
	close(b.exited)
}

// outputTail returns the end of what the browser wrote to stdout and stderr.
func (b *Browser) outputTail() string {
	data, err := os.ReadFile(b.log)
	if err != nil {
		return ""
	}
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return strings.TrimSpace(string(data))
}

// fail ends the connection for err (ErrClosed once Close began): pending
// and later calls fail with it. Only the first call counts.
func (b *Browser) fail(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return
	}
	if b.closing {
		err = ErrClosed
	}
	b.err = err
	close(b.dead)
	_ = b.in.Close() // wakes a write blocked on a full pipe
}

// read reads messages until the pipe ends, and dispatches them.
func (b *Browser) read() {
	defer b.out.Close()
	r := bufio.NewReaderSize(b.out, 64<<10)
	for {
		data, err := r.ReadBytes(0)
		if err != nil {
			// The browser is gone, or going: prefer its exit status.
			select {
			case <-b.exited:
			case <-time.After(2 * time.Second):
			}
			b.fail(fmt.Errorf("reading from the browser: %w", err))
			return
		}
		var m message
		if err := json.Unmarshal(data[:len(data)-1], &m); err != nil {
			b.fail(fmt.Errorf("bad message from the browser: %w", err))
			_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
			return
		}
		b.dispatch(&m)
	}
}

// dispatch hands a response to its call, or an event to its watches.
func (b *Browser) dispatch(m *message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m.ID != 0 {
		if ch, ok := b.calls[m.ID]; ok {
			ch <- m // buffered for it
			delete(b.calls, m.ID)
		}
		return
	}
	switch {
	case m.Method == "Target.detachedFromTarget":
		var p struct {
			SessionID string `json:"sessionId"`
		}
		_ = json.Unmarshal(m.Params, &p)
		b.endSession(p.SessionID, errors.New("the page was closed (detached)"))
	case m.Method == "Inspector.targetCrashed":
		b.endSession(m.SessionID, errors.New("the page crashed"))
	case m.Method == "Inspector.detached":
		b.endSession(m.SessionID, errors.New("the page was detached"))
	}
	for w := range b.watches {
		if w.session != m.SessionID || w.method != m.Method || (w.match != nil && !w.match(m.Params)) {
			continue
		}
		select {
		case w.ch <- m.Params:
		default: // no one reads it in time: drop it
		}
	}
}

// endSession marks a session ended; b.mu is held.
func (b *Browser) endSession(id string, err error) {
	s, ok := b.sessions[id]
	if !ok {
		return
	}
	delete(b.sessions, id)
	s.err = err
	close(s.done)
}

// call sends method with params on session s (nil: the browser's own) and
// decodes the response's result into result (unless nil). Its errors
// start with method; the exported callers add the package's prefix.
func (b *Browser) call(ctx context.Context, s *session, method string, params, result any) error {
	ch := make(chan *message, 1)
	b.mu.Lock()
	if err := b.err; err != nil {
		b.mu.Unlock()
		return fmt.Errorf("%s: %w", method, err)
	}
	var sid string
	var sdone chan struct{}
	if s != nil {
		sid, sdone = s.id, s.done
		select {
		case <-sdone:
			b.mu.Unlock()
			return fmt.Errorf("%s: %w", method, s.err)
		default:
		}
	}
	b.nextID++
	id := b.nextID
	b.calls[id] = ch
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.calls, id)
		b.mu.Unlock()
	}()

	data, err := json.Marshal(struct {
		ID        int64  `json:"id"`
		SessionID string `json:"sessionId,omitempty"`
		Method    string `json:"method"`
		Params    any    `json:"params,omitempty"`
	}{id, sid, method, params})
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	if err := b.write(ctx, append(data, 0)); err != nil {
		return fmt.Errorf("%s: %w", method, b.why(err))
	}
	select {
	case m := <-ch:
		if m.Error != nil {
			msg := m.Error.Message
			if m.Error.Data != "" {
				msg += ": " + m.Error.Data
			}
			return fmt.Errorf("%s: %s (code %d)", method, msg, m.Error.Code)
		}
		if result != nil {
			if err := json.Unmarshal(m.Result, result); err != nil {
				return fmt.Errorf("%s: decoding the result: %w", method, err)
			}
		}
		return nil
	case <-b.dead:
		return fmt.Errorf("%s: %w", method, b.why(nil))
	case <-sdone:
		return fmt.Errorf("%s: %w", method, s.err)
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// why returns why the connection ended, or err if it has not.
func (b *Browser) why(err error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	return err
}

// write writes one message; ctx's deadline bounds a write to a full pipe.
func (b *Browser) write(ctx context.Context, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.wmu.Lock()
	defer b.wmu.Unlock()
	dl, _ := ctx.Deadline() // zero: none
	_ = b.in.SetWriteDeadline(dl)
	_, err := b.in.Write(data)
	return err
}

// watch registers a watch; unwatch it when done.
func (b *Browser) watch(s *session, method string, match func(json.RawMessage) bool) *watch {
	w := &watch{session: s.id, method: method, match: match, ch: make(chan json.RawMessage, 16)}
	b.mu.Lock()
	b.watches[w] = struct{}{}
	b.mu.Unlock()
	return w
}

func (b *Browser) unwatch(w *watch) {
	b.mu.Lock()
	delete(b.watches, w)
	b.mu.Unlock()
}

// next returns the params of w's next event.
func (b *Browser) next(ctx context.Context, s *session, w *watch) (json.RawMessage, error) {
	select {
	case p := <-w.ch:
		return p, nil
	case <-b.dead:
		return nil, b.why(nil)
	case <-s.done:
		return nil, s.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close closes the browser (the Browser.close command; killed if it has
// not exited within a few seconds) and removes its profile. It returns why
// the browser had ended if it did before Close. Later calls fail with
// ErrClosed.
func (b *Browser) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closing = true
		before := b.err
		b.mu.Unlock()
		var errs []error
		if before != nil {
			errs = append(errs, before)
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = b.call(ctx, nil, "Browser.close", nil, nil) // it may exit before it answers
			cancel()
		}
		select {
		case <-b.exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
			<-b.exited
			errs = append(errs, errors.New("the browser did not exit within 5s of Browser.close: killed"))
		}
		if err := os.RemoveAll(b.dir); err != nil {
			errs = append(errs, err)
		}
		if err := errors.Join(errs...); err != nil {
			b.closeErr = fmt.Errorf("browsertest: close: %w", err)
		}
	})
	return b.closeErr
}

// Page is a browser tab, attached over its own (flat) session.
type Page struct {
	b        *Browser
	s        *session
	targetID string
	frameID  string // the main frame
}

// NewPage opens a tab on about:blank, attaches to it, and emulates a
// viewport of width x height CSS pixels (device scale factor 1; mobile
// turns on the meta viewport and touch-style layout).
func (b *Browser) NewPage(ctx context.Context, width, height int, mobile bool) (*Page, error) {
	var t struct {
		TargetID string `json:"targetId"`
	}
	if err := b.call(ctx, nil, "Target.createTarget", map[string]any{"url": "about:blank"}, &t); err != nil {
		return nil, fmt.Errorf("browsertest: new page: %w", err)
	}
	p, err := b.attach(ctx, t.TargetID, width, height, mobile)
	if err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_ = b.call(cctx, nil, "Target.closeTarget", map[string]any{"targetId": t.TargetID}, nil)
		cancel()
		return nil, fmt.Errorf("browsertest: new page: %w", err)
	}
	return p, nil
}

func (b *Browser) attach(ctx context.Context, targetID string, width, height int, mobile bool) (*Page, error) {
	var a struct {
		SessionID string `json:"sessionId"`
	}
	if err := b.call(ctx, nil, "Target.attachToTarget", map[string]any{"targetId": targetID, "flatten": true}, &a); err != nil {
		return nil, err
	}
	s := &session{id: a.SessionID, done: make(chan struct{})}
	b.mu.Lock()
	b.sessions[s.id] = s
	b.mu.Unlock()
	p := &Page{b: b, s: s, targetID: targetID}
	for _, c := range []struct {
		method string
		params any
	}{
		{"Page.enable", nil},
		{"Page.setLifecycleEventsEnabled", map[string]any{"enabled": true}},
		{"Runtime.enable", nil},
		// Each page behaves as the focused one, whichever has the focus.
		{"Emulation.setFocusEmulationEnabled", map[string]any{"enabled": true}},
		{"Emulation.setDeviceMetricsOverride", map[string]any{
			"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile,
		}},
	} {
		if err := p.call(ctx, c.method, c.params, nil); err != nil {
			return nil, err
		}
	}
	var ft struct {
		FrameTree struct {
			Frame struct {
				ID string `json:"id"`
			} `json:"frame"`
		} `json:"frameTree"`
	}
	if err := p.call(ctx, "Page.getFrameTree", nil, &ft); err != nil {
		return nil, err
	}
	p.frameID = ft.FrameTree.Frame.ID
	return p, nil
}

func (p *Page) call(ctx context.Context, method string, params, result any) error {
	return p.b.call(ctx, p.s, method, params, result)
}

// Close closes the tab.
func (p *Page) Close(ctx context.Context) error {
	if err := p.b.call(ctx, nil, "Target.closeTarget", map[string]any{"targetId": p.targetID}, nil); err != nil {
		return fmt.Errorf("browsertest: close page: %w", err)
	}
	return nil
}

// watchLoad watches the main frame's load lifecycle events.
func (p *Page) watchLoad() *watch {
	return p.b.watch(p.s, "Page.lifecycleEvent", func(params json.RawMessage) bool {
		var e struct {
			FrameID string `json:"frameId"`
			Name    string `json:"name"`
		}
		return json.Unmarshal(params, &e) == nil && e.Name == "load" && e.FrameID == p.frameID
	})
}

// Navigate loads url in the page and waits for its load event. A
// navigation that fails (Page.navigate's errorText: no connection, ...) is
// an error; an HTTP error status is not.
func (p *Page) Navigate(ctx context.Context, url string) error {
	w := p.watchLoad() // before navigating: the load may come before the answer
	defer p.b.unwatch(w)
	var r struct {
		LoaderID  string `json:"loaderId"`
		ErrorText string `json:"errorText"`
	}
	if err := p.call(ctx, "Page.navigate", map[string]any{"url": url}, &r); err != nil {
		return fmt.Errorf("browsertest: navigate to %s: %w", url, err)
	}
	if r.ErrorText != "" {
		return fmt.Errorf("browsertest: navigate to %s: %s", url, r.ErrorText)
	}
	if r.LoaderID == "" {
		return nil // within the document (a fragment): no load
	}
	for {
		params, err := p.b.next(ctx, p.s, w)
		if err != nil {
			return fmt.Errorf("browsertest: navigate to %s: waiting for the load event: %w", url, err)
		}
		var e struct {
			LoaderID string `json:"loaderId"`
		}
		if json.Unmarshal(params, &e) == nil && e.LoaderID == r.LoaderID {
			return nil
		}
	}
}

// WaitLoadAfter runs action (say, a key press that submits a form, or an
// Eval that clicks a link) and waits for the next load event of the page's
// main frame, armed before action runs so that it cannot be missed. A
// navigation within the document (to a fragment, history.pushState) has no
// load event: WaitLoadAfter then waits until ctx is done.
func (p *Page) WaitLoadAfter(ctx context.Context, action func(ctx context.Context) error) error {
	w := p.watchLoad()
	defer p.b.unwatch(w)
	if err := action(ctx); err != nil {
		return err
	}
	if _, err := p.b.next(ctx, p.s, w); err != nil {
		return fmt.Errorf("browsertest: waiting for the load event: %w", err)
	}
	return nil
}

// PressAndWaitLoad presses key (see Key) and waits for the load that it
// causes, as WaitLoadAfter.
func (p *Page) PressAndWaitLoad(ctx context.Context, key string) error {
	return p.WaitLoadAfter(ctx, func(ctx context.Context) error { return p.Key(ctx, key) })
}

// Eval evaluates the JavaScript expression expr in the page (awaiting it if
// it is a promise) and decodes its value, as JSON, into out unless out is
// nil. A thrown exception or rejected promise is an error with its message;
// so is a value JSON cannot carry (undefined, NaN, ...) when out is not nil.
// Eval runs even where the page's Content-Security-Policy forbids scripts:
// DevTools evaluations are exempt (eval() within expr included), but a
// script that expr adds to the document is the page's, and stays blocked.
func (p *Page) Eval(ctx context.Context, expr string, out any) error {
	var r struct {
		Result struct {
			Type                string          `json:"type"`
			Value               json.RawMessage `json:"value"`
			UnserializableValue string          `json:"unserializableValue"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception *struct {
				Description string          `json:"description"`
				Value       json.RawMessage `json:"value"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	short := expr
	if r := []rune(expr); len(r) > 80 {
		short = string(r[:77]) + "..."
	}
	err := p.call(ctx, "Runtime.evaluate", map[string]any{
		"expression": expr, "returnByValue": true, "awaitPromise": true,
	}, &r)
	if err != nil {
		return fmt.Errorf("browsertest: eval %q: %w", short, err)
	}
	if d := r.ExceptionDetails; d != nil {
		msg := d.Text
		if e := d.Exception; e != nil {
			switch {
			case e.Description != "":
				msg += " " + e.Description
			case len(e.Value) > 0:
				msg += " " + string(e.Value)
			}
		}
		return fmt.Errorf("browsertest: eval %q: %s", short, msg)
	}
	if out == nil {
		return nil
	}
	if len(r.Result.Value) == 0 {
		what := r.Result.Type
		if r.Result.UnserializableValue != "" {
			what = r.Result.UnserializableValue
		}
		return fmt.Errorf("browsertest: eval %q: the value (%s) is not JSON", short, what)
	}
	if err := json.Unmarshal(r.Result.Value, out); err != nil {
		return fmt.Errorf("browsertest: eval %q: %w", short, err)
	}
	return nil
}

// keyDef is how Input.dispatchKeyEvent spells a key.
type keyDef struct {
	code string
	vk   int    // windowsVirtualKeyCode
	text string // what it types, if anything
}

var keyDefs = map[string]keyDef{
	"Tab":        {"Tab", 9, ""},
	"Enter":      {"Enter", 13, "\r"},
	"Escape":     {"Escape", 27, ""},
	"Backspace":  {"Backspace", 8, ""},
	"Delete":     {"Delete", 46, ""},
	" ":          {"Space", 32, " "},
	"ArrowLeft":  {"ArrowLeft", 37, ""},
	"ArrowUp":    {"ArrowUp", 38, ""},
	"ArrowRight": {"ArrowRight", 39, ""},
	"ArrowDown":  {"ArrowDown", 40, ""},
	"Home":       {"Home", 36, ""},
	"End":        {"End", 35, ""},
	"PageUp":     {"PageUp", 33, ""},
	"PageDown":   {"PageDown", 34, ""},
}

// Key presses and releases key, named as KeyboardEvent.key names it: Tab,
// Enter, Escape, Backspace, Delete, " " (space), ArrowLeft, ArrowUp,
// ArrowRight, ArrowDown, Home, End, PageUp or PageDown. Use Type for text.
func (p *Page) Key(ctx context.Context, key string) error {
	d, ok := keyDefs[key]
	if !ok {
		names := make([]string, 0, len(keyDefs))
		for k := range keyDefs {
			names = append(names, fmt.Sprintf("%q", k))
		}
		sort.Strings(names)
		return fmt.Errorf("browsertest: key %q: not one of %s", key, strings.Join(names, ", "))
	}
	down := map[string]any{
		"type": "rawKeyDown", "key": key, "code": d.code,
		"windowsVirtualKeyCode": d.vk, "nativeVirtualKeyCode": d.vk,
	}
	if d.text != "" {
		down["type"], down["text"], down["unmodifiedText"] = "keyDown", d.text, d.text
	}
	up := map[string]any{
		"type": "keyUp", "key": key, "code": d.code,
		"windowsVirtualKeyCode": d.vk, "nativeVirtualKeyCode": d.vk,
	}
	for _, ev := range []map[string]any{down, up} {
		if err := p.call(ctx, "Input.dispatchKeyEvent", ev, nil); err != nil {
			return fmt.Errorf("browsertest: key %q: %w", key, err)
		}
	}
	return nil
}

// Type inserts text where the focus is, as typing (or an IME) would.
func (p *Page) Type(ctx context.Context, text string) error {
	if err := p.call(ctx, "Input.insertText", map[string]any{"text": text}, nil); err != nil {
		return fmt.Errorf("browsertest: type: %w", err)
	}
	return nil
}

// Screenshot returns a PNG of the page's viewport.
func (p *Page) Screenshot(ctx context.Context) ([]byte, error) {
	var r struct {
		Data []byte `json:"data"` // base64 in JSON
	}
	if err := p.call(ctx, "Page.captureScreenshot", map[string]any{"format": "png"}, &r); err != nil {
		return nil, fmt.Errorf("browsertest: screenshot: %w", err)
	}
	if len(r.Data) == 0 {
		return nil, errors.New("browsertest: screenshot: empty")
	}
	return r.Data, nil
}

// The least a picture must have for NotBlank.
const (
	minOffFraction = 0.02 // of its pixels not of its most common colour
	minColours     = 3
)

// NotBlank returns an error unless the PNG image data shows something: at
// least 2% of its pixels of another colour than its most common one, and at
// least 3 distinct colours. A blank (all-white, say) page is refused.
func NotBlank(data []byte) error {
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("browsertest: not blank: %w", err)
	}
	r := img.Bounds()
	total := r.Dx() * r.Dy()
	if total == 0 {
		return fmt.Errorf("browsertest: not blank: the image is empty (%dx%d)", r.Dx(), r.Dy())
	}
	counts := map[uint32]int{}
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			counts[rgba8(img, x, y)]++
		}
	}
	var common uint32
	most := -1
	for c, n := range counts {
		if n > most || (n == most && c < common) {
			common, most = c, n
		}
	}
	off := float64(total-most) / float64(total)
	if off < minOffFraction || len(counts) < minColours {
		return fmt.Errorf("browsertest: the image looks blank: %.2f%% of its %dx%d pixels differ from its most common colour #%08x (want at least %.0f%%), in %d distinct colours (want at least %d)",
			100*off, r.Dx(), r.Dy(), common, 100*minOffFraction, len(counts), minColours)
	}
	return nil
}

// rgba8 returns the colour at x, y as 0xRRGGBBAA.
func rgba8(img image.Image, x, y int) uint32 {
	r, g, b, a := img.At(x, y).RGBA()
	return r>>8<<24 | g>>8<<16 | b>>8<<8 | a>>8
}
