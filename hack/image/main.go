// Command image writes PlanetKube's container image as a tarball, without a
// Docker engine (internal/ociimage): `make image`.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/planetkube/planetkube/internal/ociimage"
)

func main() {
	binary := flag.String("binary", "bin/planetkube", "The static planetkube binary (CGO_ENABLED=0).")
	tag := flag.String("tag", "planetkube:dev", "The image's name and tag in the tarball.")
	out := flag.String("out", "dist/planetkube-image.tar", "The tarball to write.")
	version := flag.String("version", "dev", "The org.opencontainers.image.version label.")
	flag.Parse()
	if err := run(*binary, *tag, *out, *version); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(binary, tag, out, version string) error {
	b, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	ref, err := name.ParseReference(tag)
	if err != nil {
		return fmt.Errorf("--tag: %w", err)
	}
	img, err := ociimage.Build(b, ociimage.Options{OS: "linux", Arch: runtime.GOARCH, Labels: map[string]string{
		"org.opencontainers.image.title":   "planetkube",
		"org.opencontainers.image.version": version,
		"org.opencontainers.image.source":  "https://github.com/planetkube/planetkube",
	}})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := tarball.WriteToFile(out, ref, img); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("Wrote %s (%s, %s): load it with `docker load -i %s` or `kind load image-archive %s`\n", out, tag, digest, out, out)
	return nil
}
