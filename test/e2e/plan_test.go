package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/scheme"
	"github.com/planetkube/planetkube/internal/slicecmd"
)

// warningLog keeps the warnings the API server answers with.
type warningLog struct {
	mu  sync.Mutex
	all []string
}

func (l *warningLog) HandleWarningHeader(_ int, _ string, text string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all = append(l.all, text)
}

var _ = Describe("What a slice would get", func() {
	It("answers a server-side dry run with warnings in the status's words, creates nothing, and slice plan prints them by site", func() {
		site := cluster.Sites[0]
		ready := sets.List(readyNodes(Default, nodesOf(site)))
		Expect(len(ready)).To(BeNumerically(">=", 6))
		names := ready[:6]
		s := &planetv1.Slice{
			TypeMeta:   metav1.TypeMeta{APIVersion: planetv1.GroupVersion.String(), Kind: "Slice"},
			ObjectMeta: metav1.ObjectMeta{Namespace: site, Name: "dry"},
			Spec: planetv1.SliceSpec{
				Nodes:    planetv1.SliceNodes{NodeSelection: planetv1.NodeSelection{Names: names}, MaxNodes: ptr.To[int32](4)},
				Template: planetv1.SliverTemplate{Image: "registry.k8s.io/pause:3.10"},
			},
		}
		var warnings warningLog
		cfg := rest.CopyConfig(cluster.Config)
		cfg.WarningHandler = &warnings
		dry, err := client.New(cfg, client.Options{Scheme: scheme.Scheme()})
		Expect(err).NotTo(HaveOccurred())

		By("kubectl apply --dry-run=server: warnings say what it would get")
		Expect(dry.Create(ctx, s.DeepCopy(), client.DryRunAll)).To(Succeed())
		Expect(warnings.all).To(ContainElements(
			"planetkube: slice plc."+site+".dry would run 4 slivers on the 6 nodes its selection names here (1 sites); 2 would not run one",
			"planetkube: site "+site+": 4 of 6 nodes would run a sliver; not: MaxNodes 2",
			HavePrefix("planetkube: why MaxNodes (2 nodes, e.g. "),
		))
		By("nothing was created")
		Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(s), &planetv1.Slice{}))).To(BeTrue())
		Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: naming.SliceNamespace(site, "dry")}, &corev1.Namespace{}))).To(BeTrue())

		By("a suspended slice would run none, for that reason")
		warnings.all = nil
		suspended := s.DeepCopy()
		suspended.Spec.State = planetv1.SliceSuspended
		Expect(dry.Create(ctx, suspended, client.DryRunAll)).To(Succeed())
		Expect(warnings.all).To(ContainElements(
			HavePrefix("planetkube: slice plc."+site+".dry would run 0 slivers on the 6 nodes"),
			"planetkube: site "+site+": 0 of 6 nodes would run a sliver; not: Suspended 6",
			HavePrefix("planetkube: Suspended: the slice is suspended"),
		))

		By("planetkube slice plan -f prints the same as a table")
		b, err := yaml.Marshal(s)
		Expect(err).NotTo(HaveOccurred())
		file := filepath.Join(GinkgoT().TempDir(), "slice.yaml")
		Expect(os.WriteFile(file, b, 0o600)).To(Succeed())
		plan := func() string {
			var out, errs strings.Builder
			Expect(slicecmd.Slice([]string{"plan", "-f", file, "--kubeconfig", cluster.Kubeconfig}, slicecmd.IO{Out: &out, Err: &errs, Now: time.Now})).To(Succeed(), errs.String())
			return out.String()
		}
		out := plan()
		Expect(out).To(ContainSubstring("slice plc." + site + ".dry would run 4 slivers"))
		Expect(out).To(MatchRegexp(`(?m)^SITE\s+SELECTED\s+WOULD RUN\s+WOULD NOT \(REASON COUNT\)$`))
		Expect(out).To(MatchRegexp(`(?m)^` + site + `\s+6\s+4\s+MaxNodes 2$`))
		Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(s), &planetv1.Slice{}))).To(BeTrue())

		By("applied for real, its status says the same")
		Expect(k8s.Create(ctx, s)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8s.Delete(ctx, s))).To(Succeed()) })
		Eventually(func(g Gomega) {
			got := &planetv1.Slice{}
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(s), got)).To(Succeed())
			p := got.Status.Placement
			g.Expect(p).NotTo(BeNil())
			g.Expect(p.Selected).To(BeEquivalentTo(6))
			g.Expect(p.Running).To(BeEquivalentTo(4))
			g.Expect(p.Groups).To(ConsistOf(And(HaveField("Reason", planetv1.ReasonMaxNodes), HaveField("Count", BeEquivalentTo(2)))))
		}).Should(Succeed())
		By("planning the existing slice (a dry-run update) says it keeps its slivers")
		Expect(plan()).To(MatchRegexp(`(?m)^` + site + `\s+6\s+4\s+MaxNodes 2$`))
	})
})
