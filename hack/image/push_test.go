package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/planetkube/planetkube/internal/ociimage"
)

// archive builds the image of a small fake binary as `make image` does (run)
// and returns the archive's path and its image.
func archive(t *testing.T) (string, v1.Image) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "planetkube")
	if err := os.WriteFile(bin, []byte("\x7fELF a planetkube binary, or bytes all the same"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "dist", "planetkube-image.tar")
	if err := run(bin, "planetkube:dev", out, "v0.1.0"); err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out, img
}

// dockerConfig points docker's credentials (and HOME, where the keychain
// looks first) at a config of the test's, with auths for host if user is
// set, and none otherwise.
func dockerConfig(t *testing.T, host, user, password string) {
	t.Helper()
	dir := t.TempDir()
	cfg := "{}"
	if user != "" {
		cfg = fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, host, base64.StdEncoding.EncodeToString([]byte(user+":"+password)))
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", t.TempDir())
	t.Setenv("DOCKER_CONFIG", dir)
	t.Setenv("REGISTRY_AUTH_FILE", "")
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("XDG_CONFIG_HOME", "")
}

// memRegistry serves go-containerregistry's in-memory registry on loopback,
// over plain HTTP, behind basic auth if user is set; refused counts the
// requests that came with wrong credentials.
func memRegistry(t *testing.T, user, password string) (srv *httptest.Server, refused *atomic.Int32) {
	t.Helper()
	refused = new(atomic.Int32)
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if user != "" {
		inner := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
				if ok {
					refused.Add(1)
				}
				w.Header().Set("WWW-Authenticate", `Basic realm="planetkube-test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
				return
			}
			inner.ServeHTTP(w, r)
		})
	}
	srv = httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, refused
}

// The archive `make image` writes, pushed through the command line to a
// registry on loopback (plain HTTP, as go-containerregistry speaks to
// loopback), pulls back as the same image: digest, layer, user, entrypoint.
func TestPushPullBack(t *testing.T) {
	path, want := archive(t)
	srv, _ := memRegistry(t, "", "")
	host := strings.TrimPrefix(srv.URL, "http://")
	dockerConfig(t, host, "", "")
	to := host + "/planetkube:0.1.0"

	var stdout, stderr bytes.Buffer
	if code := pushMain(context.Background(), []string{"--from", path, "--to", to}, &stdout, &stderr); code != 0 {
		t.Fatalf("push: exit %d: %s", code, stderr.String())
	}
	wantDigest, err := want.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "digest: "+wantDigest.String()) || !strings.Contains(stdout.String(), host+"/planetkube@"+wantDigest.String()) {
		t.Errorf("the output names not the digest %s:\n%s", wantDigest, stdout.String())
	}
	t.Logf("%s", stdout.String())

	for _, r := range []string{to, host + "/planetkube@" + wantDigest.String()} {
		ref, err := name.ParseReference(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := remote.Image(ref, remote.WithContext(context.Background()))
		if err != nil {
			t.Fatalf("pulling %s: %v", r, err)
		}
		d, err := got.Digest()
		if err != nil || d != wantDigest {
			t.Errorf("pulled %s: digest %s (%v), pushed %s", r, d, err, wantDigest)
		}
	}
	ref, err := name.ParseReference(to)
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := got.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Config.User != ociimage.User || !slices.Equal(cfg.Config.Entrypoint, []string{ociimage.BinaryPath}) ||
		!slices.Equal(cfg.Config.Cmd, []string{"manager"}) || cfg.OS != "linux" ||
		cfg.Config.Labels["org.opencontainers.image.version"] != "v0.1.0" {
		t.Errorf("pulled config: user %q entrypoint %v cmd %v os %s labels %v", cfg.Config.User, cfg.Config.Entrypoint, cfg.Config.Cmd, cfg.OS, cfg.Config.Labels)
	}
	wantLayers, _ := want.Layers()
	gotLayers, err := got.Layers()
	if err != nil || len(gotLayers) != 1 || len(wantLayers) != 1 {
		t.Fatalf("layers: pulled %d (%v), archive %d", len(gotLayers), err, len(wantLayers))
	}
	wl, _ := wantLayers[0].Digest()
	gl, _ := gotLayers[0].Digest()
	if wl != gl {
		t.Errorf("layer: pulled %s, archive %s", gl, wl)
	}

	// Pushed again, by its digest: the same.
	stdout.Reset()
	if code := pushMain(context.Background(), []string{"--from", path, "--to", host + "/planetkube@" + wantDigest.String()}, &stdout, &stderr); code != 0 {
		t.Errorf("push by digest: exit %d: %s", code, stderr.String())
	}
}

// A registry by name (not loopback), plain HTTP, behind basic auth: without
// --insecure the push says to add it; with it, the push logs in with
// docker's credentials, and wrong ones are refused without being shown.
func TestPushInsecureWithCredentials(t *testing.T) {
	path, want := archive(t)
	const user, password = "site-admin", "s3cret-Pa55word"
	srv, refused := memRegistry(t, user, password)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	host := "registry.planetkube.test:" + port
	// Every connection goes to the test's registry, whatever host it names.
	var d net.Dialer
	tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, srv.Listener.Addr().String())
	}}
	t.Cleanup(tr.CloseIdleConnections)
	to := host + "/sites/planetkube:0.1.0"
	ctx := context.Background()

	dockerConfig(t, host, user, password)
	_, err := push(ctx, path, to, false, remote.WithTransport(tr))
	if err == nil || !strings.Contains(err.Error(), "--insecure") {
		t.Errorf("pushed over HTTPS to a plain-HTTP registry, or no hint of --insecure: %v", err)
	}
	t.Logf("without --insecure: %v", err)

	dockerConfig(t, host, user, "not-"+password)
	_, err = push(ctx, path, to, true, remote.WithTransport(tr))
	if err == nil || !strings.Contains(err.Error(), "docker login "+host) || strings.Contains(err.Error(), password) {
		t.Errorf("wrong credentials: want a refusal that says docker login, without the password: %v", err)
	}
	if refused.Load() == 0 {
		t.Error("the wrong credentials of the docker config were not sent")
	}
	t.Logf("wrong credentials: %v", err)

	dockerConfig(t, host, "", "")
	if _, err := push(ctx, path, to, true, remote.WithTransport(tr)); err == nil || !strings.Contains(err.Error(), "docker login "+host) {
		t.Errorf("no credentials: want a refusal that says docker login: %v", err)
	}

	dockerConfig(t, host, user, password)
	ref, err := push(ctx, path, to, true, remote.WithTransport(tr))
	if err != nil {
		t.Fatal(err)
	}
	wantDigest, _ := want.Digest()
	if ref.DigestStr() != wantDigest.String() || ref.Context().Name() != host+"/sites/planetkube" {
		t.Errorf("pushed %s, want %s", ref, wantDigest)
	}
	pull, err := name.ParseReference(to, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Image(pull, remote.WithTransport(tr),
		remote.WithAuth(&authn.Basic{Username: user, Password: password}))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := got.Digest(); d != wantDigest {
		t.Errorf("pulled %s, pushed %s", d, wantDigest)
	}
}

// What cannot be pushed says why, before any registry is asked (none is
// running here), and never repeats credentials.
func TestPushErrors(t *testing.T) {
	path, want := archive(t)
	digest, _ := want.Digest()
	dir := t.TempDir()
	notArchive := filepath.Join(dir, "not-an-archive.tar")
	if err := os.WriteFile(notArchive, []byte("not a tar"), 0o644); err != nil {
		t.Fatal(err)
	}
	const ok = "registry.planetkube.test/planetkube:0.1.0"
	zero := "sha256:" + strings.Repeat("0", 64)
	for _, c := range []struct {
		from, to string
		want     string // in the error
	}{
		{filepath.Join(dir, "missing.tar"), ok, "missing.tar does not exist: build it with `make image`"},
		{dir, ok, "is a directory"},
		{notArchive, ok, "reading the image archive " + notArchive},
		{path, "", "--to is empty"},
		{path, "planetkube:0.1.0", "names no registry, so it would go to Docker Hub"},
		{path, "team/planetkube:0.1.0", "names no registry"},
		{path, "registry.planetkube.test/planetkube", "names no tag"},
		{path, "registry.planetkube.test/PlanetKube:0.1.0", "is not an image reference such as registry.example.org/planetkube:0.1.0: repository can only contain"},
		{path, "registry.planetkube.test/planetkube:bad tag", "is not an image reference"},
		{path, "registry.planetkube.test/planetkube@sha256:abc", "is not an image reference"},
		{path, "registry.planetkube.test/planetkube@" + zero, "names digest " + zero + ", but the archive's image is " + digest.String()},
		{path, "https://registry.planetkube.test/planetkube:0.1.0", "is a URL"},
		{path, "https://admin:hunter2@registry.planetkube.test/planetkube:0.1.0", "holds credentials"},
		{path, "admin:hunter2@registry.planetkube.test/planetkube:0.1.0", "holds credentials"},
		{path, "ghp_s3cr3tt0ken@registry.planetkube.test/planetkube:0.1.0", "holds credentials"},
	} {
		_, err := push(context.Background(), c.from, c.to, false)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("push --from %s --to %q: want an error with %q, got %v", c.from, c.to, c.want, err)
		}
	}

	var stdout, stderr bytes.Buffer
	if code := pushMain(context.Background(), []string{"--to", ok, "extra"}, &stdout, &stderr); code != 2 {
		t.Errorf("extra argument: exit %d: %s", code, stderr.String())
	}
	stderr.Reset()
	if code := pushMain(context.Background(), []string{"--from", filepath.Join(dir, "missing.tar"), "--to", ok}, &stdout, &stderr); code != 1 ||
		!strings.HasPrefix(stderr.String(), "image push: the image archive") {
		t.Errorf("missing archive: exit %d: %s", code, stderr.String())
	}
}
