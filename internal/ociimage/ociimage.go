// Package ociimage builds PlanetKube's container image without a Docker
// engine: the static planetkube binary as the only file of one layer on an
// empty base, a non-root user, the binary as entrypoint. It writes the image
// as a tarball that `docker load`, `podman load`, `kind load image-archive`
// and crane read. The Dockerfile builds the same image for those with
// Docker (there on distroless/static).
package ociimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Where and as whom the binary runs.
const (
	BinaryPath = "/planetkube"
	// User is distroless' "nonroot" (the node agent's DaemonSet runs it as
	// root, for NET_ADMIN on conntrack).
	User = "65532:65532"
)

// Options describe the image.
type Options struct {
	// OS and Arch of the binary (linux, amd64).
	OS, Arch string
	// Created is the image's creation time; the zero time keeps builds
	// reproducible (the layer's files carry it too).
	Created time.Time
	// Labels are OCI annotations such as org.opencontainers.image.version.
	Labels map[string]string
	// Path is where the binary lies in the image, its entrypoint; default
	// BinaryPath. The real-node tests' workload and pause images set it.
	Path string
	// User runs the entrypoint; default User.
	User string
	// Entrypoint runs the binary; default [Path].
	Entrypoint []string
	// Cmd are the entrypoint's default arguments; default ["manager"].
	Cmd []string
}

// Build returns the image holding binary.
func Build(binary []byte, o Options) (v1.Image, error) {
	if len(binary) == 0 {
		return nil, fmt.Errorf("the binary is empty")
	}
	if o.Path == "" {
		o.Path = BinaryPath
	}
	if o.User == "" {
		o.User = User
	}
	if o.Cmd == nil {
		o.Cmd = []string{"manager"}
	}
	// The project's image keeps its history's words (and so its digest).
	comment := "the static planetkube binary"
	if o.Path != BinaryPath {
		comment = "the static binary " + o.Path
	}
	layerTar, err := singleFileTar(strings.TrimPrefix(o.Path, "/"), binary, o.Created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("making the layer: %w", err)
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layer, History: v1.History{
		Created: v1.Time{Time: o.Created}, CreatedBy: "planetkube make image", Comment: comment,
	}})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Created = o.OS, o.Arch, v1.Time{Time: o.Created}
	cfg.Config.User = o.User
	cfg.Config.Entrypoint = o.Entrypoint
	if len(o.Entrypoint) == 0 {
		cfg.Config.Entrypoint = []string{o.Path}
	}
	cfg.Config.Cmd = o.Cmd
	cfg.Config.WorkingDir = "/"
	cfg.Config.Labels = o.Labels
	return mutate.ConfigFile(img, cfg)
}

// singleFileTar is a tar stream of one executable file owned by root.
func singleFileTar(name string, content []byte, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg, Name: name, Mode: 0o755, Size: int64(len(content)), ModTime: mtime, Format: tar.FormatPAX,
	}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(content); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
