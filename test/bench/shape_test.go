package bench

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/testing/emulator"
)

// shapeHeading names the section of the sliver-shape diagnostic: not part of
// `make bench` (it adds an hour), run on its own by the command it prints.
const shapeHeading = "## Where the rollout's last part goes: sliver-shaped pods (issue 26)"

// shapePartsHeading names the section of a run with other sides than the
// default: which part of the shape costs.
const shapePartsHeading = "## Which part of a sliver's shape costs (issue 26)"

// shapeSides names the sides of each round, in the order of round 0
// (each round starts one further): bare, shaped, slices, and shaped pods
// with one part of the sliver's shape left out (shaped-no-owner, -psa,
// -security, -volume, -resources, -labels), to find which part costs.
var shapeSides = flag.String("shape-sides", shapeSidesDefault, "sides of the sliver-shape diagnostic, in the order of its first round")

const shapeSidesDefault = "bare,shaped,slices"

// shapePerNode is how many pods (or slices) each side puts on each node.
var shapePerNode = flag.Int("shape-per-node", steadySlices, "pods per node of each side of the sliver-shape diagnostic (slices: as many slices)")

// shapeResult holds, per side, one timing per round.
type shapeResult struct {
	nodes, perNode, pods int
	sides                []string
	times                map[string][]timing
	first                []string
	machine              machine
}

// TestSliverShape measures, in rotating rounds, 20,000 bare pods (the
// steady-state floor), 20,000 pods of a sliver's exact shape made by
// client-go the same way (its labels, annotations, owner, requests, security
// context, Secret volume, in a namespace with the slice namespace's Pod
// Security labels), and 20 slices over every node. Shaped against bare is
// what the pod shape costs the API server and kwok; slices against shaped is
// what PlanetKube's manager adds.
func TestSliverShape(t *testing.T) {
	if *benchOut == "" {
		t.Skip("Skipping the benchmarks: no -bench-out file given")
	}
	binDir := findBinDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Minute)
	defer cancel()
	c := startCluster(ctx, t, binDir, *benchNodes)
	if err := c.InstallPlanetKube(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartPlanetKube(ctx, withManagerArgs()...); err != nil {
		t.Fatal(err)
	}
	res, err := runSliverShape(ctx, t, c)
	if err != nil {
		t.Fatal(err)
	}
	res.machine = describeMachine()
	reportManagerErrors(t, lastManager(c))
	heading := shapeHeading
	if *shapeSides != shapeSidesDefault {
		heading = shapePartsHeading
	}
	publish(t, heading, res.markdown())
}

func runSliverShape(ctx context.Context, t *testing.T, c *emulator.Cluster) (*shapeResult, error) {
	t.Helper()
	k8s, bareClient, err := benchClients(ctx, c)
	if err != nil {
		return nil, err
	}
	if err := updateSite(ctx, k8s, func(s *planetv1.SiteSpec) { s.MaxSlices = ptr.To[int32](2 * steadySlices) }); err != nil {
		return nil, fmt.Errorf("raising the site's maxSlices: %w", err)
	}
	tpl, err := sliverTemplate(ctx, t, c, k8s)
	if err != nil {
		return nil, err
	}
	n := len(c.NodeNames)
	per := *shapePerNode
	res := &shapeResult{nodes: n, perNode: per, pods: n * per, sides: strings.Split(*shapeSides, ","), times: map[string][]timing{}}
	for round := range *steadyPairs {
		names := make([]string, per)
		for i := range names {
			names[i] = fmt.Sprintf("r%d-s%02d", round, i)
		}
		run := func(side string) error {
			ns := fmt.Sprintf("bench-%s-%d", side, round)
			label := fmt.Sprintf("%s %d", side, round)
			cleanup := func() error { return deletePodsAndWait(ctx, t, c.Client, []string{ns}) }
			switch {
			case side == "bare":
				return measureSide(ctx, t, c.Client, res, side, phase{name: label, namespace: ns, start: func(ctx context.Context) error {
					if err := createNamespace(ctx, c.Client, ns); err != nil {
						return err
					}
					return createManyFloorPods(ctx, bareClient, ns, c.NodeNames, per)
				}}, cleanup)
			case side == "slices":
				return measureSide(ctx, t, c.Client, res, side, phase{
					name: label, selector: planetv1.LabelSlice + " in (" + strings.Join(names, ",") + ")",
					start: func(ctx context.Context) error { return createSlices(ctx, k8s, names) },
				}, func() error { return deleteSlicesAndWait(ctx, t, k8s, c.Client, names) })
			case side == "shaped" || strings.HasPrefix(side, "shaped-no-"):
				drop := strings.TrimPrefix(strings.TrimPrefix(side, "shaped"), "-no-")
				return measureSide(ctx, t, c.Client, res, side, phase{name: label, namespace: ns, start: func(ctx context.Context) error {
					return tpl.createPods(ctx, bareClient, ns, c.NodeNames, per, drop)
				}}, cleanup)
			}
			return fmt.Errorf("unknown side %q in -shape-sides", side)
		}
		res.first = append(res.first, res.sides[round%len(res.sides)])
		for i := range res.sides {
			if err := run(res.sides[(round+i)%len(res.sides)]); err != nil {
				return nil, err
			}
		}
	}
	return res, nil
}

