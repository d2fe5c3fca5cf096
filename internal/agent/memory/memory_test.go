package memory

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/agent/memory/policy"
	"github.com/planetkube/planetkube/internal/testing/memload"
	"github.com/planetkube/planetkube/internal/testing/skiplog"
	"github.com/planetkube/planetkube/internal/testing/testenv"
)

func TestMain(m *testing.M) {
	memload.ServeIfStandIn()
	os.Exit(m.Run())
}

// requireV1Memory returns the host's v1 memory hierarchy, or skips.
func requireV1Memory(t *testing.T) Hierarchy {
	t.Helper()
	msg := ""
	h, err := DetectAt("/sys/fs/cgroup")
	switch {
	case os.Geteuid() != 0:
		msg = "Test needs root (it makes memory cgroups)"
	case err != nil:
		msg = "Test needs a memory cgroup hierarchy: " + err.Error()
	case h.V2:
		msg = "Test needs a cgroup v1 memory hierarchy; this host's is v2"
	}
	skiplog.UnlessRoot(t, msg)
	return h
}

// TestResetsTheBiggestSliverPastTheMark: two sliver stand-ins in pod memory
// cgroups of a test tree, whose total is the test's "node" (scaled so that
// they use half of it); one allocates past the 90 % mark: its pod is deleted
// and its Slice gets an event naming the node; the other is untouched.
func TestResetsTheBiggestSliverPastTheMark(t *testing.T) {
	h := requireV1Memory(t)
	env := testenv.Start(t, "../../..")
	k8s := env.Client
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Two slices of site princeton, one sliver each on node n1.
	for _, ns := range []string{"princeton", "princeton-hog", "princeton-calm"} {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	root := filepath.Join(h.Root, fmt.Sprintf("planetkube-memtest-%d", os.Getpid()))
	pods := map[string]*corev1.Pod{}
	for _, name := range []string{"hog", "calm"} {
		slice := &planetv1.Slice{ObjectMeta: metav1.ObjectMeta{Namespace: "princeton", Name: name},
			Spec: planetv1.SliceSpec{Template: planetv1.SliverTemplate{Image: "busybox"}}}
		if err := k8s.Create(ctx, slice); err != nil {
			t.Fatal(err)
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "princeton-" + name, Name: name + "-n1", Labels: map[string]string{
				planetv1.LabelManagedBy: planetv1.ManagedByValue, planetv1.LabelSite: "princeton", planetv1.LabelSlice: name,
			}, Annotations: map[string]string{planetv1.AnnotationSliceFullName: "plc.princeton." + name}},
			Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "sliver", Image: "busybox",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}}}},
		}
		if err := k8s.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		pod.Status.Phase = corev1.PodRunning // the API server made it Burstable
		if err := k8s.Status().Update(ctx, pod); err != nil {
			t.Fatal(err)
		}
		pods[name] = pod
		dir := filepath.Join(root, "kubepods", "burstable", "pod"+string(pod.UID))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Remove(dir) })
	}
	t.Cleanup(func() {
		_ = os.Remove(filepath.Join(root, "kubepods", "burstable"))
		_ = os.Remove(filepath.Join(root, "kubepods"))
		_ = os.Remove(root)
	})
	hog := memload.Start(t, filepath.Join(root, "kubepods", "burstable", "pod"+string(pods["hog"].UID)), "")
	calm := memload.Start(t, filepath.Join(root, "kubepods", "burstable", "pod"+string(pods["calm"].UID)), "")
	hog.Alloc(t, 20)
	calm.Alloc(t, 20)

	// The "node" is the test tree: scaled so that it is half full now.
	tree := Hierarchy{Root: root}
	used0, err := tree.WorkingSet(root)
	if err != nil {
		t.Fatal(err)
	}
	total := used0 * 2
	meminfo := func() (policy.MemInfo, error) {
		used, err := tree.WorkingSet(root)
		if err != nil {
			return policy.MemInfo{}, err
		}
		return policy.MemInfo{Total: total, Available: total - min(used, total)}, nil
	}
	wd, err := policy.New(policy.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	g := &Guard{
		Watchdog: wd, Hierarchy: tree, Node: "n1", MemInfo: meminfo, Client: k8s,
		Recorder: env.Recorder(t, ctx, "planetkube-node-agent"), Metrics: NewMetrics(),
		Pods: func() []*corev1.Pod {
			list := &corev1.PodList{}
			if err := k8s.List(ctx, list, client.HasLabels{planetv1.LabelSlice}); err != nil {
				t.Error(err)
			}
			out := []*corev1.Pod{}
			for i := range list.Items {
				out = append(out, &list.Items[i])
			}
			return out
		},
	}
	if d, err := g.Check(ctx); err != nil || d.Level != policy.OK || d.Reset != nil {
		t.Fatalf("at half the node: %+v, %v; want OK and no reset", d, err)
	}

	// The hog allocates past the 90 % mark.
	hog.Alloc(t, int(float64(total)*0.45)>>20)
	d, err := g.Check(ctx)
	if err != nil || d.Reset == nil || d.Reset.Pod != "hog-n1" {
		t.Fatalf("past the mark: %+v, %v; want the hog reset", d, err)
	}
	t.Logf("Node (the test tree) at %.0f%% of %d MiB: %s", 100*d.InUse, total>>20, d.Reason)
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(pods["hog"]), &corev1.Pod{}); !apierrors.IsNotFound(err) {
		got := &corev1.Pod{}
		_ = k8s.Get(ctx, client.ObjectKeyFromObject(pods["hog"]), got)
		if got.DeletionTimestamp.IsZero() {
			t.Fatalf("the hog's pod was not deleted: %v", err)
		}
	}
	calmNow := &corev1.Pod{}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(pods["calm"]), calmNow); err != nil || !calmNow.DeletionTimestamp.IsZero() {
		t.Fatalf("the calm sliver was touched: %v", err)
	}
	// The event on the hog's Slice names the node.
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		list := &eventsv1.EventList{}
		if err := k8s.List(ctx, list, client.InNamespace("princeton")); err != nil {
			return false, nil
		}
		for _, e := range list.Items {
			if e.Regarding.Kind == "Slice" && e.Regarding.Name == "hog" && e.Reason == ReasonSliverReset && strings.Contains(e.Note, "node n1") {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no SliverReset event on Slice princeton/hog naming node n1: %v", err)
	}
	calm.Alloc(t, 1) // still alive and answering
}
