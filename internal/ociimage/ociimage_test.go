package ociimage

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The image written as a tarball reads back with its binary, user and
// entrypoint, and two builds of the same binary are the same image.
func TestBuildWriteReadBack(t *testing.T) {
	binary := []byte("\x7fELF not really, but bytes all the same")
	o := Options{OS: "linux", Arch: "amd64", Labels: map[string]string{"org.opencontainers.image.version": "v0.1.0"}}
	img, err := Build(binary, o)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "planetkube.tar")
	tag := name.MustParseReference("planetkube:dev")
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		t.Fatal(err)
	}

	got, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := got.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Config.User != User || !slices.Equal(cfg.Config.Entrypoint, []string{BinaryPath}) || cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Errorf("config: user %q entrypoint %v platform %s/%s", cfg.Config.User, cfg.Config.Entrypoint, cfg.OS, cfg.Architecture)
	}
	if cfg.Config.Labels["org.opencontainers.image.version"] != "v0.1.0" {
		t.Errorf("labels: %v", cfg.Config.Labels)
	}
	layers, err := got.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("want one layer, got %d (%v)", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	h, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	content, _ := io.ReadAll(tr)
	if h.Name != "planetkube" || h.Mode != 0o755 || h.Uid != 0 || !bytes.Equal(content, binary) {
		t.Errorf("layer file %q mode %o uid %d, content equal: %v", h.Name, h.Mode, h.Uid, bytes.Equal(content, binary))
	}
	if _, err := tr.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("the layer has more than the binary: %v", err)
	}

	again, err := Build(binary, o)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("two builds of the same binary differ: %s, %s", d1, d2)
	}
	if _, err := Build(nil, o); err == nil {
		t.Error("built an image of an empty binary")
	}
	later, _ := Build(binary, Options{OS: "linux", Arch: "amd64", Created: time.Unix(1, 0)})
	if d3, _ := later.Digest(); d3 == d1 {
		t.Error("the creation time does not reach the image")
	}
}
