package memory

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/agent/memory/policy"
	"github.com/planetkube/planetkube/internal/scheme"
)

const mib = 1 << 20

// writeCgroup makes a fake memory cgroup folder with the given files.
func writeCgroup(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// v1Files are a v1 memory cgroup's files: usage, limit and inactive cache.
func v1Files(usage, limit, inactive uint64) map[string]string {
	return map[string]string{
		"memory.usage_in_bytes": fmt.Sprintf("%d\n", usage),
		"memory.limit_in_bytes": fmt.Sprintf("%d\n", limit),
		"memory.stat":           fmt.Sprintf("cache 0\nrss %d\ntotal_cache %d\ntotal_inactive_file %d\n", usage, inactive, inactive),
	}
}

// v2Files are a v2 memory cgroup's files; limit "max" for none.
func v2Files(usage uint64, limit string, inactive uint64) map[string]string {
	return map[string]string{
		"memory.current": fmt.Sprintf("%d\n", usage),
		"memory.max":     limit + "\n",
		"memory.stat":    fmt.Sprintf("anon %d\nfile %d\ninactive_file %d\n", usage-inactive, inactive, inactive),
	}
}

func TestParseSource(t *testing.T) {
	for in, want := range map[string]Source{"node": SourceNode, "pods": SourcePods} {
		if got, err := ParseSource(in); err != nil || got != want {
			t.Errorf("ParseSource(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "Pods", "kubepods", "cgroup"} {
		if got, err := ParseSource(in); err == nil || !strings.Contains(err.Error(), "want node or pods") {
			t.Errorf("ParseSource(%q) = %q, %v; want an error naming node and pods", in, got, err)
		}
	}
}

// TestPodsMemInfo reads fake kubepods cgroups of either driver and
// version: the limit is the total (the node's MemTotal when there is none,
// or when it is above it), the working set (usage less inactive file
// cache) is what is in use.
func TestPodsMemInfo(t *testing.T) {
	const nodeTotal = 24 << 30
	node := func() (policy.MemInfo, error) { return policy.MemInfo{Total: nodeTotal, Available: 20 << 30}, nil }
	for _, tt := range []struct {
		name    string
		v2      bool
		dir     string // the kubepods folder under the kubelet's root; "" none
		files   map[string]string
		want    policy.MemInfo
		wantErr string
	}{
		{
			name: "v1 cgroupfs, allocatable enforced", dir: "kubepods",
			files: v1Files(1200*mib, 3<<30, 200*mib),
			want:  policy.MemInfo{Total: 3 << 30, Available: 3<<30 - 1000*mib},
		},
		{
			name: "v1 systemd driver", dir: "kubepods.slice",
			files: v1Files(512*mib, 2<<30, 0),
			want:  policy.MemInfo{Total: 2 << 30, Available: 1536 * mib},
		},
		{
			name: "v1 without a limit: the node's memory", dir: "kubepods",
			files: v1Files(6<<30, v1Unlimited, 0),
			want:  policy.MemInfo{Total: nodeTotal, Available: nodeTotal - 6<<30},
		},
		{
			name: "v1 limit above the node's memory", dir: "kubepods",
			files: v1Files(1<<30, 32<<30, 0),
			want:  policy.MemInfo{Total: nodeTotal, Available: nodeTotal - 1<<30},
		},
		{
			name: "v1 usage above the limit: none available", dir: "kubepods",
			files: v1Files(3<<30+mib, 3<<30, 0),
			want:  policy.MemInfo{Total: 3 << 30, Available: 0},
		},
		{
			name: "v2 with a limit", v2: true, dir: "kubepods.slice",
			files: v2Files(800*mib, fmt.Sprint(4<<30), 300*mib),
			want:  policy.MemInfo{Total: 4 << 30, Available: 4<<30 - 500*mib},
		},
		{
			name: "v2 max: the node's memory", v2: true, dir: "kubepods",
			files: v2Files(800*mib, "max", 0),
			want:  policy.MemInfo{Total: nodeTotal, Available: nodeTotal - 800*mib},
		},
		{name: "no kubepods cgroup", wantErr: "no kubepods cgroup"},
		{name: "a malformed limit", dir: "kubepods", files: map[string]string{"memory.limit_in_bytes": "lots\n", "memory.usage_in_bytes": "1\n"}, wantErr: "memory.limit_in_bytes"},
		{name: "a limit of 0", v2: true, dir: "kubepods", files: v2Files(0, "0", 0), wantErr: "limit of 0"},
		{name: "no usage file", dir: "kubepods", files: map[string]string{"memory.limit_in_bytes": "1073741824\n"}, wantErr: "memory.usage_in_bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "pk-node")
			if err := os.MkdirAll(root, 0o755); err != nil {
				t.Fatal(err)
			}
			if tt.dir != "" {
				writeCgroup(t, filepath.Join(root, tt.dir), tt.files)
			}
			got, err := Hierarchy{Root: root, V2: tt.v2}.PodsMemInfo(node)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("PodsMemInfo() = %+v, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("PodsMemInfo() = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
	t.Run("the node's memory unreadable", func(t *testing.T) {
		root := t.TempDir()
		writeCgroup(t, filepath.Join(root, "kubepods"), v1Files(1, 1<<30, 0))
		broken := func() (policy.MemInfo, error) { return policy.MemInfo{}, errors.New("no /proc/meminfo") }
		if _, err := (Hierarchy{Root: root}).PodsMemInfo(broken); err == nil || !strings.Contains(err.Error(), "no /proc/meminfo") {
			t.Fatalf("PodsMemInfo() error %v, want the node's", err)
		}
	})
}

// TestGuardMeasuresThePods: with the pods source, a node whose machine is
// nearly empty but whose pods passed the reset mark of their cgroup's limit
// resets the biggest sliver (its pod deleted, a SliverReset event on its
// Slice saying it is the pods' memory); the other sliver is untouched. The
// same pods measured against the node's memory (the default source) are
// left alone.
func TestGuardMeasuresThePods(t *testing.T) {
	root := filepath.Join(t.TempDir(), "pk-node")
	h := Hierarchy{Root: root}
	var pods []client.Object
	for i, name := range []string{"hog", "calm"} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "princeton-" + name, Name: name + "-n1", UID: types.UID(fmt.Sprintf("uid-%d", i)),
				Labels: map[string]string{
					planetv1.LabelManagedBy: planetv1.ManagedByValue, planetv1.LabelSite: "princeton", planetv1.LabelSlice: name,
				}, Annotations: map[string]string{planetv1.AnnotationSliceFullName: "plc.princeton." + name}},
			Spec:   corev1.PodSpec{NodeName: "n1"},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, QOSClass: corev1.PodQOSBurstable},
		}
		pods = append(pods, pod)
	}
	// The pods' cgroup: limited to 3 GiB, 1.8 GiB in use (60 %): the hog's
	// 1.5 GiB, the calm sliver's 100 MiB, the rest the system pods'.
	writeCgroup(t, filepath.Join(root, "kubepods"), v1Files(1843*mib, 3<<30, 0))
	writeCgroup(t, filepath.Join(root, "kubepods", "burstable", "poduid-0"), v1Files(1536*mib, v1Unlimited, 0))
	writeCgroup(t, filepath.Join(root, "kubepods", "burstable", "poduid-1"), v1Files(100*mib, v1Unlimited, 0))
	machine := func() (policy.MemInfo, error) { return policy.MemInfo{Total: 24 << 30, Available: 20 << 30}, nil }

	cfg := policy.DefaultConfig()
	cfg.WarnAt, cfg.ResetAt = 0.4, 0.5
	newGuard := func(source Source) (*Guard, client.Client, *events.FakeRecorder) {
		wd, err := policy.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		objs := make([]client.Object, len(pods))
		for i, p := range pods {
			objs[i] = p.DeepCopyObject().(client.Object)
		}
		k8s := fake.NewClientBuilder().WithScheme(scheme.Scheme()).WithObjects(objs...).Build()
		rec := events.NewFakeRecorder(10)
		g := &Guard{Watchdog: wd, Hierarchy: h, Node: "n1", Source: source, MemInfo: machine, Client: k8s, Recorder: rec, Metrics: NewMetrics(),
			Pods: func() []*corev1.Pod {
				list := &corev1.PodList{}
				if err := k8s.List(context.Background(), list); err != nil {
					t.Error(err)
				}
				out := []*corev1.Pod{}
				for i := range list.Items {
					out = append(out, &list.Items[i])
				}
				return out
			}}
		if source == SourcePods {
			g.MemInfo = func() (policy.MemInfo, error) { return h.PodsMemInfo(machine) }
		}
		return g, k8s, rec
	}
	ctx := context.Background()

	// The node's memory: 17 % in use, nothing to do.
	g, _, _ := newGuard(SourceNode)
	if d, err := g.Check(ctx); err != nil || d.Level != policy.OK || d.Reset != nil {
		t.Fatalf("Measuring the node: %+v, %v; want OK", d, err)
	}

	g, k8s, rec := newGuard(SourcePods)
	d, err := g.Check(ctx)
	if err != nil || d.Level != policy.Reset || d.Reset == nil || d.Reset.Pod != "hog-n1" {
		t.Fatalf("Measuring the pods: %+v, %v; want the hog reset", d, err)
	}
	if d.InUse < 0.59 || d.InUse > 0.61 {
		t.Errorf("In use %.3f, want 1843 MiB of 3 GiB", d.InUse)
	}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: "princeton-hog", Name: "hog-n1"}, &corev1.Pod{}); !apierrors.IsNotFound(err) {
		t.Errorf("The hog's pod: %v, want it deleted", err)
	}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: "princeton-calm", Name: "calm-n1"}, &corev1.Pod{}); err != nil {
		t.Errorf("The calm sliver's pod: %v, want it untouched", err)
	}
	select {
	case ev := <-rec.Events:
		if !strings.Contains(ev, ReasonSliverReset) || !strings.Contains(ev, "node n1 reached 60% of the memory for pods") || !strings.Contains(ev, "1536 MiB") {
			t.Errorf("Event %q, want a SliverReset naming the node, the pods' memory and the hog's usage", ev)
		}
	default:
		t.Error("No event")
	}
}
