package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/fairshare"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/placement"
)

const (
	// annotationTemplateHash on a sliver records the slice spec it was made
	// from; a sliver with another hash is replaced.
	annotationTemplateHash = "planetkube.io/template-hash"
	// annotationReservedHash on a sliver records the amounts bound to its
	// slice on its node when it was made ("" for none). A binding that
	// starts or ends changes the sliver's QoS class, which a running Pod
	// cannot change (in-place resize keeps the QoS class): the sliver is
	// recreated.
	annotationReservedHash = "planetkube.io/reserved-hash"
	// sliverContainer is the name of a sliver's container.
	sliverContainer = "sliver"
	// sshMountPath is where the users' authorized_keys is mounted.
	sshMountPath = "/etc/planetkube/ssh"
)

// sliverObservation is what syncSlivers saw and did.
type sliverObservation struct {
	desired, ready int
	// pending counts desired slivers on ready nodes that are not ready yet.
	pending  int
	matching int
	issues   []planetv1.SliverIssue
}

// syncSlivers creates the missing slivers of the slice in its namespace ns
// and deletes the ones it must not have; with ns nil (the slice must run no
// slivers) it deletes them all.
func (r *SliceReconciler) syncSlivers(ctx context.Context, slice *planetv1.Slice, ns *corev1.Namespace, rsv reservations) (sliverObservation, error) {
	var obs sliverObservation
	nsName := naming.SliceNamespace(slice.Namespace, slice.Name)
	pods := &corev1.PodList{}
	// The lists below are read-only: skip the cache's deep copies (a large
	// slice reconciles often while its slivers start).
	if err := r.List(ctx, pods, client.InNamespace(nsName), client.MatchingLabels(sliceLabels(slice)), client.UnsafeDisableDeepCopy); err != nil {
		return obs, err
	}
	if ns == nil {
		return obs, r.deleteSlivers(ctx, slice, podPointers(pods.Items, func(p *corev1.Pod) bool { return p.DeletionTimestamp.IsZero() }), nil)
	}

	nodes := &corev1.NodeList{}
	if err := r.List(ctx, nodes, client.HasLabels{planetv1.LabelSite}, client.UnsafeDisableDeepCopy); err != nil {
		return obs, err
	}
	hash := templateHash(slice)
	// Hash each node's bound amounts once: isCurrent runs several times per
	// sliver.
	reserved := make(map[string]string, len(rsv.bound))
	for n, b := range rsv.bound {
		reserved[n] = reservedHash(b)
	}
	wantReserved := func(node string) string { return reserved[node] }
	isCurrent := func(p *corev1.Pod) bool {
		return p.Annotations[annotationTemplateHash] == hash && p.Annotations[annotationReservedHash] == wantReserved(p.Spec.NodeName)
	}
	// byNode holds each node's live sliver, the current one if there are
	// two (a reservation changed: the new one runs while the old goes).
	byNode := map[string]*corev1.Pod{}
	existing := map[string]bool{}
	present := map[string]bool{} // every sliver name in use, terminating too
	for i := range pods.Items {
		p := &pods.Items[i]
		present[p.Name] = true
		node := p.Spec.NodeName
		if node == "" || !p.DeletionTimestamp.IsZero() || p.Name != naming.ReservedSliverName(slice.Name, node, p.Annotations[annotationReservedHash]) {
			continue
		}
		existing[node] = true
		if have := byNode[node]; have == nil || (!isCurrent(have) && isCurrent(p)) {
			byNode[node] = p
		}
	}
	req, err := placementRequest(slice, existing)
	if err != nil {
		return obs, err
	}
	res := placement.Place(placementNodes(nodes.Items), req)
	runSet := make(map[string]bool, len(res.Run))
	for _, n := range res.Run {
		runSet[n] = true
	}
	retained := make(map[string]bool, len(res.Retained))
	for _, n := range res.Retained {
		retained[n] = true
	}

	// What to create: nodes to run with no current sliver, unless a pod
	// with the wanted name still terminates (it holds the name until gone).
	nodeByName := make(map[string]*corev1.Node, len(nodes.Items))
	for i := range nodes.Items {
		nodeByName[nodes.Items[i].Name] = &nodes.Items[i]
	}
	var missing []*corev1.Pod
	replacing := map[string]bool{} // nodes whose sliver's successor is being made
	for _, n := range res.Run {
		if have := byNode[n]; retained[n] || (have != nil && isCurrent(have)) {
			continue
		}
		if name := naming.ReservedSliverName(slice.Name, n, wantReserved(n)); !present[name] {
			missing = append(missing, r.sliverPod(slice, ns, nodeByName[n], hash, rsv))
			replacing[n] = true
		}
	}

	// What to delete: slivers off their nodes, stale, finished, misnamed,
	// or a second one on a node. A replaced sliver is make-before-break: it
	// goes once its successor is Ready, or at once if the successor failed
	// (a node too full for both, say), so that the two cannot lock.
	var stale []*corev1.Pod
	for i := range pods.Items {
		p := &pods.Items[i]
		if !p.DeletionTimestamp.IsZero() {
			continue
		}
		node, successor := p.Spec.NodeName, byNode[p.Spec.NodeName]
		running := runSet[node] && p.Status.Phase != corev1.PodFailed && p.Status.Phase != corev1.PodSucceeded
		successorPending := successor != nil && successor != p && isCurrent(successor) &&
			!podReady(successor) && successor.Status.Phase != corev1.PodFailed
		keep := running && (successor == p && (isCurrent(p) || retained[node] || replacing[node]) || successorPending)
		if !keep {
			stale = append(stale, p)
		}
	}
	if len(missing) > 0 {
		// New slivers mount the keys: write them again first, so that a
		// Secret deleted by hand (the manager does not watch Secrets) comes
		// back before a sliver needs it.
		keys, _ := authorizedKeys(slice)
		if err := r.applyKeys(ctx, slice, keys); err != nil {
			return observe(res, byNode, isCurrent, retained), err
		}
	}
	err = errors.Join(
		r.createSlivers(ctx, slice, missing),
		r.deleteSlivers(ctx, slice, stale, func(n string) bool { return nodeByName[n] == nil }),
	)
	obs = observe(res, byNode, isCurrent, retained)
	return obs, err
}

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

