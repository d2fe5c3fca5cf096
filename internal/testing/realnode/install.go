package realnode

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/planetkube/planetkube/internal/testing/emulator"
)

// What InstallSite installs: the chart's release, in the namespace a site
// makes for it (Pod Security restricted), from the image tagged ImageRepo:ImageTag.
const (
	Release, ReleaseNamespace = "planetkube", "planetkube-system"
	ImageRepo, ImageTag       = "planetkube", "dev"
	// SiteNodeName is InstallSite's real node, at site princeton.
	SiteNodeName = "real-princeton-0"
)

// ChartValues are the helm flags a release on an emulated cluster with the
// real node n needs besides the chart's defaults: the image the node
// imported, the manager's replicas on the real node (kwok's pods run
// nothing), and the agent told the real kubelet's cgroup root and given a
// data folder in the node's WorkDir (the node shares the host's files: the
// chart's /var/lib/planetkube would outlive the cluster).
func ChartValues(n *Node) []string {
	return []string{
		"--set", "image.repository=" + ImageRepo, "--set", "image.tag=" + ImageTag,
		"--set", "manager.nodeSelector.type=real",
		"--set", "nodeAgent.kubeletCgroupRoot=/pk-$(NODE_NAME)",
		"--set", "nodeAgent.dataHostPath=" + filepath.Join(n.WorkDir, "agent-data"),
	}
}

// Site is an emulated cluster's real node with the chart installed.
type Site struct {
	Nodes  *Nodes
	Node   *Node
	Images Images

	internet *Internet // once ServeInternet made it
}

// SiteOptions: Values are extra helm flags; Log receives progress.
type SiteOptions struct {
	Values []string
	Log    io.Writer
}

// InstallSite does what `make run` does on a started cluster (emulator
// Options.RealNodes) as a site would: the images built, one real node
// (SiteNodeName) joined, the release namespace made and the chart
// installed with helm --wait. Stop the returned site's Nodes to undo it.
func InstallSite(ctx context.Context, c *emulator.Cluster, o SiteOptions) (_ *Site, err error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	began := time.Now()
	imgs, err := BuildImages(c.RepoRoot(), c.BinDir, filepath.Join(c.WorkDir, "images"), ImageRepo+":"+ImageTag)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Log, "Built the images (planetkube, pause, workload) in %s\n", time.Since(began).Round(time.Millisecond))
	nodes, err := New(ctx, c, imgs.Paths(), o.Log)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = nodes.Stop()
		}
	}()
	node, err := nodes.Add(ctx, SiteNodeName, "princeton", 0)
	if err != nil {
		return nil, err
	}
	_, err = c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: ReleaseNamespace, Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"},
	}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	began = time.Now()
	args := append([]string{"install", Release, filepath.Join(c.RepoRoot(), "charts", "planetkube"),
		"-n", ReleaseNamespace, "--wait", "--timeout", "5m", "--kubeconfig", c.Kubeconfig}, ChartValues(node)...)
	if out, err := Helm(ctx, c, append(args, o.Values...)...); err != nil {
		return nil, fmt.Errorf("helm install: %w\n%s", err, out)
	}
	fmt.Fprintf(o.Log, "Installed the chart with helm (release %s in %s) in %s\n", Release, ReleaseNamespace, time.Since(began).Round(time.Millisecond))
	return &Site{Nodes: nodes, Node: node, Images: imgs}, nil
}

// Helm runs the cluster's pinned helm with its own cache and configuration
// folders under the cluster's work folder, and returns its output.
func Helm(ctx context.Context, c *emulator.Cluster, args ...string) (string, error) {
	home := filepath.Join(c.WorkDir, "helm")
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(c.BinDir, "helm"), args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
	err := cmd.Run()
	return out.String(), err
}

// ServeInternet makes the site node's internet namespace and starts its TCP
// and UDP servers on port 9000 (logs tcp-serve and udp-serve), as make run
// does for the README's tour; once, later calls return the same.
func (s *Site) ServeInternet() (*Internet, error) {
	if s.internet != nil {
		return s.internet, nil
	}
	inet, err := s.Node.Internet()
	if err != nil {
		return nil, err
	}
	for _, mode := range []string{"tcp-serve", "udp-serve"} {
		if _, err := inet.Start(mode, s.Images.WorkloadProgram, mode, "-listen", inet.IP+":9000"); err != nil {
			return nil, err
		}
	}
	s.internet = inet
	return inet, nil
}
