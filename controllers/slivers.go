package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/clusterview"
	"github.com/planetkube/planetkube/internal/cpushare"
	"github.com/planetkube/planetkube/internal/health"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/placement"
	"github.com/planetkube/planetkube/internal/shortfall"
	"github.com/planetkube/planetkube/internal/sliverplan"
)

const (
	// annotationTemplateHash on a sliver records the slice spec it was made
	// from; a sliver with another hash is replaced.
	annotationTemplateHash = clusterview.AnnotationTemplateHash
	// annotationReservedHash on a sliver records the amounts bound to its
	// slice on its node when it was made ("" for none). A binding that
	// starts or ends changes the sliver's QoS class, which a running Pod
	// cannot change (in-place resize keeps the QoS class): the sliver is
	// recreated.
	annotationReservedHash = clusterview.AnnotationReservedHash
	// sliverContainer is the name of a sliver's container.
	sliverContainer = "sliver"
	// sshMountPath is where the users' authorized_keys is mounted.
	sshMountPath = "/etc/planetkube/ssh"
)

// syncSlivers creates the missing slivers of the slice in its namespace ns
// and deletes the ones it must not have; with ns nil (the slice must run no
// slivers, g says why) it deletes them all. It returns the plan it carried
// out, how the selected nodes stand, and when to look again (a back-off
// that ends; 0 for never).
func (r *SliceReconciler) syncSlivers(ctx context.Context, slice *planetv1.Slice, id sliceIdentity, ns *corev1.Namespace, g gate) (sliverplan.Plan, *planetv1.PlacementSummary, time.Duration, error) {
	nsName := id.namespace()
	if nsName == "" {
		return sliverplan.Plan{}, nil, 0, nil // not a slice of anyone's: it has no namespace
	}
	pods, err := r.sliversOf(slice, nsName)
	if err != nil {
		return sliverplan.Plan{}, nil, 0, err
	}
	if ns == nil {
		var live []*corev1.Pod
		for _, p := range pods {
			if p.DeletionTimestamp.IsZero() {
				live = append(live, p)
			}
		}
		return sliverplan.Plan{}, r.blockedSummary(slice, g), 0, r.deleteSlivers(ctx, slice, live, nil)
	}

	key := sliceKey(slice)
	rsv := r.View.Reservations(key)
	parts := r.View.Parts(id.authority)
	reserved := make(map[string]string, len(rsv.Bound)+len(parts))
	for n, b := range rsv.Bound {
		reserved[n] = reservedHash(b, clusterview.Part{})
	}
	for n, p := range parts {
		reserved[n] = reservedHash(rsv.Bound[n], p)
	}
	slivers := sliversFrom(pods)
	req, err := placementRequest(slice, sliverplan.Existing(slice.Name, slivers))
	if err != nil {
		return sliverplan.Plan{}, nil, 0, err
	}
	nodes, refused, err := r.trustedNodes(ctx, id, r.View.Candidates(slice.Spec.Nodes.Sites, slice.Spec.Nodes.Names), req)
	if err != nil {
		return sliverplan.Plan{}, nil, 0, err
	}
	res := placement.Place(nodes, req)

	backOff, requeue := r.backOffFailed(slice, slivers)
	hash := templateHash(slice)
	room := map[string]clusterview.Free{} // read once per node a sliver is wanted on
	plan := sliverplan.Make(sliverplan.Input{
		Slice: slice.Name, TemplateHash: hash, Reserved: reserved, Slivers: slivers, Placement: res,
		NodeGone: func(n string) bool { _, ok := r.View.Allocatable(n); return !ok },
		BackOff:  backOff,
		NoRoom: func(n string) (string, string) {
			return r.noRoom(slice, n, rsv.Bound[n], parts[n], room, &requeue)
		},
	})
	summary := shortfall.Summarize(shortfall.Input{Refused: refused, Nodes: nodes, Placement: res, Issues: plan.NodeIssues, ReadyRetained: plan.ReadyRetained})

	var missing []*corev1.Pod
	for _, n := range plan.Create {
		missing = append(missing, r.sliverPod(slice, id, ns, n, hash, rsv, parts[n], room[n]))
	}
	if len(missing) > 0 && r.keysDue(slice) {
		// New slivers mount the keys: write them again first, so that a
		// Secret deleted by hand (the manager does not watch Secrets) comes
		// back before a sliver needs it; at most once per KeysRecheck, so
		// that a node joining does not cost every slice this write.
		keys, _ := authorizedKeys(slice)
		if err := r.applyKeys(ctx, slice, id, keys); err != nil {
			return plan, summary, requeue, err
		}
	}
	stale := make([]*corev1.Pod, 0, len(plan.Delete))
	now := map[*corev1.Pod]bool{}
	for _, d := range plan.Delete {
		p := pods[d.Index]
		stale = append(stale, p)
		now[p] = d.Now
	}
	err = errors.Join(
		r.createSlivers(ctx, slice, missing),
		r.deleteSlivers(ctx, slice, stale, func(p *corev1.Pod) bool { return now[p] }),
	)
	return plan, summary, requeue, err
}