// placementNodes converts nodes to what placement reads.
func placementNodes(nodes []corev1.Node) []placement.Node {
	out := make([]placement.Node, len(nodes))
	for i := range nodes {
		n := &nodes[i]
		ready, reason, msg := nodeReady(n)
		out[i] = placement.Node{
			Name: n.Name, Site: siteOfNode(n), Labels: n.Labels,
			Ready: ready, Unschedulable: n.Spec.Unschedulable,
			NotReadyReason: reason, NotReadyMessage: msg,
		}
	}
	return out
}

// observe counts the desired and ready slivers and says why the others are
// not ready, for at most MaxSliverIssues nodes.
func observe(res placement.Result, byNode map[string]*corev1.Pod, isCurrent func(*corev1.Pod) bool, retained map[string]bool) sliverObservation {
	obs := sliverObservation{desired: len(res.Run), matching: res.Matching}
	var issues []planetv1.SliverIssue
	for _, is := range res.Issues {
		issues = append(issues, planetv1.SliverIssue{Node: is.Node, Reason: is.Reason, Message: is.Message})
	}
	for _, n := range res.Run {
		p := byNode[n]
		current := p != nil && p.DeletionTimestamp.IsZero() && (isCurrent(p) || retained[n])
		if current && podReady(p) {
			obs.ready++
			continue
		}
		if retained[n] {
			continue // reported by placement
		}
		obs.pending++
		issues = append(issues, sliverIssue(n, p, current))
	}
	sort.Slice(issues, func(i, j int) bool { return issues[i].Node < issues[j].Node })
	if len(issues) > planetv1.MaxSliverIssues {
		issues = issues[:planetv1.MaxSliverIssues]
	}
	obs.issues = issues
	return obs
}

// sliverIssue says why the sliver on a node is not ready.
func sliverIssue(node string, p *corev1.Pod, current bool) planetv1.SliverIssue {
	switch {
	case p == nil:
		return planetv1.SliverIssue{Node: node, Reason: "SliverNotCreated", Message: "the sliver is being created"}
	case !current:
		return planetv1.SliverIssue{Node: node, Reason: "SliverReplacing", Message: "the old sliver is being replaced"}
	}
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			return planetv1.SliverIssue{Node: node, Reason: w.Reason, Message: truncate(w.Message, 1024)}
		}
	}
	reason := string(p.Status.Phase)
	if reason == "" {
		reason = string(corev1.PodPending)
	}
	return planetv1.SliverIssue{Node: node, Reason: reason, Message: truncate(p.Status.Message, 1024)}
}

