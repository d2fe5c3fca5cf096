// Package helm installs the chart into an emulated cluster of its own with
// the pinned helm, runs the manager binary with the chart's flags as the
// chart's ServiceAccount, and checks that the chart's RBAC, webhook
// configuration and certificate are enough for the samples to reconcile;
// then upgrades (a changed value and a changed CRD) and uninstalls.
package helm

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/scheme"
	"github.com/planetkube/planetkube/internal/testing/emulator"
	"github.com/planetkube/planetkube/internal/testing/poll"
	"github.com/planetkube/planetkube/internal/testing/ports"
	"github.com/planetkube/planetkube/internal/testing/secretvolume"
)

const ns = "planetkube-system"

// copyChart copies the chart to a temporary folder (to change a CRD).
func copyChart(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "planetkube")
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// site is one install: an emulated cluster of its own, the chart's release
// in it, and the manager binary run as the chart's Deployment would.
type site struct {
	cluster *emulator.Cluster
	k8s     client.Client
	mgr     *emulator.Process
	bin     string
}

// helm runs the pinned helm against the site's cluster.
func (s *site) helm(t *testing.T, args ...string) string {
	t.Helper()
	var out, stderr bytes.Buffer
	cmd := exec.Command(filepath.Join(s.bin, "helm"), append(args, "--kubeconfig", s.cluster.Kubeconfig)...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm %v: %v\n%s", args, err, stderr.String())
	}
	return out.String()
}

// startSite starts a cluster, installs the chart as a site operator would
// (docs/operations.md: the release namespace labelled Pod Security restricted first)
// with the given authority, and runs the manager binary with the flags of
// the chart's Deployment as the chart's ServiceAccount. The chart's pods
// here are kwok's, which run nothing, so the binary runs as a local
// process: only its listening addresses move to free loopback ports, and
// the Secret volume the Deployment mounts is done as the kubelet would
// (secretvolume), its ConfigMap volume (the peers) as a file. It returns once the manager's certificate is in the
// chart's webhook configuration and its server answers with it.
func startSite(ctx context.Context, t *testing.T, bin, authority string, sets ...string) *site {
	t.Helper()
	cluster, err := emulator.Start(ctx, emulator.Options{BinDir: bin, Nodes: 10, Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Stop() })
	scheme := scheme.Scheme()
	_ = apiextv1.AddToScheme(scheme)
	k8s, err := client.New(cluster.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	s := &site{cluster: cluster, k8s: k8s, bin: bin}
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
	}}}); err != nil {
		t.Fatal(err)
	}
	s.helm(t, append([]string{"install", "planetkube", filepath.Join(cluster.RepoRoot(), "charts", "planetkube"), "-n", ns, "--set", "authority.name=" + authority}, sets...)...)

	// Pod Security admits each workload in its namespace: the manager's pods
	// in the restricted release namespace, the agents' in their privileged
	// one (kwok runs them; a refused pod would never exist).
	poll.Until(t, "the chart's pods admitted under Pod Security", 120*time.Second, 200*time.Millisecond, func() error {
		d, ds := &appsv1.Deployment{}, &appsv1.DaemonSet{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "planetkube-manager"}, d); err != nil {
			return err
		}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: "planetkube-agent", Name: "planetkube-node-agent"}, ds); err != nil {
			return err
		}
		if d.Status.ReadyReplicas != 2 || ds.Status.DesiredNumberScheduled == 0 || ds.Status.NumberReady != ds.Status.DesiredNumberScheduled {
			return fmt.Errorf("manager %d/2 ready, agents %d/%d ready", d.Status.ReadyReplicas, ds.Status.NumberReady, ds.Status.DesiredNumberScheduled)
		}
		return nil
	})

	dep := &appsv1.Deployment{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "planetkube-manager"}, dep); err != nil {
		t.Fatal(err)
	}
	args := slices.Clone(dep.Spec.Template.Spec.Containers[0].Args)
	// The peers ConfigMap the Deployment mounts, as a file.
	peers := &corev1.ConfigMap{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "planetkube-peers"}, peers); err != nil {
		t.Fatal(err)
	}
	peersFile := filepath.Join(t.TempDir(), "peers.yaml")
	if err := os.WriteFile(peersFile, []byte(peers.Data["peers.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	certDir, port := t.TempDir(), ports.Free(t)
	args = append(args, "--peers-file="+peersFile, "--webhook-host=127.0.0.1", "--webhook-port="+strconv.Itoa(port), "--webhook-cert-dir="+certDir,
		"--namespace="+ns, "--metrics-bind-address=0", "--health-probe-bind-address=0", "--flow-lookup-address=0")
	if s.mgr, err = cluster.StartManagerAs(ctx, emulator.ManagerUser, filepath.Join(bin, "planetkube"), args...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("manager log (%s):\n%s", authority, s.mgr.LogTail(60))
		}
	})
	go secretvolume.Mount(ctx, k8s, client.ObjectKey{Namespace: ns, Name: "planetkube-webhook-cert"}, certDir, 200*time.Millisecond)

	// The manager made the certificate, wrote its CA into the chart's
	// webhook configuration, and serves the Service's name with it: what
	// the API server checks when it calls the webhook. (It cannot call it
	// here: no cluster DNS or Service routing reaches a local process.)
	var roots *x509.CertPool
	poll.Until(t, "the CA in the chart's webhook configuration", 90*time.Second, 200*time.Millisecond, func() error {
		vwc := &admissionregv1.ValidatingWebhookConfiguration{}
		if err := k8s.Get(ctx, client.ObjectKey{Name: "planetkube-validating-webhooks"}, vwc); err != nil {
			return err
		}
		for _, w := range vwc.Webhooks {
			if len(w.ClientConfig.CABundle) == 0 {
				return errors.New("webhook " + w.Name + " has no caBundle yet")
			}
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(vwc.Webhooks[0].ClientConfig.CABundle) {
			return errors.New("the caBundle is not PEM")
		}
		return nil
	})
	poll.Until(t, "the webhook server answers as planetkube-webhook.planetkube-system.svc", 60*time.Second, 200*time.Millisecond, func() error {
		conn, err := tls.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port), &tls.Config{RootCAs: roots, ServerName: "planetkube-webhook." + ns + ".svc"})
		if err != nil {
			return err
		}
		return conn.Close()
	})
	return s
}

