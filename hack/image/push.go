package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// pushMain is `image push`: it parses args, pushes, and prints the digest to
// stdout or the error to stderr; it returns the exit status.
func pushMain(ctx context.Context, args []string, stdout, stderr io.Writer, extra ...remote.Option) int {
	fl := flag.NewFlagSet("image push", flag.ContinueOnError)
	fl.SetOutput(stderr)
	from := fl.String("from", "dist/planetkube-image.tar", "The image archive to push (make image writes it; one image, as docker save writes it).")
	to := fl.String("to", "", "Where to push it: the image's reference with its registry and tag in full, such as registry.example.org/planetkube:0.1.0 (a digest, @sha256:..., must be the image's).")
	insecure := fl.Bool("insecure", false, "Let the push fall back to plain HTTP, for a registry without TLS.")
	fl.Usage = func() {
		fmt.Fprint(stderr, `Usage: image push --from ARCHIVE --to REGISTRY/REPOSITORY:TAG [--insecure]

Pushes the image archive to a registry as it is (same digest) and prints its
digest. Credentials are docker's: docker login, $DOCKER_CONFIG/config.json
and its credential helpers (podman's auth.json when there is none).

`)
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fl.NArg() > 0 {
		fmt.Fprintf(stderr, "image push: unexpected arguments %q (give --from and --to)\n", fl.Args())
		return 2
	}
	ref, err := push(ctx, *from, *to, *insecure, extra...)
	if err != nil {
		fmt.Fprintln(stderr, "image push:", err)
		return 1
	}
	fmt.Fprintf(stdout, "Pushed %s to %s\ndigest: %s\nby digest: %s\n", *from, *to, ref.DigestStr(), ref)
	return 0
}

// push sends the one image of the archive to the reference to, with docker's
// credentials (authn.DefaultKeychain), and returns the reference of what it
// pushed by digest. insecure lets it fall back to plain HTTP. extra are
// further remote options (the tests' transport).
func push(ctx context.Context, archive, to string, insecure bool, extra ...remote.Option) (name.Digest, error) {
	ref, err := parseDestination(to, insecure)
	if err != nil {
		return name.Digest{}, err
	}
	if archive == "" {
		return name.Digest{}, errors.New("--from is empty: give the image archive (dist/planetkube-image.tar from `make image`)")
	}
	fi, err := os.Stat(archive)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return name.Digest{}, fmt.Errorf("the image archive %s does not exist: build it with `make image` (or give --from)", archive)
	case err != nil:
		return name.Digest{}, fmt.Errorf("the image archive: %w", err)
	case fi.IsDir():
		return name.Digest{}, fmt.Errorf("the image archive %s is a directory: give the archive file that `make image` writes", archive)
	}
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		return name.Digest{}, fmt.Errorf("reading the image archive %s (one image, as `make image` or `docker save` writes it): %w", archive, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return name.Digest{}, fmt.Errorf("reading the image archive %s: %w", archive, err)
	}
	if d, ok := ref.(name.Digest); ok && d.DigestStr() != digest.String() {
		return name.Digest{}, fmt.Errorf("--to %s names digest %s, but the archive's image is %s", to, d.DigestStr(), digest)
	}
	opts := append([]remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithUserAgent("planetkube-hack-image"),
	}, extra...)
	if err := remote.Write(ref, img, opts...); err != nil {
		hint := ""
		var terr *transport.Error
		switch {
		case !insecure && strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
			hint = " (the registry speaks plain HTTP: add --insecure, INSECURE=1 with make image-push)"
		case errors.As(err, &terr) && terr.StatusCode == http.StatusUnauthorized:
			hint = fmt.Sprintf(" (the registry wants credentials, or refused those given: docker login %s)", ref.Context().RegistryStr())
		case errors.As(err, &terr) && terr.StatusCode == http.StatusForbidden:
			hint = " (the registry refused: these credentials may not push to this repository)"
		}
		return name.Digest{}, fmt.Errorf("pushing to %s: %w%s", ref, err, hint)
	}
	return ref.Context().Digest(digest.String()), nil
}

// parseDestination parses the reference to push to. It must name its registry
// (nothing defaults to Docker Hub) and its tag or digest (nothing defaults to
// latest). A reference that seems to carry credentials is refused without
// being repeated.
func parseDestination(to string, insecure bool) (name.Reference, error) {
	const example = "registry.example.org/planetkube:0.1.0"
	if to == "" {
		return nil, fmt.Errorf("--to is empty: give the image's reference, such as %s", example)
	}
	if looksLikeCredentials(to) {
		return nil, errors.New("--to holds credentials (user:password@ or token@ before the registry): leave them out; push logs in with docker's credentials (docker login)")
	}
	if strings.Contains(to, "://") {
		return nil, fmt.Errorf("--to %q is a URL: give a reference, without the scheme, such as %s (and --insecure for a plain-HTTP registry)", to, example)
	}
	host, path, hasSlash := strings.Cut(to, "/")
	if !hasSlash || (host != "localhost" && !strings.ContainsAny(host, ".:")) {
		return nil, fmt.Errorf("--to %q names no registry, so it would go to Docker Hub: write the registry out, such as %s (docker.io/ORG/planetkube:0.1.0 for Docker Hub)", to, example)
	}
	if last := path[strings.LastIndex(path, "/")+1:]; !strings.ContainsAny(last, ":@") {
		return nil, fmt.Errorf("--to %q names no tag (nothing defaults to latest): add one, such as %s", to, example)
	}
	opts := []name.Option{name.StrictValidation}
	if insecure {
		opts = append(opts, name.Insecure)
	}
	// name.ParseReference would hide why with "could not parse reference".
	var ref name.Reference
	var err error
	if strings.Contains(to, "@") {
		ref, err = name.NewDigest(to, opts...)
	} else {
		ref, err = name.NewTag(to, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("--to %q is not an image reference such as %s: %w", to, example, err)
	}
	return ref, nil
}

// looksLikeCredentials tells whether ref, a reference or URL, holds a
// user[:password]@ or token@ before its path: a registry host has no @.
func looksLikeCredentials(ref string) bool {
	if _, rest, ok := strings.Cut(ref, "://"); ok {
		ref = rest
	}
	host, _, _ := strings.Cut(ref, "/")
	return strings.Contains(host, "@")
}
