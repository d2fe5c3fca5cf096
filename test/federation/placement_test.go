package federation

import (
	"net"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/federation"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/shortfall"
	"github.com/planetkube/planetkube/internal/ticket"
)

// deadPushSecret is a push Secret of plc whose kubeconfig names an address
// where nothing answers: ple as a partition leaves it.
const deadPushSecret = "peer-ple-dead"

// pushedTicketsNS is where plc's pushed tickets land at ple (the namespace
// of the kubeconfig PushAccess gives).
const pushedTicketsNS = "planetkube-peer-plc"

// found reads obj; false when it does not exist.
func found(c client.Client, obj client.Object) bool {
	GinkgoHelper()
	err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj)
	if apierrors.IsNotFound(err) {
		return false
	}
	Expect(err).NotTo(HaveOccurred())
	return true
}

// deleteAndWait deletes obj and waits until it is gone (finalizers run).
func deleteAndWait(c client.Client, obj client.Object) {
	GinkgoHelper()
	Expect(client.IgnoreNotFound(c.Delete(ctx, obj))).To(Succeed())
	Eventually(func() error { return c.Get(ctx, client.ObjectKeyFromObject(obj), obj) }, "120s").Should(Satisfy(apierrors.IsNotFound))
}

// makeOrSet makes obj with the spec mut gives, or sets it on the one
// there; it returns a function that puts back what was there (or deletes
// what it made), for DeferCleanup.
func makeOrSet[T client.Object](c client.Client, obj T, mut func(T), save func(T) func(T)) func() {
	GinkgoHelper()
	if !found(c, obj) {
		mut(obj)
		Expect(c.Create(ctx, obj)).To(Succeed())
		return func() { deleteAndWait(c, obj) }
	}
	back := save(obj)
	update(c, obj, mut)
	return func() { update(c, obj, back) }
}

// entryOf returns the home slice's federation entry for an authority, and
// whether there is one.
func entryOf(s *planetv1.Slice, authority string) func(Gomega) (planetv1.SliceFederation, bool) {
	return func(g Gomega) (planetv1.SliceFederation, bool) {
		got := &planetv1.Slice{}
		g.Expect(plc.k8s.Get(ctx, client.ObjectKeyFromObject(s), got)).To(Succeed())
		for _, e := range got.Status.Federation {
			if e.Authority == authority {
				return e, true
			}
		}
		return planetv1.SliceFederation{}, false
	}
}

// nudge makes plc reconcile the home slice twice, and sees it happen: the
// slice names an authority plc does not know (its entry appears, Failed
// UnknownAuthority), then no longer (the entry goes). Neither changes
// what ple is granted (a ticket's grant leaves the authorities out).
func nudge(s *planetv1.Slice) {
	GinkgoHelper()
	update(plc.k8s, s, func(o *planetv1.Slice) { o.Spec.Nodes.Authorities = []string{"ple", "plx"} })
	Eventually(func(g Gomega) {
		e, ok := entryOf(s, "plx")(g)
		g.Expect(ok).To(BeTrue(), "no entry for plx yet")
		g.Expect(e.Reason).To(Equal(planetv1.ReasonUnknownAuthority))
	}).Should(Succeed())
	update(plc.k8s, s, func(o *planetv1.Slice) { o.Spec.Nodes.Authorities = []string{"ple"} })
	Eventually(func(g Gomega) bool { _, ok := entryOf(s, "plx")(g); return ok }).Should(BeFalse())
}

// steadySince checks that ple's entry keeps its phase and since while plc
// reconciles the slice again (nudged, and its own requeues): since says
// when the phase changed, not when the entry was last written.
func steadySince(s *planetv1.Slice, phase planetv1.FederationPhase, since metav1.Time) {
	GinkgoHelper()
	same := func(g Gomega) {
		e := entry(s)(g)
		g.Expect(e.Phase).To(Equal(phase), "%+v", e)
		g.Expect(e.Since).NotTo(BeNil(), "%+v", e)
		g.Expect(e.Since.Time).To(BeTemporally("==", since.Time), "since moved while the phase stayed %s", phase)
	}
	// More than a second first, so that a since stamped again at the next
	// reconcile would differ from the first (it is kept to the second);
	// the nudge makes plc reconcile the slice (twice) meanwhile.
	Consistently(same, "1500ms").Should(Succeed())
	nudge(s)
	same(Default)
}