// sliversOf returns the slice's pods in its namespace ns, as cached: they
// are shared with the cache and must not be changed. They are read from
// the informer's store, by its namespace index: a client List, even
// without deep copies, copies every pod into a PodList, which for a
// 1,000-node slice reconciled while its slivers start was most of the
// manager's allocations.
func (r *SliceReconciler) sliversOf(slice *planetv1.Slice, ns string) ([]*corev1.Pod, error) {
	objs, err := r.pods.ByIndex(toolscache.NamespaceIndex, ns)
	if err != nil {
		return nil, err
	}
	want := labels.SelectorFromSet(sliceLabels(slice))
	out := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok && want.Matches(labels.Set(p.Labels)) {
			out = append(out, p)
		}
	}
	return out, nil
}

// sliversFrom reads the slivers of pods.
func sliversFrom(pods []*corev1.Pod) []sliverplan.Sliver {
	out := make([]sliverplan.Sliver, len(pods))
	for i, p := range pods {
		out[i] = sliverplan.SliverOf(p, annotationTemplateHash, annotationReservedHash)
	}
	return out
}

// blockedSummary is how the selected nodes of a slice that runs no slivers
// stand: all of them for the reason the gate gives (nil when the slice's
// selection is invalid).
func (r *SliceReconciler) blockedSummary(slice *planetv1.Slice, g gate) *planetv1.PlacementSummary {
	if g.blockReason == "" {
		return nil
	}
	var t shortfall.Tally
	if err := r.walkBlocked(slice, g, t.Add); err != nil {
		return nil
	}
	return t.Summary()
}

// walkBlocked calls notRunning for every node the selection of a slice that
// runs no slivers names, with the gate's reason.
func (r *SliceReconciler) walkBlocked(slice *planetv1.Slice, g gate, notRunning func(reason, node, site, detail string)) error {
	req, err := placementRequest(slice, nil)
	if err != nil {
		return err
	}
	matches := req.Matcher()
	for _, n := range r.View.Candidates(slice.Spec.Nodes.Sites, slice.Spec.Nodes.Names) {
		if matches(&n) {
			notRunning(g.blockReason, n.Name, n.Site, g.blockMessage)
		}
	}
	return nil
}

// backOffFailed applies the per-node back-off of failed slivers, as the
// DaemonSet controller does: a failed sliver is deleted (and replaced) at
// once the first time, then only after a back-off that doubles with each
// failure on that node, up to a maximum. It returns the nodes whose failed
// sliver stays for now, with the time left, and the soonest of those times.
func (r *SliceReconciler) backOffFailed(slice *planetv1.Slice, slivers []sliverplan.Sliver) (map[string]time.Duration, time.Duration) {
	backOff := map[string]time.Duration{}
	var requeue time.Duration
	now := r.Backoff.Clock.Now()
	for i := range slivers {
		s := &slivers[i]
		if !s.Failed() {
			continue
		}
		id := backoffKey(slice, s.Node)
		if r.Backoff.IsInBackOffSinceUpdate(id, now) {
			left := r.Backoff.Get(id)
			backOff[s.Node] = left
			requeue = soonest(requeue, left)
			continue
		}
		r.Backoff.Next(id, now)
		r.Recorder.Eventf(slice, nil, corev1.EventTypeWarning, planetv1.ReasonSliverFailed, "ReplaceSliver",
			"Sliver %s on node %s failed (%s: %s); replacing it, then backing off %s", s.Name, s.Node, s.Reason, health.Truncate(s.Message, 256), r.Backoff.Get(id))
	}
	return backOff, requeue
}