// measureSide measures one side's phase, records it and cleans up after it.
func measureSide(ctx context.Context, t *testing.T, cs kubernetes.Interface, res *shapeResult, side string, p phase, cleanup func() error) error {
	tm, err := measure(ctx, t, cs, p, res.pods, 15*time.Minute)
	if err != nil {
		return err
	}
	res.times[side] = append(res.times[side], tm)
	return cleanup()
}

// shapedPods copies a sliver the manager made: its pod, its namespace's
// labels and its keys Secret.
type shapedPods struct {
	pod      *corev1.Pod
	nsLabels map[string]string
	keys     *corev1.Secret
}

// sliverTemplate has the manager make one slice over every node, copies one
// of its slivers and deletes the slice.
func sliverTemplate(ctx context.Context, t *testing.T, c *emulator.Cluster, k8s client.Client) (*shapedPods, error) {
	const name = "shape-template"
	if err := createSlices(ctx, k8s, []string{name}); err != nil {
		return nil, err
	}
	nsName := naming.SliceNamespace(benchSite, name)
	tpl := &shapedPods{}
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := c.Client.CoreV1().Pods(nsName).List(ctx, metav1.ListOptions{Limit: 1})
		if err != nil || len(pods.Items) == 0 {
			return false, nil
		}
		tpl.pod = pods.Items[0].DeepCopy()
		return true, nil
	}); err != nil {
		return nil, fmt.Errorf("waiting for a sliver of %s: %w", name, err)
	}
	ns, err := c.Client.CoreV1().Namespaces().Get(ctx, nsName, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	tpl.nsLabels = map[string]string{}
	for k, v := range ns.Labels {
		if strings.HasPrefix(k, "pod-security.kubernetes.io/") {
			tpl.nsLabels[k] = v
		}
	}
	if tpl.keys, err = c.Client.CoreV1().Secrets(nsName).Get(ctx, naming.AuthorizedKeysSecret, metav1.GetOptions{}); err != nil {
		return nil, err
	}
	return tpl, deleteSlicesAndWait(ctx, t, k8s, c.Client, []string{name})
}