// pleTicketOf reads the Ticket plc pushed to ple for the entry's ticket.
func pleTicketOf(s *planetv1.Slice, e planetv1.SliceFederation) func(Gomega) *planetv1.Ticket {
	full := "plc." + s.Namespace + "." + s.Name
	return func(g Gomega) *planetv1.Ticket {
		t := &planetv1.Ticket{}
		g.Expect(ple.k8s.Get(ctx, client.ObjectKey{Namespace: pushedTicketsNS, Name: federation.TicketName("push", full, e.TicketID)}, t)).To(Succeed())
		return t
	}
}

// deadKubeconfig is a valid push kubeconfig for ple whose server is a
// loopback port where nothing listens.
func deadKubeconfig() []byte {
	GinkgoHelper()
	good, err := ple.cluster.PushAccess(ctx, "plc")
	Expect(err).NotTo(HaveOccurred())
	cfg, err := clientcmd.Load(good)
	Expect(err).NotTo(HaveOccurred())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	addr := l.Addr().String()
	Expect(l.Close()).To(Succeed())
	for _, c := range cfg.Clusters {
		c.Server = "https://" + addr
	}
	out, err := clientcmd.Write(*cfg)
	Expect(err).NotTo(HaveOccurred())
	return out
}

// The home's view of a peer: the peer's account of its nodes for a pushed
// slice, and since when each peer stands where it does. The container
// makes its own push federation (the suite's other containers may run
// before or after it: Ginkgo orders top-level containers at random) and
// puts back what it found.
var _ = Describe("Federation: the peer's placement and since, seen at home", Ordered, ContinueOnFailure, func() {
	BeforeAll(func() {
		kubeconfig, err := ple.cluster.PushAccess(ctx, "plc")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(makeOrSet(plc.k8s, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "planetkube-system", Name: pushSecret}},
			func(o *corev1.Secret) { o.Data = map[string][]byte{"kubeconfig": kubeconfig} },
			func(o *corev1.Secret) func(*corev1.Secret) {
				data := o.Data
				return func(o *corev1.Secret) { o.Data = data }
			}))
		// plc pushes to ple (no feed); ple knows plc by its key (no feed).
		atPlc := ple.authorityOf()
		atPlc.Spec.Push = &planetv1.AuthorityPush{SecretName: pushSecret}
		atPlc.Spec.FeedURL, atPlc.Spec.FeedCABundle = "", ""
		atPle := plc.authorityOf()
		atPle.Spec.FeedURL, atPle.Spec.FeedCABundle = "", ""
		for _, set := range []struct {
			c    client.Client
			want *planetv1.Authority
		}{{plc.k8s, atPlc}, {ple.k8s, atPle}} {
			DeferCleanup(makeOrSet(set.c, &planetv1.Authority{ObjectMeta: metav1.ObjectMeta{Name: set.want.Name}},
				func(o *planetv1.Authority) { o.Spec = set.want.Spec },
				func(o *planetv1.Authority) func(*planetv1.Authority) {
					spec := *o.Spec.DeepCopy()
					return func(o *planetv1.Authority) { o.Spec = spec }
				}))
		}
		Eventually(func(g Gomega) {
			a := &planetv1.Authority{}
			g.Expect(plc.k8s.Get(ctx, client.ObjectKey{Name: "ple"}, a)).To(Succeed())
			c := meta.FindStatusCondition(a.Status.Conditions, planetv1.ConditionPushReady)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.ObservedGeneration).To(Equal(a.Generation))
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue), "%v", c)
		}).Should(Succeed())
	})

	// homeAt makes a home slice spanning ple, at most maxNodes nodes at
	// each install, and deletes it (withdrawn from ple) at the end.
	homeAt := func(site, name string, maxNodes int32) *planetv1.Slice {
		GinkgoHelper()
		s := homeSlice(site, name)
		s.Spec.Nodes.MaxNodes = ptr.To(maxNodes)
		Expect(plc.k8s.Create(ctx, s)).To(Succeed())
		DeferCleanup(func() {
			deleteAndWait(plc.k8s, &planetv1.Slice{ObjectMeta: metav1.ObjectMeta{Namespace: site, Name: name}})
			Eventually(goneAtPle(s), "60s").Should(BeTrue())
		})
		return s
	}

	It("shows a peer that redeems with its own account of its nodes: who runs the slice there and why the others do not", func() {
		inria, upmc := ple.nodes("inria"), ple.nodes("upmc")
		made := time.Now()
		// ple selects its 12 nodes: upmc's 6 do not trust plc; of inria's
		// 6, maxNodes keeps 4.
		s := homeAt("princeton", "placed", 4)
		var peer *planetv1.PlacementSummary
		Eventually(func(g Gomega) {
			e := entry(s)(g)
			g.Expect(e.Phase).To(Equal(planetv1.FederationRedeemed), "%+v", e)
			g.Expect(e.Slivers).To(Equal("4/4"))
			peer = foreignAtPle(s)(g).Status.Placement
			g.Expect(peer).NotTo(BeNil(), "ple's slice has no placement yet")
			g.Expect(peer.Running).To(Equal(int32(4)))
			g.Expect(e.Placement).NotTo(BeNil(), "the home has no placement from ple: %+v", e)
			// What the home shows is the peer's account, compacted.
			g.Expect(e.Placement).To(Equal(shortfall.Compact(peer, planetv1.MaxPeerPlacementGroups)))
		}, "90s").Should(Succeed())

		e := entry(s)(Default)
		p := e.Placement
		Expect(p.Selected).To(Equal(int32(inria.Len()+upmc.Len())), "ple's selected nodes: %+v", p)
		Expect(p.Running).To(Equal(int32(4)))
		Expect(p.NotRunning).To(Equal(p.Selected - p.Running))
		byReason := map[string]planetv1.NodeGroup{}
		var counted int32
		for _, grp := range p.Groups {
			byReason[grp.Reason] = grp
			counted += grp.Count
			Expect(len(grp.Sites)).To(BeNumerically("<=", 1), "a peer's group keeps one site as example: %+v", grp)
			Expect(len(grp.Nodes)).To(BeNumerically("<=", 1), "a peer's group keeps one node as example: %+v", grp)
		}
		Expect(counted).To(Equal(p.NotRunning), "%+v", p.Groups)
		Expect(byReason).To(HaveKey(planetv1.ReasonNotTrusted))
		nt := byReason[planetv1.ReasonNotTrusted]
		Expect(nt.Count).To(Equal(int32(upmc.Len())))
		Expect(nt.Sites).To(Equal([]string{"upmc"}))
		Expect(nt.Nodes).To(HaveLen(1))
		Expect(upmc.Has(nt.Nodes[0])).To(BeTrue(), nt.Nodes[0])
		Expect(nt.Message).To(ContainSubstring("plc"))
		Expect(byReason).To(HaveKey(planetv1.ReasonMaxNodes))
		mx := byReason[planetv1.ReasonMaxNodes]
		Expect(mx.Count).To(Equal(int32(inria.Len() - 4)))
		Expect(mx.Sites).To(Equal([]string{"inria"}))

		// The peer's own slice says the same counts.
		got := foreignAtPle(s)(Default).Status.Placement
		Expect(got).NotTo(BeNil())
		Expect([]int32{got.Selected, got.Running, got.NotRunning}).To(Equal([]int32{p.Selected, p.Running, p.NotRunning}))

		Expect(e.Since).NotTo(BeNil(), "%+v", e)
		Expect(e.Since.Time).To(BeTemporally(">=", made.Truncate(time.Second)))
		Expect(e.Since.Time).To(BeTemporally("<=", time.Now()))
	})

	// distrust makes inria, ple's only site that trusts plc, stop trusting
	// it until the spec ends.
	distrust := func() {
		GinkgoHelper()
		inria := &planetv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "inria"}}
		Expect(found(ple.k8s, inria)).To(BeTrue())
		trusted := inria.Spec.TrustedAuthorities
		update(ple.k8s, inria, func(o *planetv1.Site) { o.Spec.TrustedAuthorities = []string{"ple"} })
		DeferCleanup(func() { update(ple.k8s, inria, func(o *planetv1.Site) { o.Spec.TrustedAuthorities = trusted }) })
	}

	It("shows a peer that refuses (no site there trusts the slice's authority any longer) with its reason and message, since when, kept while it refuses", func() {
		s := homeAt("mit", "refused", 1)
		Eventually(func(g Gomega) {
			e := entry(s)(g)
			g.Expect(e.Phase).To(Equal(planetv1.FederationRedeemed), "%+v", e)
			g.Expect(e.Slivers).To(Equal("1/1"))
		}, "90s").Should(Succeed())
		redeemed := entry(s)(Default)

		By("inria stops trusting plc: ple refuses the ticket it redeemed")
		cut := time.Now()
		distrust()
		Eventually(func(g Gomega) string {
			c := meta.FindStatusCondition(pleTicketOf(s, redeemed)(g).Status.Conditions, planetv1.ConditionReady)
			g.Expect(c).NotTo(BeNil())
			return c.Reason
		}).Should(Equal(string(ticket.NotTrusted)))
		// plc looks at a redeemed, converged peer every 2 minutes: the
		// slice is reconciled now rather than then.
		nudge(s)
		var e planetv1.SliceFederation
		Eventually(func(g Gomega) {
			e = entry(s)(g)
			g.Expect(e.Phase).To(Equal(planetv1.FederationRefused), "%+v", e)
		}).Should(Succeed())
		// The peer's reason and message, as its Ticket says them.
		c := meta.FindStatusCondition(pleTicketOf(s, e)(Default).Status.Conditions, planetv1.ConditionReady)
		Expect(c).NotTo(BeNil())
		Expect(e.TicketID).To(Equal(redeemed.TicketID))
		Expect(c.Reason).To(Equal(string(ticket.NotTrusted)))
		Expect(e.Reason).To(Equal(c.Reason))
		Expect(e.Message).To(Equal("ple refused the ticket: " + c.Message))
		Expect(e.Message).To(ContainSubstring("no site here trusts plc"))
		Expect(e.Placement).To(BeNil(), "a refused ticket runs nothing: %+v", e.Placement)
		Expect(e.Slivers).To(Equal("0/0"))
		Eventually(goneAtPle(s)).Should(BeTrue())

		Expect(e.Since).NotTo(BeNil(), "%+v", e)
		Expect(e.Since.Time).To(BeTemporally(">=", cut.Truncate(time.Second)), "since is not when ple refused")
		Expect(e.Since.Time).To(BeTemporally(">=", redeemed.Since.Time))
		Expect(e.Since.Time).To(BeTemporally("<=", time.Now()))
		steadySince(s, planetv1.FederationRefused, *e.Since)
		Expect(entry(s)(Default).Reason).To(Equal(string(ticket.NotTrusted)))
	})

	It("shows a peer that cannot be reached since it stopped answering, and moves on when it answers again", func() {
		s := homeAt("princeton", "partitioned", 1)
		var redeemed metav1.Time
		Eventually(func(g Gomega) {
			e := entry(s)(g)
			g.Expect(e.Phase).To(Equal(planetv1.FederationRedeemed), "%+v", e)
			g.Expect(e.Slivers).To(Equal("1/1"))
			g.Expect(e.Since).NotTo(BeNil(), "%+v", e)
			redeemed = *e.Since
		}, "90s").Should(Succeed())

		By("plc's push kubeconfig for ple names an address where nothing answers")
		Expect(plc.k8s.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "planetkube-system", Name: deadPushSecret},
			Data:       map[string][]byte{"kubeconfig": deadKubeconfig()},
		})).To(Succeed())
		DeferCleanup(func() {
			deleteAndWait(plc.k8s, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "planetkube-system", Name: deadPushSecret}})
		})
		peer := &planetv1.Authority{ObjectMeta: metav1.ObjectMeta{Name: "ple"}}
		cut := time.Now()
		update(plc.k8s, peer, func(o *planetv1.Authority) { o.Spec.Push.SecretName = deadPushSecret })
		DeferCleanup(func() { update(plc.k8s, peer, func(o *planetv1.Authority) { o.Spec.Push.SecretName = pushSecret }) })

		var unreachable metav1.Time
		Eventually(func(g Gomega) {
			e := entry(s)(g)
			g.Expect(e.Phase).To(Equal(planetv1.FederationUnreachable), "%+v", e)
			g.Expect(e.Reason).To(Equal(planetv1.ReasonPeerUnreachable))
			g.Expect(e.Message).To(ContainSubstring("the ticket stays in this install's feed"))
			g.Expect(e.Since).NotTo(BeNil(), "%+v", e)
			unreachable = *e.Since
		}, "60s").Should(Succeed())
		Expect(unreachable.Time).To(BeTemporally(">=", cut.Truncate(time.Second)), "since is not when ple became unreachable")
		Expect(unreachable.Time).To(BeTemporally(">=", redeemed.Time))
		Expect(unreachable.Time).To(BeTemporally("<=", time.Now()))
		steadySince(s, planetv1.FederationUnreachable, unreachable)

		By("ple answers again")
		back := time.Now()
		update(plc.k8s, peer, func(o *planetv1.Authority) { o.Spec.Push.SecretName = pushSecret })
		Eventually(func(g Gomega) {
			e := entry(s)(g)
			g.Expect(e.Phase).To(Equal(planetv1.FederationRedeemed), "%+v", e)
			g.Expect(e.Since).NotTo(BeNil(), "%+v", e)
			g.Expect(e.Since.Time).To(BeTemporally(">", unreachable.Time), "since did not move with the phase")
			g.Expect(e.Since.Time).To(BeTemporally(">=", back.Truncate(time.Second)))
			g.Expect(e.Reason).To(BeEmpty())
			g.Expect(strings.HasPrefix(e.Message, "redeemed at ple")).To(BeTrue(), e.Message)
		}, "60s").Should(Succeed())
	})

	It("shows a peer whose webhook refuses the ticket at once (no site there trusts the slice's authority) as Refused with its reason, since when, kept while it refuses", func() {
		distrust()
		made := time.Now()
		s := homeAt("mit", "unwelcome", 1)
		var e planetv1.SliceFederation
		Eventually(func(g Gomega) {
			e = entry(s)(g)
			g.Expect(e.Phase).To(Equal(planetv1.FederationRefused), "%+v", e)
		}, "60s").Should(Succeed())
		Expect(e.Reason).To(Equal(string(ticket.NotTrusted)), "%+v", e)
		Expect(e.Message).To(ContainSubstring("no site here trusts plc"))
		Expect(e.Placement).To(BeNil())
		Expect(goneAtPle(s)()).To(BeTrue())
		Expect(e.Since).NotTo(BeNil(), "%+v", e)
		Expect(e.Since.Time).To(BeTemporally(">=", made.Truncate(time.Second)))
		steadySince(s, planetv1.FederationRefused, *e.Since)
	})

	It("gives plc's slivers exactly the part inria allocates to plc, ple's own slivers the rest, and holds the cap on plc's slivers per node", func() {
		inria := ple.nodes("inria")
		// inria's nodes: 32 cpu and 256Gi each; a quarter to plc, one sliver a node.
		pool := &planetv1.ResourcePool{
			ObjectMeta: metav1.ObjectMeta{Namespace: "inria", Name: "plc-share"},
			Spec: planetv1.ResourcePoolSpec{
				Nodes: &planetv1.NodeSelection{Sites: []string{"inria"}},
				PerNode: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceMemory: resource.MustParse("64Gi"),
					planetv1.ResourceSlivers: resource.MustParse("1"),
				},
				Binding: &planetv1.PoolBinding{Authority: "plc"},
			},
		}
		Expect(ple.k8s.Create(ctx, pool)).To(Succeed())
		DeferCleanup(func() {
			update(ple.k8s, pool, func(o *planetv1.ResourcePool) { o.Spec.Binding = nil })
			deleteAndWait(ple.k8s, pool)
		})
		Eventually(func(g Gomega) {
			g.Expect(ple.k8s.Get(ctx, client.ObjectKeyFromObject(pool), pool)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(pool.Status.Conditions, planetv1.ConditionBound)).To(BeTrue(), "%v", pool.Status.Conditions)
		}).Should(Succeed())
		local := &planetv1.Slice{
			ObjectMeta: metav1.ObjectMeta{Namespace: "inria", Name: "local"},
			Spec: planetv1.SliceSpec{
				Description: "ple's own slice at inria", Template: planetv1.SliverTemplate{Image: "registry.example/local:1"},
				Nodes: planetv1.SliceNodes{NodeSelection: planetv1.NodeSelection{Sites: []string{"inria"}}},
			},
		}
		Expect(ple.k8s.Create(ctx, local)).To(Succeed())
		DeferCleanup(func() { deleteAndWait(ple.k8s, local) })

		s := homeAt("princeton", "shared", 6)
		_, ns := foreign(s)
		// sliversIn checks the live slivers of a namespace at ple: one on
		// each of inria's nodes, each as check says.
		sliversIn := func(ns string, check func(g Gomega, p *corev1.Pod)) func(Gomega) {
			return func(g Gomega) {
				pods := &corev1.PodList{}
				g.Expect(ple.k8s.List(ctx, pods, client.InNamespace(ns))).To(Succeed())
				nodes := map[string]bool{}
				for i := range pods.Items {
					if p := &pods.Items[i]; p.DeletionTimestamp.IsZero() {
						nodes[p.Spec.NodeName] = true
						check(g, p)
					}
				}
				g.Expect(nodes).To(HaveLen(inria.Len()))
			}
		}
		Eventually(sliversIn(ns, func(g Gomega, p *corev1.Pod) {
			g.Expect(p.Annotations).To(HaveKeyWithValue("planetkube.io/allocation", "plc"))
			res := p.Spec.Containers[0].Resources
			g.Expect(res.Requests.Cpu().String()).To(Equal("80m"), "1 share of 100 of plc's 8 cpu")
			g.Expect(res.Limits.Memory().String()).To(Equal("64Gi"))
		}), "90s").Should(Succeed())
		Eventually(sliversIn(naming.SliceNamespace("inria", "local"), func(g Gomega, p *corev1.Pod) {
			g.Expect(p.Annotations).NotTo(HaveKey("planetkube.io/allocation"))
			res := p.Spec.Containers[0].Resources
			g.Expect(res.Requests.Cpu().String()).To(Equal("240m"), "1 share of 100 of the 24 cpu left")
			g.Expect(res.Limits.Memory().String()).To(Equal("192Gi"))
		})).Should(Succeed())

		By("a second slice of plc gets no sliver on inria's nodes, and the home is told why")
		s2 := homeAt("princeton", "capped", 6)
		Eventually(func(g Gomega) {
			e := entry(s2)(g)
			g.Expect(e.Phase).To(Equal(planetv1.FederationRedeemed), "%+v", e)
			g.Expect(e.Placement).NotTo(BeNil(), "%+v", e)
			var full int32
			for _, grp := range e.Placement.Groups {
				if grp.Reason == planetv1.ReasonAllocationFull {
					full = grp.Count
				}
			}
			g.Expect(full).To(Equal(int32(inria.Len())), "%+v", e.Placement.Groups)
		}, "90s").Should(Succeed())
		_, ns2 := foreign(s2)
		Consistently(ple.runningIn(ns2), "2s").Should(BeEmpty())
		Eventually(func(g Gomega) {
			site := &planetv1.Site{}
			g.Expect(ple.k8s.Get(ctx, client.ObjectKey{Name: "inria"}, site)).To(Succeed())
			g.Expect(site.Status.Allocations).To(HaveLen(1))
			a := site.Status.Allocations[0]
			g.Expect(a.Authority).To(Equal("plc"))
			g.Expect(a.Nodes).To(Equal(int32(inria.Len())))
			slivers := a.Used[planetv1.ResourceSlivers]
			g.Expect(slivers.Value()).To(Equal(int64(inria.Len())))
		}).Should(Succeed())
	})
})
