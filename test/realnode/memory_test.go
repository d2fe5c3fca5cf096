package realnode

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/agent/memory"
	"github.com/planetkube/planetkube/internal/testing/poll"
	"github.com/planetkube/planetkube/internal/testing/realnode"
)

// The memory watchdog's marks in this release (memoryValues): fractions of
// the pods' memory, the kubepods cgroup's limit (realnode.PodsMemory).
const memoryWarnAt, memoryResetAt = 0.4, 0.5

// memoryValues set the release's memory watchdog to measure the pods (the
// real node is the whole machine, shared with everything else running: a
// mark of its memory is never reached, or always) with marks a sliver can
// pass in a few seconds well below the kubepods cgroup's limit (--set-json:
// --set makes 0.4 a string).
var memoryValues = []string{
	"--set", "nodeAgent.memoryWatchdog.source=pods",
	"--set-json", fmt.Sprintf("nodeAgent.memoryWatchdog.warnAt=%v", memoryWarnAt),
	"--set-json", fmt.Sprintf("nodeAgent.memoryWatchdog.resetAt=%v", memoryResetAt),
}

// testMemory: the agent's memory watchdog, measuring the pods' share of
// the node, resets a sliver growing past resetAt of it: its pod is deleted
// (the Slice controller makes another) and its Slice gets a SliverReset
// event naming the node; a sliver holding a little memory runs on
// untouched; and the kubepods cgroup never came near its limit (memory.failcnt
// unchanged: no reclaim at the limit, no kernel OOM kill).
func testMemory(ctx context.Context, t *testing.T, e *env) {
	h, err := memory.DetectAt("/sys/fs/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	h.Root = filepath.Join(h.Root, e.node.CgroupRoot)
	kubepods, err := memory.KubepodsDir(h.Root)
	if err != nil {
		t.Fatal(err)
	}
	// realnode.PodsMemory, the machine's less the kubelet's systemReserved
	// (on a machine of less than 4 GiB, all of it).
	limit, limited, err := h.Limit(kubepods)
	if err != nil || !limited || limit != realnode.PodsMemory {
		t.Fatalf("The kubepods cgroup's limit: %d (limited %v, %v), want realnode.PodsMemory (%d): the kubelet's systemReserved (a machine of less than 4 GiB has none, and cannot run this case)", limit, limited, err, uint64(realnode.PodsMemory))
	}
	// The hog grows to more than half of that: the machine must have it
	// free beside what else runs (make test's other packages), or the
	// host's OOM killer, not the watchdog, would pick a victim.
	m, err := memory.NodeMemInfo()
	if err != nil {
		t.Fatal(err)
	}
	if avail := m.Available; avail < limit/2+1<<30 {
		t.Fatalf("The machine has %d MiB available, want %d MiB for the hog and a margin", avail>>20, (limit/2+1<<30)>>20)
	}
	failcnt := func() uint64 {
		t.Helper()
		n, err := limitHits(h, kubepods)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	hits0 := failcnt()

	if err := e.k8s.Create(ctx, e.slice("calm", "princeton", 1, []string{"mem", "-mib", "32", "-step-mib", "32"})); err != nil {
		t.Fatal(err)
	}
	defer e.deleteSlices(ctx, "calm", "hog")
	calm := e.runningSliver(ctx, t, "calm")

	// The hog grows to resetAt of the limit, from what pods use now, and
	// 256 MiB beyond: well below the limit (and the kubelet's eviction at
	// 100Mi below it).
	base, err := h.WorkingSet(kubepods)
	if err != nil {
		t.Fatal(err)
	}
	const mib = 1 << 20
	hogMiB := (int64(float64(limit)*memoryResetAt)-int64(base))/mib + 256
	if peak := uint64(base) + uint64(max(hogMiB, 0))*mib; hogMiB <= 0 || peak > limit*3/4 {
		t.Fatalf("Pods use %d MiB of %d already: no room to pass resetAt %.2f well below the limit", base/mib, limit/mib, memoryResetAt)
	}
	if err := e.k8s.Create(ctx, e.slice("hog", "princeton", 1, []string{"mem", "-mib", fmt.Sprint(hogMiB), "-step-mib", "128"})); err != nil {
		t.Fatal(err)
	}
	hog := e.runningSliver(ctx, t, "hog")
	began := time.Now()
	var peak uint64
	poll.Until(t, "the watchdog resetting the hog's sliver", 3*time.Minute, time.Second, func() error {
		if ws, err := h.WorkingSet(kubepods); err == nil {
			peak = max(peak, ws)
		}
		p := &corev1.Pod{}
		err := e.k8s.Get(ctx, client.ObjectKeyFromObject(hog), p)
		switch {
		case apierrors.IsNotFound(err) || err == nil && (p.UID != hog.UID || p.DeletionTimestamp != nil):
			return nil
		case err != nil:
			return err
		}
		for _, c := range p.Status.ContainerStatuses {
			if c.RestartCount > 0 {
				t.Fatalf("The hog's container restarted (%+v) before the watchdog reset it", c.LastTerminationState.Terminated)
			}
		}
		return fmt.Errorf("the hog's pod %s still running; pods use %d MiB of %d (peak %d)", p.Name, peak/mib, limit/mib, peak/mib)
	})
	t.Logf("Hog (%d MiB, from %d MiB of pods) reset %s after it ran; pods' peak %d MiB of %d (%.0f%%)",
		hogMiB, base/mib, time.Since(began).Round(time.Second), peak/mib, limit/mib, 100*float64(peak)/float64(limit))

	note := e.sliceEvent(ctx, t, "hog", memory.ReasonSliverReset)
	t.Logf("Event: %s", note)
	if !strings.Contains(note, "node "+e.node.Name) || !strings.Contains(note, "memory for pods") || !strings.Contains(note, hog.Name) {
		t.Errorf("SliverReset note %q, want it to name the node, the pods' memory and the sliver %s", note, hog.Name)
	}
	// The Slice controller makes the hog's sliver again.
	if again := e.runningSliver(ctx, t, "hog"); again.UID == hog.UID {
		t.Errorf("The hog's sliver is still pod %s", hog.UID)
	}
	e.deleteSlices(ctx, "hog")

	now := &corev1.Pod{}
	if err := e.k8s.Get(ctx, client.ObjectKeyFromObject(calm), now); err != nil {
		t.Fatal(err)
	}
	if now.UID != calm.UID || now.DeletionTimestamp != nil || now.Status.Phase != corev1.PodRunning || restarts(now) != 0 {
		t.Errorf("The calm sliver: pod %s %s (deleting %v, %d restarts), want %s Running untouched", now.UID, now.Status.Phase, now.DeletionTimestamp != nil, restarts(now), calm.UID)
	}
	if hits := failcnt(); hits != hits0 {
		t.Errorf("The kubepods cgroup hit its limit %d times during the case, want none: the watchdog acts well before", hits-hits0)
	}
}

// limitHits is how often a cgroup's memory hit its limit: memory.failcnt on
// cgroup v1, memory.events' max on v2.
func limitHits(h memory.Hierarchy, dir string) (uint64, error) {
	if !h.V2 {
		b, err := os.ReadFile(filepath.Join(dir, "memory.failcnt"))
		if err != nil {
			return 0, err
		}
		return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	}
	b, err := os.ReadFile(filepath.Join(dir, "memory.events"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "max "); ok {
			return strconv.ParseUint(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("%s has no max line", filepath.Join(dir, "memory.events"))
}

func restarts(p *corev1.Pod) int32 {
	var n int32
	for _, c := range p.Status.ContainerStatuses {
		n += c.RestartCount
	}
	return n
}

// deleteSlices deletes slices of site princeton (those already gone too).
func (e *env) deleteSlices(ctx context.Context, names ...string) {
	for _, name := range names {
		_ = e.k8s.Delete(ctx, &planetv1.Slice{ObjectMeta: metav1.ObjectMeta{Namespace: "princeton", Name: name}})
	}
}
