package realnode

import (
	"context"
	"fmt"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/testing/poll"
)

// usageValues have the manager ask the agents every 10 s (the least it
// takes) instead of every 5 minutes.
var usageValues = []string{"--set", "manager.extraArgs={--usage-interval=10s}"}

// testUsage: a sliver burning CPU on the real node shows in its Slice's
// status.usage (the agent reads the sliver's cgroup, the manager gathers
// the agent's report), and the site's status.contribution says the node
// hosts it.
func testUsage(ctx context.Context, t *testing.T, e *env) {
	if err := e.k8s.Create(ctx, e.slice("busy", "princeton", 1, []string{"cpu", "-threads", "1"})); err != nil {
		t.Fatal(err)
	}
	defer e.deleteSlices(ctx, "busy")
	e.runningSliver(ctx, t, "busy")
	poll.Until(t, "slice busy's usage counting its CPU", 3*time.Minute, 2*time.Second, func() error {
		s := &planetv1.Slice{}
		if err := e.k8s.Get(ctx, client.ObjectKey{Namespace: "princeton", Name: "busy"}, s); err != nil {
			return err
		}
		if u := s.Status.Usage; u == nil || u.CPUSeconds < 3 || u.Nodes != 1 {
			return fmt.Errorf("status.usage %+v, want at least 3 CPU seconds on 1 node", u)
		}
		return nil
	})
	poll.Until(t, "site princeton's contribution", time.Minute, 2*time.Second, func() error {
		site := &planetv1.Site{}
		if err := e.k8s.Get(ctx, client.ObjectKey{Name: "princeton"}, site); err != nil {
			return err
		}
		if c := site.Status.Contribution; c == nil || c.Slivers < 1 || c.CPUSeconds < 3 {
			return fmt.Errorf("status.contribution %+v, want the busy sliver and its CPU", c)
		}
		return nil
	})
}
