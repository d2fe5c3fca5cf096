// Command image writes PlanetKube's container image as an image archive,
// without a Docker engine (internal/ociimage), and pushes such an archive to
// a registry. A site gets the image into its cluster from the archive
// (docs/operations.md, "Getting the image into the cluster").
//
// Build the archive (`make image`):
//
//	go run ./hack/image --binary bin/planetkube --tag planetkube:dev --out dist/planetkube-image.tar [--version v0.1.0]
//
// The archive is in `docker save`'s format (manifest.json; the image's
// manifest and config are Docker schema 2): `docker load -i`, `kind load
// image-archive`, `ctr images import` and `podman load` read it.
//
// Push it to a registry (`make image-push IMAGE_REF=...`):
//
//	go run ./hack/image push --from dist/planetkube-image.tar --to registry.example.org/planetkube:0.1.0 [--insecure]
//
// push takes an archive holding one image and sends it as it is (same
// digest) to the reference given, which must name its registry and its tag
// (or digest) in full: nothing defaults to Docker Hub or to latest. It logs in
// with docker's credentials (`docker login`: $DOCKER_CONFIG/config.json and
// its credential helpers; podman's auth.json where there is none), over
// HTTPS; --insecure lets it fall back to plain HTTP for a registry that has
// no TLS (go-containerregistry already does for localhost, loopback and
// private addresses). It prints the pushed digest and the reference by
// digest, and never the credentials.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/planetkube/planetkube/internal/ociimage"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "push" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		code := pushMain(ctx, os.Args[2:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	flag.Usage = func() {
		fmt.Fprint(flag.CommandLine.Output(), `Usage:
  image [flags]                            build the image archive of the binary (make image)
  image push --from ARCHIVE --to REF [--insecure]
                                           push an image archive to a registry (image push -h)

Flags of the build:
`)
		flag.PrintDefaults()
	}
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
	fmt.Printf("Wrote %s (%s, %s): push it with `make image-push IMAGE_REF=REGISTRY/planetkube:TAG`, or load it with `kind load image-archive %s`, `ctr -n k8s.io images import %s` or `docker load -i %s` (docs/operations.md, \"Getting the image into the cluster\")\n", out, tag, digest, out, out, out)
	return nil
}
