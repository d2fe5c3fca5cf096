package bench

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// progressEvery is how often a running phase logs its counts.
const progressEvery = 5 * time.Second

// phase is one way of putting a pod on every node.
type phase struct {
	// name labels the phase in logs.
	name string
	// namespace and selector (a label selector, may be empty) pick its pods.
	namespace, selector string
	// start creates what makes the pods; the clock starts just before it.
	start func(ctx context.Context) error
	// match, if set, picks the pods that count (nil: all): pods of another
	// shape, such as those a phase replaces, are ignored.
	match func(*corev1.Pod) bool
}

// timing is what a phase measured: from the start to the Nth pod first
// seen, and to the Nth pod seen Running.
type timing struct {
	created, running time.Duration
}

// tracker counts the pods a watch reports, recording when the wanted number
// has been seen and when that many have been seen Running.
type tracker struct {
	mu      sync.Mutex
	want    int
	match   func(*corev1.Pod) bool
	start   time.Time
	seen    map[string]bool
	running map[string]bool
	timing  timing
	done    chan struct{}
}

// newTracker returns a tracker waiting for want pods that match (nil: any).
func newTracker(want int, match func(*corev1.Pod) bool) *tracker {
	return &tracker{want: want, match: match, seen: map[string]bool{}, running: map[string]bool{}, done: make(chan struct{})}
}

// begin starts the clock.
func (tr *tracker) begin() {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.start = time.Now()
}

// observe records a pod reported by the watch.
func (tr *tracker) observe(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || (tr.match != nil && !tr.match(pod)) {
		return
	}
	now := time.Now()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.start.IsZero() {
		return // left over from before the clock started
	}
	if !tr.seen[pod.Name] {
		tr.seen[pod.Name] = true
		if len(tr.seen) == tr.want {
			tr.timing.created = now.Sub(tr.start)
		}
	}
	if pod.Status.Phase == corev1.PodRunning && !tr.running[pod.Name] {
		tr.running[pod.Name] = true
		if len(tr.running) == tr.want {
			tr.timing.running = now.Sub(tr.start)
			close(tr.done)
		}
	}
}

// counts returns how many pods have been seen and seen Running.
func (tr *tracker) counts() (seen, running int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.seen), len(tr.running)
}

// measure watches the pods of p, runs p.start and returns how long after it
// the want-th pod was first seen and the want-th pod was seen Running. It
// fails when that does not happen within timeout.
func measure(ctx context.Context, t *testing.T, cs kubernetes.Interface, p phase, want int, timeout time.Duration) (timing, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tr := newTracker(want, p.match)
	informer := podInformer(cs, p.namespace, p.selector, tr)
	go informer.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		return timing{}, fmt.Errorf("%s: watch of namespace %s did not sync", p.name, p.namespace)
	}
	if seen, _ := tr.counts(); seen != 0 {
		return timing{}, fmt.Errorf("%s: namespace %s already has matching pods", p.name, p.namespace)
	}
	t.Logf("%s: starting", p.name)
	tr.begin()
	if err := p.start(ctx); err != nil {
		return timing{}, fmt.Errorf("%s: %w", p.name, err)
	}
	return waitDone(ctx, t, p.name, tr)
}

// waitDone waits for tr to see all its pods Running, logging progress.
func waitDone(ctx context.Context, t *testing.T, name string, tr *tracker) (timing, error) {
	t.Helper()
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	for {
		select {
		case <-tr.done:
			tr.mu.Lock()
			defer tr.mu.Unlock()
			t.Logf("%s: %d pods created in %s, Running in %s", name, tr.want,
				tr.timing.created.Round(time.Millisecond), tr.timing.running.Round(time.Millisecond))
			return tr.timing, nil
		case <-tick.C:
			seen, running := tr.counts()
			t.Logf("%s: %d pods seen, %d Running", name, seen, running)
		case <-ctx.Done():
			seen, running := tr.counts()
			return timing{}, fmt.Errorf("%s: %d of %d pods seen, %d Running: %w", name, seen, tr.want, running, ctx.Err())
		}
	}
}

// podInformer returns an informer over the pods of namespace matching
// selector that reports every add and update to tr.
func podInformer(cs kubernetes.Interface, namespace, selector string, tr *tracker) cache.Controller {
	lw := cache.NewFilteredListWatchFromClient(cs.CoreV1().RESTClient(), "pods", namespace,
		func(o *metav1.ListOptions) { o.LabelSelector = selector })
	_, informer := cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: lw,
		ObjectType:    &corev1.Pod{},
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    tr.observe,
			UpdateFunc: func(_, obj any) { tr.observe(obj) },
		},
	})
	return informer
}