// noRoom says why a node takes no new sliver of the slice now (roomFor),
// and backs off the next look at such a node. It records the node's free
// room in room, for the sliver's requests.
func (r *SliceReconciler) noRoom(slice *planetv1.Slice, node string, bound corev1.ResourceList, part clusterview.Part, room map[string]clusterview.Free, requeue *time.Duration) (reason, msg string) {
	reason, msg, room[node] = r.roomFor(slice, node, bound, part)
	if reason == "" {
		return "", ""
	}
	id := backoffKey(slice, node)
	now := r.Backoff.Clock.Now()
	if !r.Backoff.IsInBackOffSinceUpdate(id, now) {
		r.Backoff.Next(id, now)
	}
	*requeue = soonest(*requeue, r.Backoff.Get(id))
	return reason, msg
}

// roomFor says why a node takes no new sliver of the slice now: it takes
// no more pods (NodeFull), its site's allocation to the slice's authority
// (part) caps the authority's slivers there and they are all taken, and
// the slice has no slot of its own bound there (AllocationFull), or its
// free slots are held by resource pools for others: the slice has nothing
// bound there, and its allocation's own free slots do not cover it
// (NodeReserved); "" when it takes one. It returns the node's free room.
func (r *SliceReconciler) roomFor(slice *planetv1.Slice, node string, bound corev1.ResourceList, part clusterview.Part) (reason, msg string, free clusterview.Free) {
	free, ok := r.View.Free(node, sliceKey(slice), part.Allocation)
	_, slotsHeld := part.Amounts[planetv1.ResourceSlivers]
	_, boundSlot := bound[planetv1.ResourceSlivers]
	slotsHeld = slotsHeld && !boundSlot
	heldForOthers := free.Held // slots root pools hold for others than this sliver
	if slotsHeld {
		heldForOthers -= min(free.AllocationSlots, free.Held)
	}
	switch {
	case !ok:
	case free.Pods <= 0:
		reason, msg = planetv1.ReasonNodeFull, fmt.Sprintf("node %s takes no more pods: its other pods use all it allocates", node)
	case slotsHeld && free.AllocationSlots <= 0:
		q := part.Amounts[planetv1.ResourceSlivers]
		reason, msg = planetv1.ReasonAllocationFull, fmt.Sprintf(
			"node %s's site allocates %s slivers to authority %s there (a resource pool bound to the authority), and its slivers take them all", node, q.String(), part.Allocation)
	case len(bound) == 0 && free.Pods <= heldForOthers:
		reason, msg = planetv1.ReasonNodeReserved, fmt.Sprintf(
			"node %s's %d free pod slots are held by resource pools (planetkube.io/slivers) for the slices bound to them", node, free.Pods)
	}
	return reason, msg, free
}

// backoffKey identifies a slice's sliver on a node in the back-off.
func backoffKey(slice *planetv1.Slice, node string) string {
	return string(slice.UID) + "/" + node
}

// sliceKey is "<namespace>/<name>", the slice's key in the view.
func sliceKey(slice *planetv1.Slice) string { return slice.Namespace + "/" + slice.Name }

