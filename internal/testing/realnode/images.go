package realnode

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/planetkube/planetkube/internal/ociimage"
)

// The images the real nodes run besides the project's own, both of the one
// static binary of test/workload: PauseImage is every pod's sandbox
// (containerd's pinned sandbox image), also named UpstreamPauseImage (there
// is no registry here: the samples' slivers run it on a real node and sleep
// whatever their arguments), WorkloadImage a sliver's workload.
const (
	PauseImage         = "docker.io/library/planetkube-pause:dev"
	UpstreamPauseImage = "registry.k8s.io/pause:3.10"
	WorkloadImage      = "docker.io/library/planetkube-workload:dev"
	// WorkloadBinary is the workload's path in WorkloadImage.
	WorkloadBinary = "/workload"
)

// Images are the archives BuildImages wrote, for New to import on every node.
type Images struct {
	// PlanetKube is the project's image (`make image`), tagged as given.
	PlanetKube string
	// Pause and Workload hold PauseImage and WorkloadImage.
	Pause, Workload string
	// WorkloadProgram is test/workload's binary, to run on the host too
	// (Internet.Start).
	WorkloadProgram string
}

// Paths lists the archives.
func (i Images) Paths() []string { return []string{i.PlanetKube, i.Pause, i.Workload} }

// BuildImages writes the three image archives into dir: planetkube (the
// binary of binDir, as `make image` does, tagged tag) and the pause and
// workload images of test/workload, built from repoRoot with go. No
// registry, no Docker.
func BuildImages(repoRoot, binDir, dir, tag string) (Images, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Images{}, err
	}
	workload := filepath.Join(dir, "workload")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", workload, "./test/workload")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return Images{}, fmt.Errorf("building test/workload: %w: %s", err, out)
	}
	imgs := Images{
		PlanetKube: filepath.Join(dir, "planetkube.tar"),
		Pause:      filepath.Join(dir, "pause.tar"),
		Workload:   filepath.Join(dir, "workload.tar"),

		WorkloadProgram: workload,
	}
	pause := ociimage.Options{Path: WorkloadBinary, User: "65535:65535", Entrypoint: []string{WorkloadBinary, "pause"}, Cmd: []string{}}
	for _, b := range []struct {
		binary, out string
		refs        []string
		o           ociimage.Options
	}{
		{filepath.Join(binDir, "planetkube"), imgs.PlanetKube, []string{tag}, ociimage.Options{}},
		{workload, imgs.Pause, []string{PauseImage, UpstreamPauseImage}, pause},
		{workload, imgs.Workload, []string{WorkloadImage}, ociimage.Options{Path: WorkloadBinary, User: "65532:65532", Cmd: []string{"pause"}}},
	} {
		if err := writeImage(b.binary, b.out, b.refs, b.o); err != nil {
			return Images{}, err
		}
	}
	return imgs, nil
}

// writeImage writes the image of binary as an archive with each of refs.
func writeImage(binary, out string, refs []string, o ociimage.Options) error {
	data, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	o.OS, o.Arch = "linux", runtime.GOARCH
	img, err := ociimage.Build(data, o)
	if err != nil {
		return fmt.Errorf("building %s: %w", refs[0], err)
	}
	tags := map[name.Tag]v1.Image{}
	for _, r := range refs {
		tag, err := name.NewTag(r)
		if err != nil {
			return err
		}
		tags[tag] = img
	}
	if err := tarball.MultiWriteToFile(out, tags); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	return nil
}