// reservedHash identifies amounts bound on a node; "" for none.
func reservedHash(bound corev1.ResourceList) string {
	if len(bound) == 0 {
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
	return hex.EncodeToString(h.Sum(nil)[:5])
}

// podReady says whether the pod's Ready condition is True.
func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
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

// sliverPod builds the sliver Pod of the slice on a node. Its owner is the
// slice namespace: a namespaced Slice cannot own objects in another
// namespace, and the Slice's finalizer deletes the namespace.
func (r *SliceReconciler) sliverPod(slice *planetv1.Slice, ns *corev1.Namespace, node *corev1.Node, hash string, rsv reservations) *corev1.Pod {
	t := slice.Spec.Template
	env := make([]corev1.EnvVar, 0, len(t.Env))
	for _, e := range t.Env {
		env = append(env, corev1.EnvVar{Name: e.Name, Value: e.Value})
	}
	ports := make([]corev1.ContainerPort, 0, len(t.Ports))
	for _, p := range t.Ports {
		ports = append(ports, corev1.ContainerPort{Name: p.Name, ContainerPort: p.ContainerPort, Protocol: p.Protocol})
	}
	bound := rsv.bound[node.Name]
	resources := fairshare.SliverResources(node.Status.Allocatable, rsv.reserved[node.Name], bound, max(1, slice.Spec.CPUShare), r.SharesPerNode)
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
			Name:      naming.ReservedSliverName(slice.Name, node.Name, reservedHash(bound)),
			Namespace: ns.Name,
			Labels:    sliceLabels(slice),
			Annotations: map[string]string{
				annotationTemplateHash:           hash,
				annotationReservedHash:           reservedHash(bound),
				planetv1.AnnotationSliceFullName: naming.FullName(r.Authority, slice.Namespace, slice.Name),
			},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Namespace", Name: ns.Name, UID: ns.UID,
			}},
		},
		Spec: corev1.PodSpec{
			NodeName:                     node.Name,
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

// createSlivers creates pods in parallel; one that already exists (a stale
// cache) is not an error.
func (r *SliceReconciler) createSlivers(ctx context.Context, slice *planetv1.Slice, pods []*corev1.Pod) error {
	if len(pods) == 0 {
		return nil
	}
	err := forEach(ctx, len(pods), r.SliverWriters, func(i int) error {
		if err := r.Create(ctx, pods[i]); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating sliver %s: %w", pods[i].Name, err)
		}
		return nil
	})
	ctrl.LoggerFrom(ctx).Info("Created slivers", "count", len(pods), "failed", err != nil)
	r.Recorder.Eventf(slice, nil, corev1.EventTypeNormal, ReasonSliversCreated, "CreateSlivers", "Created %d slivers", len(pods))
	return err
}

// deleteSlivers deletes pods in parallel; one already gone is not an error.
// Pods on nodes for which nodeGone (if set) is true are deleted at once.
func (r *SliceReconciler) deleteSlivers(ctx context.Context, slice *planetv1.Slice, pods []*corev1.Pod, nodeGone func(string) bool) error {
	if len(pods) == 0 {
		return nil
	}
	err := forEach(ctx, len(pods), r.SliverWriters, func(i int) error {
		p := pods[i]
		opts := []client.DeleteOption{client.Preconditions{UID: &p.UID}}
		if nodeGone != nil && nodeGone(p.Spec.NodeName) {
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
	r.Recorder.Eventf(slice, nil, corev1.EventTypeNormal, ReasonSliversDeleted, "DeleteSlivers", "Deleted %d slivers", len(pods))
	return err
}

// podPointers returns pointers to the pods that pass keep.
func podPointers(pods []corev1.Pod, keep func(*corev1.Pod) bool) []*corev1.Pod {
	var out []*corev1.Pod
	for i := range pods {
		if keep(&pods[i]) {
			out = append(out, &pods[i])
		}
	}
	return out
}

// truncate cuts s to at most n bytes.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