// placementRequest turns the slice's node choice into a placement request.
func placementRequest(slice *planetv1.Slice, existing map[string]bool) (placement.Request, error) {
	sel := slice.Spec.Nodes
	req := placement.Request{Sites: sel.Sites, Names: sel.Names, Existing: existing}
	if sel.Selector != nil {
		s, err := metav1.LabelSelectorAsSelector(sel.Selector)
		if err != nil {
			return req, fmt.Errorf("invalid node selector: %w", err)
		}
		req.Selector = s
	} else {
		req.Selector = labels.Everything()
	}
	if sel.MaxNodes != nil {
		req.MaxNodes = int(*sel.MaxNodes)
	}
	return req, nil
}

// reservedHash identifies amounts bound on a node and the authority
// allocation a sliver lives on there (what of its size shapes the sliver:
// cpu, memory and ephemeral storage; not the cap on slivers, nor what its
// sub-pools take, so that splitting it replaces no sliver); "" for neither.
// With no allocation it is the hash of bound alone, as before allocations
// existed, so that no sliver is replaced for their coming.
func reservedHash(bound corev1.ResourceList, part clusterview.Part) string {
	if len(bound) == 0 && part.Allocation == "" {
		return ""
	}
	names := make([]string, 0, len(bound))
	for n := range bound {
		names = append(names, string(n))
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		q := bound[corev1.ResourceName(n)]
		fmt.Fprintf(h, "%s=%s;", n, q.String())
	}
	if part.Allocation != "" {
		fmt.Fprintf(h, "allocation=%s;", part.Allocation)
		for _, n := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage} {
			if q, ok := part.Size[n]; ok {
				fmt.Fprintf(h, "allocation.%s=%s;", n, q.String())
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:5])
}

// templateHash identifies what of the slice spec shapes a sliver.
func templateHash(slice *planetv1.Slice) string {
	b, _ := json.Marshal(struct {
		T planetv1.SliverTemplate
		S int32
		P planetv1.PodSecurityLevel
	}{slice.Spec.Template, slice.Spec.CPUShare, slice.Spec.PodSecurity})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:5])
}

// sliverPod builds the sliver Pod of the slice on a node, with requests that
// fit what the node has free (free, from the view). Its owner is the slice namespace: a
// namespaced Slice cannot own objects in another namespace, and the Slice's
// finalizer deletes the namespace.
func (r *SliceReconciler) sliverPod(slice *planetv1.Slice, id sliceIdentity, ns *corev1.Namespace, node, hash string, rsv clusterview.Reservations, part clusterview.Part, free clusterview.Free) *corev1.Pod {
	t := slice.Spec.Template
	env := make([]corev1.EnvVar, 0, len(t.Env))
	for _, e := range t.Env {
		env = append(env, corev1.EnvVar{Name: e.Name, Value: e.Value})
	}
	ports := make([]corev1.ContainerPort, 0, len(t.Ports))
	for _, p := range t.Ports {
		ports = append(ports, corev1.ContainerPort{Name: p.Name, ContainerPort: p.ContainerPort, Protocol: p.Protocol})
	}
	bound := rsv.Bound[node]
	allocatable, _ := r.View.Allocatable(node)
	base, reserved := cpushare.Within(allocatable, rsv.Reserved[node], part.Amounts)
	resources := cpushare.SliverResources(base, reserved, bound, free.Resources, max(1, slice.Spec.CPUShare), r.SharesPerNode)
	rh := reservedHash(bound, part)
	annotations := map[string]string{
		annotationTemplateHash:           hash,
		annotationReservedHash:           rh,
		planetv1.AnnotationSliceFullName: id.fullName(),
	}
	if part.Allocation != "" {
		annotations[clusterview.AnnotationAllocation] = part.Allocation
	}
	sc := &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if slice.Spec.PodSecurity == planetv1.PodSecurityRestricted {
		sc.RunAsNonRoot = ptr.To(true)
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        naming.ReservedSliverName(slice.Name, node, rh),
			Namespace:   ns.Name,
			Labels:      sliceLabels(slice),
			Annotations: annotations,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Namespace", Name: ns.Name, UID: ns.UID,
			}},
		},
		Spec: corev1.PodSpec{
			NodeName:                     node,
			AutomountServiceAccountToken: ptr.To(false),
			EnableServiceLinks:           ptr.To(false),
			Containers: []corev1.Container{{
				Name:            sliverContainer,
				Image:           t.Image,
				Command:         t.Command,
				Args:            t.Args,
				Env:             env,
				Ports:           ports,
				Resources:       resources,
				SecurityContext: sc,
				VolumeMounts:    []corev1.VolumeMount{{Name: naming.AuthorizedKeysSecret, MountPath: sshMountPath, ReadOnly: true}},
			}},
			Volumes: []corev1.Volume{{
				Name: naming.AuthorizedKeysSecret,
				VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
					SecretName: naming.AuthorizedKeysSecret, DefaultMode: ptr.To[int32](0o444),
				}},
			}},
		},
	}
}