// archiverUnderTheChartsRBAC: the chart's archiver (archive.enabled) is
// admitted under Pod Security, and its binary, run as its ServiceAccount
// with the StatefulSet's flags, does what needs the generated RBAC: it
// makes the agents' TLS Secret in their namespace (secrets create, get),
// lists the agents' pods and the nodes, and so tells what the archive
// lacks of a node that is not in the cluster.
func archiverUnderTheChartsRBAC(ctx context.Context, t *testing.T, s *site) {
	t.Helper()
	poll.Until(t, "the archiver's pod admitted under Pod Security", 60*time.Second, 200*time.Millisecond, func() error {
		sts := &appsv1.StatefulSet{}
		if err := s.k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "planetkube-archiver"}, sts); err != nil {
			return err
		}
		if sts.Status.Replicas != 1 {
			return fmt.Errorf("%d archiver pods", sts.Status.Replicas)
		}
		return nil
	})
	sts := &appsv1.StatefulSet{}
	if err := s.k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "planetkube-archiver"}, sts); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	gone := filepath.Join(dir, "node-gone")
	if err := os.Mkdir(gone, 0o750); err != nil {
		t.Fatal(err)
	}
	// What node-gone's agent listed at the last sync: a segment being
	// written, of 5 records.
	pending := `{"listed_at":"2026-12-01T00:00:00Z","unsealed":{"seq":1,"records":5,"min_start":"2026-12-01T00:00:00Z","max_time":"2026-12-01T00:00:00Z","data_bytes":100,"index_bytes":0}}`
	if err := os.WriteFile(filepath.Join(gone, "pending.json"), []byte(pending), 0o640); err != nil {
		t.Fatal(err)
	}
	args := append(slices.Clone(sts.Spec.Template.Spec.Containers[0].Args), "--archive-dir="+dir, "--interval=1s",
		"--listen-address=0", "--metrics-bind-address=0", "--health-probe-bind-address=0", "--namespace="+ns)
	p, err := s.cluster.StartManagerAs(ctx, "system:serviceaccount:"+ns+":planetkube-archiver", filepath.Join(s.bin, "planetkube"), args...)
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the archiver makes the agents' TLS Secret", 60*time.Second, 200*time.Millisecond, func() error {
		secret := &corev1.Secret{}
		if err := s.k8s.Get(ctx, client.ObjectKey{Namespace: "planetkube-agent", Name: "planetkube-archive-tls"}, secret); err != nil {
			return err
		}
		if len(secret.Data["tls.crt"]) == 0 {
			return errors.New("no certificate in it")
		}
		return nil
	})
	poll.Until(t, "the archiver tells what it lacks of node-gone", 60*time.Second, 200*time.Millisecond, func() error {
		b, err := os.ReadFile(filepath.Join(gone, "left.json"))
		if err != nil {
			return err
		}
		if !strings.Contains(string(b), `"records":5`) {
			return fmt.Errorf("left.json: %s", b)
		}
		return nil
	})
	if log, err := os.ReadFile(p.LogPath); err != nil {
		t.Error(err)
	} else if refused := grep(string(log), "forbidden"); refused != "" {
		t.Errorf("the archiver was refused something under the chart's RBAC:\n%s", refused)
	}
	_ = p.Kill()
}

