package realnode

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/planetkube/planetkube/internal/flow/lookup"
	"github.com/planetkube/planetkube/internal/testing/poll"
	"github.com/planetkube/planetkube/internal/testing/realnode"
)

// testAgentRestart: a sliver's TCP flow to the internet namespace, ended
// and committed (the lookup API gives its end), is still returned with the
// same start, end, bytes and slice after the agent's pod is deleted and its
// DaemonSet makes another: the store is on the node (the chart's hostPath,
// nodeAgent.dataHostPath), not in the pod.
func testAgentRestart(ctx context.Context, t *testing.T, e *env) {
	inet, err := e.node.Internet()
	if err != nil {
		t.Fatal(err)
	}
	addr := inet.IP + ":9002"
	if _, err := inet.Start("restart-serve", e.imgs.WorkloadProgram, "tcp-serve", "-listen", addr); err != nil {
		t.Fatal(err)
	}
	e.shortConntrackTimeouts(t, realnode.ClosedTCPConntrack...)

	// The flow starts well after the sliver is Running (the agent knows
	// its address by then): the workload's sender, exec'd into the
	// sliver, closes its connection when done, and the flow is over.
	if err := e.k8s.Create(ctx, e.slice("recorded", "princeton", 1, []string{"pause"})); err != nil {
		t.Fatal(err)
	}
	defer e.deleteSlices(ctx, "recorded")
	pod := e.runningSliver(ctx, t, "recorded")
	since := time.Now()
	const sent = 100000
	if out, err := e.kubectl("exec", "-n", pod.Namespace, pod.Name, "--", realnode.WorkloadBinary, "tcp-send", "-to", addr, "-bytes", fmt.Sprint(sent), "-exit"); err != nil || !strings.Contains(out, "done") {
		t.Fatalf("Sending from the sliver: %v: %s", err, out)
	}

	q := url.Values{"ip": {inet.IP}, "port": {"9002"}, "from": {since.Add(-5 * time.Second).UTC().Format(time.RFC3339Nano)}, "to": {time.Now().Add(10 * time.Minute).UTC().Format(time.RFC3339Nano)}}
	find := func() (lookup.Row, error) {
		r, err := e.lookup(q)
		if err != nil {
			return lookup.Row{}, err
		}
		for _, row := range r.Flows {
			if strings.HasPrefix(row.OrigSrc, pod.Status.PodIP+":") && row.End != nil {
				return row, nil
			}
		}
		return lookup.Row{}, fmt.Errorf("%d flows, none ended from pod %s (%s)", len(r.Flows), pod.Name, pod.Status.PodIP)
	}
	var before lookup.Row
	poll.Until(t, "the agent committing the sliver's ended flow", 2*time.Minute, time.Second, func() (err error) {
		before, err = find()
		return err
	})
	t.Logf("Committed: %s → %s, %d bytes, %s to %s", before.OrigSrc, before.OrigDst, before.OrigBytes, before.Start.Format(time.RFC3339Nano), before.End.Format(time.RFC3339Nano))
	if before.Slice != "plc.princeton.recorded" || before.PodUID != string(pod.UID) || before.OrigBytes < sent {
		t.Errorf("The flow: slice %q (pod %s), %d bytes; want plc.princeton.recorded (%s) and at least %d", before.Slice, before.PodUID, before.OrigBytes, pod.UID, sent)
	}

	old := e.agentPod(ctx, t)
	if err := e.k8s.Delete(ctx, old); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	now := e.replacedAgent(ctx, t, old.UID)
	t.Logf("Agent %s deleted, %s Ready in %s", old.Name, now.Name, time.Since(began).Round(time.Millisecond))
	var after lookup.Row
	poll.Until(t, "the new agent returning the flow", time.Minute, time.Second, func() (err error) {
		after, err = find()
		return err
	})
	if !after.Start.Equal(before.Start) || !after.End.Equal(*before.End) || after.OrigBytes != before.OrigBytes || after.ReplyBytes != before.ReplyBytes ||
		after.OrigSrc != before.OrigSrc || after.Slice != before.Slice {
		t.Errorf("After the agent's restart the flow is %+v, want %+v", after, before)
	}
}

// shortConntrackTimeouts shortens the node's conntrack timeouts names to
// 1 s for the rest of the test (realnode.Node.ShortenConntrack).
func (e *env) shortConntrackTimeouts(t *testing.T, names ...string) {
	t.Helper()
	restore, err := e.node.ShortenConntrack(names...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(restore)
}

// lookup asks the agent's lookup API on the node.
func (e *env) lookup(q url.Values) (*lookup.Response, error) {
	resp, err := http.Get(fmt.Sprintf("http://%s:%d/api/v1/flows?%s", e.node.IP, 9470, q.Encode()))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	r := &lookup.Response{}
	return r, json.NewDecoder(resp.Body).Decode(r)
}

// replacedAgent waits for an agent pod on the real node other than old to
// be Running and Ready, and returns it.
func (e *env) replacedAgent(ctx context.Context, t *testing.T, old types.UID) *corev1.Pod {
	t.Helper()
	var got *corev1.Pod
	poll.Until(t, "a new node agent Ready on "+e.node.Name, 3*time.Minute, 200*time.Millisecond, func() error {
		if got = e.readyAgent(ctx, t, old); got == nil {
			return fmt.Errorf("no agent pod Ready on the real node but %s", old)
		}
		return nil
	})
	return got
}

// readyAgent returns the agent pod on the real node other than old that is
// Running and Ready, or nil.
func (e *env) readyAgent(ctx context.Context, t *testing.T, old types.UID) *corev1.Pod {
	t.Helper()
	list := &corev1.PodList{}
	if err := e.k8s.List(ctx, list, client.InNamespace(agentNS)); err != nil {
		t.Fatal(err)
	}
	for i := range list.Items {
		p := &list.Items[i]
		if p.Spec.NodeName != e.node.Name || p.UID == old || p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return p
			}
		}
	}
	return nil
}