// createPods makes namespace ns as a slice namespace is made (its Pod
// Security labels, the keys Secret) and perNode pods of the template's
// shape on each node, less the part drop names ("" for none: owner, psa,
// security, volume, resources, labels). They name a slice that does not
// exist, so the manager only watches them, as it watches any pod.
func (s *shapedPods) createPods(ctx context.Context, cs kubernetes.Interface, ns string, nodes []string, perNode int, drop string) error {
	nsLabels := s.nsLabels
	if drop == "psa" {
		nsLabels = nil
	}
	created, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: nsLabels}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating namespace %s: %w", ns, err)
	}
	keys := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: s.keys.Name, Namespace: ns, Labels: s.keys.Labels}, Data: s.keys.Data}
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, keys, metav1.CreateOptions{}); err != nil {
		return err
	}
	labels := map[string]string{}
	for k, v := range s.pod.Labels {
		labels[k] = v
	}
	labels[planetv1.LabelSlice] = "shape-floor"
	template := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Labels: labels, Annotations: s.pod.Annotations,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Namespace", Name: ns, UID: created.UID}},
		},
		Spec: *s.pod.Spec.DeepCopy(),
	}
	c := &template.Spec.Containers[0]
	switch drop {
	case "", "psa":
	case "owner":
		template.OwnerReferences = nil
	case "security":
		c.SecurityContext = nil
	case "volume":
		template.Spec.Volumes, c.VolumeMounts = nil, nil
	case "resources":
		c.Resources = corev1.ResourceRequirements{}
	case "labels":
		template.Labels, template.Annotations = nil, nil
	default:
		return fmt.Errorf("unknown part %q to leave out of the shaped pods", drop)
	}
	return inParallel(perNode*len(nodes), func(k int) error {
		node, i := nodes[k%len(nodes)], k/len(nodes)
		pod := template.DeepCopy()
		pod.Name, pod.Spec.NodeName = fmt.Sprintf("shape-%02d-%s", i, node), node
		_, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		return err
	})
}

func (r *shapeResult) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Command: `go test ./test/bench/ -run TestSliverShape -count=1 -timeout 120m -v -args -bench-out=$PWD/docs/benchmarks.md -shape-sides=%s -shape-per-node=%d -bench-pairs=%d` "+
		"(not in `make bench`: about 25 minutes a round of three sides). %s "+
		"%d kwok nodes; every side makes %d pods, %d per node, %d rounds, and the manager runs throughout.\n\n",
		strings.Join(r.sides, ","), r.perNode, len(r.first), r.machine, r.nodes, r.pods, r.perNode, len(r.first))
	fmt.Fprintf(&b, "- **bare**: the steady-state floor, pods of one `pause` container made by client-go from %d goroutines with no rate limit.\n", floorWorkers)
	b.WriteString("- **shaped**: the same client, pods copied from a sliver the manager made (its labels with a slice name that does not exist, its annotations, its owner reference to the namespace, " +
		"its requests and limits, security context and Secret volume), in a namespace with the slice namespace's Pod Security labels and the keys Secret; " +
		"**shaped-no-X** leaves one part out (owner: the owner reference; psa: the namespace's Pod Security labels; security: the security context; " +
		"volume: the Secret volume; resources: requests and limits; labels: labels and annotations).\n")
	fmt.Fprintf(&b, "- **slices**: %d Slices over every node, as in the steady-state benchmark.\n\n", r.perNode)
	b.WriteString("All Running, per round (the first side of each round rotates):\n\n| Round | First |")
	for _, side := range r.sides {
		fmt.Fprintf(&b, " %s |", side)
	}
	b.WriteString("\n|---:|---|" + strings.Repeat("---:|", len(r.sides)) + "\n")
	for i, first := range r.first {
		fmt.Fprintf(&b, "| %d | %s |", i+1, first)
		for _, side := range r.sides {
			fmt.Fprintf(&b, " %s |", seconds(r.times[side][i].running))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n| Ratio, all Running | Median | Range |\n|---|---:|---:|\n")
	row := func(name, num, den string) {
		if r.times[num] == nil || r.times[den] == nil {
			return
		}
		var rs []float64
		for i := range r.first {
			rs = append(rs, r.times[num][i].running.Seconds()/r.times[den][i].running.Seconds())
		}
		med, lo, hi := medianRange(rs)
		fmt.Fprintf(&b, "| %s | %.2f× | %.2f×–%.2f× |\n", name, med, lo, hi)
	}
	for _, side := range r.sides {
		if side != "bare" {
			row(side+" / bare", side, "bare")
		}
	}
	row("slices / shaped: what the manager adds to pods of a sliver's shape", "slices", "shaped")
	return b.String()
}
