package fanout

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// PodTargets lists the node agents' pods (a DaemonSet on the host network)
// in namespace that selector matches (nil: all of them), and returns a
// target per Running pod that has a node and an IP: Node is the pod's node,
// URL http://<pod IP>:<port> (IPv6 in brackets). Targets are sorted by node,
// then pod name.
func PodTargets(r client.Reader, namespace string, selector labels.Selector, port int) Targets {
	if selector == nil {
		selector = labels.Everything()
	}
	return func(ctx context.Context) ([]Target, error) {
		if port < 1 || port > 65535 {
			return nil, fmt.Errorf("fanout: agent port %d out of range", port)
		}
		var pods corev1.PodList
		if err := r.List(ctx, &pods, client.InNamespace(namespace), client.MatchingLabelsSelector{Selector: selector}); err != nil {
			return nil, fmt.Errorf("fanout: listing agent pods: %w", err)
		}
		items := slices.Clone(pods.Items)
		slices.SortFunc(items, func(a, b corev1.Pod) int {
			if c := strings.Compare(a.Spec.NodeName, b.Spec.NodeName); c != 0 {
				return c
			}
			return strings.Compare(a.Name, b.Name)
		})
		var ts []Target
		for _, p := range items {
			if p.Status.Phase != corev1.PodRunning || p.Spec.NodeName == "" {
				continue
			}
			ip, err := netip.ParseAddr(p.Status.PodIP)
			if err != nil || ip.Zone() != "" {
				continue
			}
			ts = append(ts, Target{
				Node: p.Spec.NodeName,
				URL:  "http://" + net.JoinHostPort(ip.Unmap().String(), strconv.Itoa(port)),
			})
		}
		return ts, nil
	}
}

// CachedTargets lists the agents through ts at most once per ttl: a burst of
// lookups (each asks every agent) lists the agents' pods once, not once per
// request. A failed list is not kept. now is the clock (nil: time.Now).
func CachedTargets(ts Targets, ttl time.Duration, now func() time.Time) Targets {
	if now == nil {
		now = time.Now
	}
	var (
		mu     sync.Mutex
		cached []Target
		at     time.Time
	)
	return func(ctx context.Context) ([]Target, error) {
		mu.Lock()
		defer mu.Unlock()
		if cached != nil && now().Sub(at) < ttl {
			return slices.Clone(cached), nil
		}
		got, err := ts(ctx)
		if err != nil {
			return nil, err
		}
		cached, at = slices.Clone(got), now()
		if cached == nil {
			cached = []Target{}
		}
		return got, nil
	}
}
