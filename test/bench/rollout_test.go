package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/testing/emulator"
)

const (
	// pauseImage is the image of every pod of the benchmark.
	pauseImage = "registry.k8s.io/pause:3.10"
	// floorWorkers is how many goroutines create the floor's pods.
	floorWorkers = 64
	// floorNamespace and dsNamespace hold the pods of phases (b) and (c).
	floorNamespace, dsNamespace = "bench-floor", "bench-ds"
)

// rolloutResult holds the figures of the slice rollout benchmark.
type rolloutResult struct {
	nodes            int
	floor, slice, ds timing
	peakRSS          int64
	machine          machine
}

// runSliceRollout measures the floor (b), the Slice (a) and the DaemonSet (c)
// in turn on c, each putting one pod on every node, and checks the slivers.
func runSliceRollout(ctx context.Context, t *testing.T, c *emulator.Cluster) (*rolloutResult, error) {
	t.Helper()
	k8s, bareClient, err := benchClients(ctx, c)
	if err != nil {
		return nil, err
	}
	for _, ns := range []string{floorNamespace, dsNamespace} {
		if err := createNamespace(ctx, c.Client, ns); err != nil {
			return nil, err
		}
	}

	n := len(c.NodeNames)
	sliceNS := naming.SliceNamespace(benchSite, benchSlice)
	sliceSelector := planetv1.LabelSlice + "=" + benchSlice
	res := &rolloutResult{nodes: n}
	phases := []struct {
		into *timing
		p    phase
	}{
		{&res.floor, phase{name: "Floor", namespace: floorNamespace, start: func(ctx context.Context) error {
			return createFloorPods(ctx, bareClient, c.NodeNames)
		}}},
		{&res.slice, phase{name: "Slice", namespace: sliceNS, selector: sliceSelector, start: func(ctx context.Context) error {
			return createSlice(ctx, k8s)
		}}},
		{&res.ds, phase{name: "DaemonSet", namespace: dsNamespace, start: func(ctx context.Context) error {
			return createDaemonSet(ctx, c.Client)
		}}},
	}
	for _, ph := range phases {
		if *ph.into, err = measure(ctx, t, c.Client, ph.p, n, phaseTimeout); err != nil {
			return nil, err
		}
		if ph.into == &res.slice {
			if err := checkSlivers(ctx, c.Client, sliceNS, sliceSelector, c.NodeNames); err != nil {
				return nil, err
			}
		}
	}
	return res, nil
}

// benchClients returns a PlanetKube client and a bare client-go one with no
// client-side rate limit (the floor's), once the benchmark's Site exists:
// its namespace appearing shows the manager is up and its caches synced
// before anything is measured.
func benchClients(ctx context.Context, c *emulator.Cluster) (client.Client, kubernetes.Interface, error) {
	k8s, err := newClient(c.Config)
	if err != nil {
		return nil, nil, err
	}
	if err := createSite(ctx, k8s, c.Client, benchSite, "Benchmark site"); err != nil {
		return nil, nil, err
	}
	bare := rest.CopyConfig(c.Config)
	bare.QPS, bare.Burst = -1, 0 // no client-side rate limit
	bareClient, err := kubernetes.NewForConfig(bare)
	if err != nil {
		return nil, nil, fmt.Errorf("building the bare client: %w", err)
	}
	return k8s, bareClient, nil
}

// newClient returns a controller-runtime client that knows the PlanetKube kinds.
func newClient(cfg *rest.Config) (client.Client, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := planetv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: scheme})
}

// createSite creates a Site (unless it exists) and waits for the manager to
// make its namespace.
func createSite(ctx context.Context, k8s client.Client, cs kubernetes.Interface, name, displayName string) error {
	site := &planetv1.Site{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       planetv1.SiteSpec{DisplayName: displayName},
	}
	if err := k8s.Create(ctx, site); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating site %s: %w", name, err)
	}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the manager to create namespace %s: %w", name, err)
	}
	return nil
}

// createSlice creates the Slice over every PlanetKube node.
func createSlice(ctx context.Context, k8s client.Client) error {
	slice := &planetv1.Slice{
		ObjectMeta: metav1.ObjectMeta{Name: benchSlice, Namespace: benchSite},
		Spec: planetv1.SliceSpec{
			Description: "Benchmark: one sliver on every node",
			Template:    planetv1.SliverTemplate{Image: pauseImage},
		},
	}
	if err := k8s.Create(ctx, slice); err != nil {
		return fmt.Errorf("creating slice %s/%s: %w", benchSite, benchSlice, err)
	}
	return nil
}

// createFloorPods creates one pause pod bound to each node, from floorWorkers
// goroutines sharing client cs.
func createFloorPods(ctx context.Context, cs kubernetes.Interface, nodes []string) error {
	work := make(chan string)
	errs := make([]error, floorWorkers)
	var wg sync.WaitGroup
	for w := range floorWorkers {
		wg.Go(func() {
			for node := range work {
				if errs[w] == nil {
					errs[w] = createFloorPod(ctx, cs, node)
				}
			}
		})
	}
	for _, node := range nodes {
		work <- node
	}
	close(work)
	wg.Wait()
	return errors.Join(errs...)
}

// createFloorPod creates the floor's pause pod on node.
func createFloorPod(ctx context.Context, cs kubernetes.Interface, node string) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "floor-" + node, Namespace: floorNamespace},
		Spec: corev1.PodSpec{
			NodeName:   node,
			Containers: []corev1.Container{{Name: "pause", Image: pauseImage}},
		},
	}
	if _, err := cs.CoreV1().Pods(floorNamespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating pod %s: %w", pod.Name, err)
	}
	return nil
}

// createDaemonSet creates a pause DaemonSet that tolerates every taint.
func createDaemonSet(ctx context.Context, cs kubernetes.Interface) error {
	labels := map[string]string{"app": "bench"}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "bench", Namespace: dsNamespace},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					Containers:  []corev1.Container{{Name: "pause", Image: pauseImage}},
				},
			},
		},
	}
	if _, err := cs.AppsV1().DaemonSets(dsNamespace).Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating daemonset %s: %w", ds.Name, err)
	}
	return nil
}

// checkSlivers fails unless the slice's pods are exactly one on each of nodes.
func checkSlivers(ctx context.Context, cs kubernetes.Interface, namespace, selector string, nodes []string) error {
	pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return fmt.Errorf("listing slivers: %w", err)
	}
	want := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		want[n] = true
	}
	got := make(map[string]bool, len(pods.Items))
	for i := range pods.Items {
		node := pods.Items[i].Spec.NodeName
		if !want[node] || got[node] {
			return fmt.Errorf("sliver %s is on node %q: not a cluster node, or a second sliver there", pods.Items[i].Name, node)
		}
		got[node] = true
	}
	if len(pods.Items) != len(nodes) {
		return fmt.Errorf("slice has %d slivers, want %d (one per node)", len(pods.Items), len(nodes))
	}
	return nil
}