// TestHelmInstallUpgradeUninstall installs two sites, each a release in a
// cluster of its own with its own authority, then runs the samples,
// upgrades and uninstalls the first.
func TestHelmInstallUpgradeUninstall(t *testing.T) {
	bin, err := emulator.FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	if err := emulator.CheckBinaries(bin); err != nil {
		t.Fatalf("%v: run `make tools build` first", err)
	}
	for _, b := range []string{"helm", "planetkube"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			t.Fatalf("%s is missing from %s: run `make tools build`", b, bin)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b := startSite(ctx, t, bin, "plc"), startSite(ctx, t, bin, "ple", "--set", "archive.enabled=true")
	archiverUnderTheChartsRBAC(ctx, t, b)

	// Each install publishes its own authority, with its own key, and knows
	// nothing of the other's until they peer.
	for _, s := range []struct {
		site       *site
		own, other string
	}{{a, "plc", "ple"}, {b, "ple", "plc"}} {
		poll.Until(t, s.own+" publishes its Authority", 60*time.Second, 200*time.Millisecond, func() error {
			own := &planetv1.Authority{}
			if err := s.site.k8s.Get(ctx, client.ObjectKey{Name: s.own}, own); err != nil {
				return err
			}
			if len(own.Spec.Keys) != 1 {
				return fmt.Errorf("authority %s has %d keys", s.own, len(own.Spec.Keys))
			}
			return nil
		})
		if err := s.site.k8s.Get(ctx, client.ObjectKey{Name: s.other}, &planetv1.Authority{}); !apierrors.IsNotFound(err) {
			t.Errorf("the %s install has an Authority %s: %v", s.own, s.other, err)
		}
	}
	cluster, k8s, mgr := a.cluster, a.k8s, a.mgr
	chart := filepath.Join(cluster.RepoRoot(), "charts", "planetkube")

	// The samples reconcile under the chart's RBAC.
	samples := filepath.Join(cluster.RepoRoot(), "config", "samples")
	poll.Until(t, "applying the samples", 30*time.Second, 200*time.Millisecond, func() error { return cluster.Apply(ctx, samples) })
	for _, key := range []client.ObjectKey{{Namespace: "princeton", Name: "codeen"}, {Namespace: "mit", Name: "chord"}, {Namespace: "berkeley", Name: "sleepy"}} {
		poll.Until(t, "slice "+key.String()+" Ready", 120*time.Second, 200*time.Millisecond, func() error {
			s := &planetv1.Slice{}
			if err := k8s.Get(ctx, key, s); err != nil {
				return err
			}
			if c := meta.FindStatusCondition(s.Status.Conditions, planetv1.ConditionReady); c == nil || c.Status != "True" {
				return errors.New("not Ready: " + s.Status.Slivers)
			}
			return nil
		})
	}
	if log, err := os.ReadFile(mgr.LogPath); err != nil {
		t.Error(err)
	} else if refused := grep(string(log), "forbidden"); refused != "" {
		t.Errorf("the manager was refused something under the chart's RBAC:\n%s", refused)
	}

	// The chart's admission policy keeps the manager's Secret and Pod
	// writes to PlanetKube's namespaces and its own.
	cfg := rest.CopyConfig(cluster.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: emulator.ManagerUser}
	asManager, err := client.New(cfg, client.Options{Scheme: k8s.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	stray := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "stray"}}
	if err := asManager.Create(ctx, stray); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "namespaces PlanetKube owns") {
		t.Errorf("the manager wrote a Secret in namespace default: %v", err)
	}
	// ... and the namespace label they hang on: it cannot label a namespace
	// it did not make, nor delete one.
	dflt := &corev1.Namespace{}
	if err := asManager.Get(ctx, client.ObjectKey{Name: "default"}, dflt); err != nil {
		t.Fatal(err)
	}
	dflt.Labels[planetv1.LabelManagedBy] = planetv1.ManagedByValue
	if err := asManager.Update(ctx, dflt); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "changes or deletes only those") {
		t.Errorf("the manager labelled namespace default as its own: %v", err)
	}
	if err := asManager.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-public"}}); !apierrors.IsForbidden(err) {
		t.Errorf("the manager deleted namespace kube-public: %v", err)
	}
	own := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "probe"}}
	if err := asManager.Create(ctx, own); err != nil {
		t.Errorf("the manager cannot write a Secret in its own namespace: %v", err)
	}

	// The agents' admission policy: an agent deletes sliver pods of the
	// node its token is bound to, and no other (dry runs: admission runs,
	// nothing is deleted).
	slivers := &corev1.PodList{}
	if err := k8s.List(ctx, slivers, client.HasLabels{planetv1.LabelSlice}); err != nil || len(slivers.Items) == 0 {
		t.Fatalf("no sliver to try the agent's policy on: %v", err)
	}
	victim := &slivers.Items[0]
	asAgentOn := func(node string) client.Client {
		cfg := rest.CopyConfig(cluster.Config)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:planetkube-agent:planetkube-node-agent",
			Extra: map[string][]string{"authentication.kubernetes.io/node-name": {node}}}
		c, err := client.New(cfg, client.Options{Scheme: k8s.Scheme()})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if err := asAgentOn("another-node").Delete(ctx, victim.DeepCopy(), client.DryRunAll); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "its own node") {
		t.Errorf("an agent deleted a sliver on another node: %v", err)
	}
	if err := asAgentOn(victim.Spec.NodeName).Delete(ctx, victim.DeepCopy(), client.DryRunAll); err != nil {
		t.Errorf("the agent of node %s cannot reset its own sliver: %v", victim.Spec.NodeName, err)
	}

	// Upgrade: a changed value and a changed CRD.
	changed := copyChart(t, chart)
	crdFile := filepath.Join(changed, "files", "crds", "planetkube.io_sites.yaml")
	crd := &apiextv1.CustomResourceDefinition{}
	raw, err := os.ReadFile(crdFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, crd); err != nil {
		t.Fatal(err)
	}
	crd.Spec.Versions[0].AdditionalPrinterColumns = append(crd.Spec.Versions[0].AdditionalPrinterColumns,
		apiextv1.CustomResourceColumnDefinition{Name: "Upgraded", Type: "string", JSONPath: ".spec.displayName"})
	if raw, err = yaml.Marshal(crd); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(crdFile, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	a.helm(t, "upgrade", "planetkube", changed, "-n", ns, "--reuse-values", "--set", "manager.kubeAPIQPS=500")
	dep := &appsv1.Deployment{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "planetkube-manager"}, dep); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(dep.Spec.Template.Spec.Containers[0].Args, "--kube-api-qps=500") {
		t.Errorf("helm upgrade did not change the manager's flags: %v", dep.Spec.Template.Spec.Containers[0].Args)
	}
	live := &apiextv1.CustomResourceDefinition{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: "sites.planetkube.io"}, live); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(live.Spec.Versions[0].AdditionalPrinterColumns, func(c apiextv1.CustomResourceColumnDefinition) bool { return c.Name == "Upgraded" }) {
		t.Error("helm upgrade did not update the Site CRD")
	}

	// Uninstall: the release's objects go; the CRDs and every Slice stay.
	a.helm(t, "uninstall", "planetkube", "-n", ns, "--wait")
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "planetkube-manager"}, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
		t.Errorf("the manager Deployment is still there after uninstall: %v", err)
	}
	for _, name := range []string{"slices.planetkube.io", "sites.planetkube.io", "tickets.planetkube.io"} {
		if err := k8s.Get(ctx, client.ObjectKey{Name: name}, &apiextv1.CustomResourceDefinition{}); err != nil {
			t.Errorf("CRD %s is gone after uninstall (crds.keep): %v", name, err)
		}
	}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: "princeton", Name: "codeen"}, &planetv1.Slice{}); err != nil {
		t.Errorf("slice princeton/codeen is gone after uninstall: %v", err)
	}
}

// grep returns the lines of s that match pattern.
func grep(s, pattern string) string {
	re := regexp.MustCompile(pattern)
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if re.MatchString(l) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// testWriter sends the emulator's progress to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