// createSlivers creates pods in parallel, each counted on its node in the
// view until the informer sees it; one that already exists (a stale cache)
// is not an error.
func (r *SliceReconciler) createSlivers(ctx context.Context, slice *planetv1.Slice, pods []*corev1.Pod) error {
	if len(pods) == 0 {
		return nil
	}
	err := r.writeEach(ctx, len(pods), func(i int) error {
		r.View.Assume(pods[i])
		if err := r.Create(ctx, pods[i]); err != nil && !apierrors.IsAlreadyExists(err) {
			r.View.Forget(pods[i])
			return fmt.Errorf("creating sliver %s: %w", pods[i].Name, err)
		}
		return nil
	})
	ctrl.LoggerFrom(ctx).Info("Created slivers", "count", len(pods), "failed", err != nil)
	r.rolloutEvent(slice, planetv1.ReasonSliversCreated, "CreateSlivers", "Created %d slivers", len(pods))
	return err
}

// writeEach runs fn for 0..n-1 in parallel, each holding one of the
// controller's write slots while it runs: at most SliverWriters sliver
// writes are in flight across every reconcile, however many slices are
// reconciled at once.
func (r *SliceReconciler) writeEach(ctx context.Context, n int, fn func(i int) error) error {
	return forEach(ctx, n, r.SliverWriters, func(i int) error {
		if r.writeSlots != nil {
			select {
			case r.writeSlots <- struct{}{}:
				defer func() { <-r.writeSlots }()
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return fn(i)
	})
}

// deleteSlivers deletes pods in parallel; one already gone is not an error.
// Pods for which now (if set) is true are deleted with no grace period.
func (r *SliceReconciler) deleteSlivers(ctx context.Context, slice *planetv1.Slice, pods []*corev1.Pod, now func(*corev1.Pod) bool) error {
	if len(pods) == 0 {
		return nil
	}
	err := r.writeEach(ctx, len(pods), func(i int) error {
		p := pods[i]
		opts := []client.DeleteOption{client.Preconditions{UID: &p.UID}}
		if now != nil && now(p) {
			// No kubelet is left to finish a graceful deletion: do not
			// leave the sliver to the pod garbage collector.
			opts = append(opts, client.GracePeriodSeconds(0))
		}
		if err := r.Delete(ctx, p, opts...); client.IgnoreNotFound(err) != nil && !apierrors.IsConflict(err) {
			return fmt.Errorf("deleting sliver %s: %w", p.Name, err)
		}
		return nil
	})
	ctrl.LoggerFrom(ctx).Info("Deleted slivers", "count", len(pods), "failed", err != nil)
	r.rolloutEvent(slice, planetv1.ReasonSliversDeleted, "DeleteSlivers", "Deleted %d slivers", len(pods))
	return err
}

// rolloutEvent records an event of slivers made or deleted for what the
// user asked: a new generation's rollout (the slice made, suspended or
// resumed, its template or selection changed). Slivers made or deleted as
// nodes join and leave, or in place of lost ones, show in the status and
// the log: an event each would cost every slice a write per node.
func (r *SliceReconciler) rolloutEvent(slice *planetv1.Slice, reason, action, note string, n int) {
	if slice.Status.ObservedGeneration != slice.Generation {
		r.Recorder.Eventf(slice, nil, corev1.EventTypeNormal, reason, action, note, n)
	}
}
