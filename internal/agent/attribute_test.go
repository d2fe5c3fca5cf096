package agent

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/agent/attr"
	"github.com/planetkube/planetkube/internal/flow"
	"github.com/planetkube/planetkube/internal/flow/slicedir"
	"github.com/planetkube/planetkube/internal/naming"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestAttribute(t *testing.T) {
	h := attr.NewHistory()
	sliver := attr.Holder{Slice: "plc.princeton.codeen", Sliver: "princeton-codeen/codeen-n1", PodUID: "u1"}
	web := attr.Holder{Slice: "plc.mit.web", Sliver: "mit-web/web-n1", PodUID: "u2"}
	h.Assign(netip.MustParseAddr("10.244.0.5"), sliver, t0)
	h.Assign(netip.MustParseAddr("fd00::5"), sliver, t0)
	h.Assign(netip.MustParseAddr("10.244.0.9"), web, t0)

	tests := []struct {
		name string
		rec  flow.Record
		want attr.Holder
		n    int
	}{{
		name: "outgoing flow names its source pod",
		rec:  flow.Record{Start: t0.Add(time.Minute), Orig: flow.Tuple{Src: ap("10.244.0.5:40000"), Dst: ap("198.51.100.7:80")}},
		want: sliver, n: 1,
	}, {
		name: "IPv4-mapped source is normalized and attributed",
		rec:  flow.Record{Start: t0.Add(time.Minute), Orig: flow.Tuple{Src: ap("[::ffff:10.244.0.5]:40000"), Dst: ap("[::ffff:198.51.100.7]:80")}},
		want: sliver, n: 1,
	}, {
		name: "IPv6 source",
		rec:  flow.Record{Start: t0.Add(time.Minute), Orig: flow.Tuple{Src: ap("[fd00::5]:1"), Dst: ap("[2001:db8::1]:80")}},
		want: sliver, n: 1,
	}, {
		name: "incoming flow names the pod that accepted it",
		rec:  flow.Record{Start: t0.Add(time.Minute), Orig: flow.Tuple{Src: ap("198.51.100.7:5555"), Dst: ap("10.244.0.9:80")}},
		want: web, n: 1,
	}, {
		name: "a flow from before the pod held the IP is node traffic",
		rec:  flow.Record{Start: t0.Add(-time.Minute), Orig: flow.Tuple{Src: ap("10.244.0.5:40000"), Dst: ap("198.51.100.7:80")}},
		want: attr.Holder{}, n: 0,
	}, {
		name: "a flow of no pod is node traffic, and stale names are cleared",
		rec:  flow.Record{Start: t0.Add(time.Minute), Orig: flow.Tuple{Src: ap("192.0.2.1:22"), Dst: ap("198.51.100.7:80")}, Slice: "stale", Sliver: "x/y", PodUID: "z"},
		want: attr.Holder{}, n: 0,
	}, {
		name: "an open flow without a start is attributed at its end",
		rec:  flow.Record{End: t0.Add(time.Minute), Orig: flow.Tuple{Src: ap("10.244.0.9:1"), Dst: ap("198.51.100.7:80")}},
		want: web, n: 1,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			recs := []flow.Record{tc.rec}
			if n := Attribute(recs, h.At); n != tc.n {
				t.Errorf("Attribute returned %d, want %d", n, tc.n)
			}
			got := attr.Holder{Slice: recs[0].Slice, Sliver: recs[0].Sliver, PodUID: recs[0].PodUID}
			if got != tc.want {
				t.Errorf("Attributed to %+v, want %+v", got, tc.want)
			}
			for _, a := range []netip.AddrPort{recs[0].Orig.Src, recs[0].Orig.Dst} {
				if a.Addr().Is4In6() {
					t.Errorf("Address %v left IPv4-mapped", a)
				}
			}
		})
	}
}

func sliverPod(name, uid, ip string, phase corev1.PodPhase, start time.Time) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "princeton-codeen", UID: typesUID(uid), Labels: map[string]string{
			planetv1.LabelManagedBy: planetv1.ManagedByValue, planetv1.LabelSite: "princeton", planetv1.LabelSlice: "codeen",
		}},
		Status: corev1.PodStatus{Phase: phase},
	}
	if ip != "" {
		p.Status.PodIP = ip
		p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	}
	if !start.IsZero() {
		st := metav1.NewTime(start)
		p.Status.StartTime = &st
	}
	return p
}

// started gives the pod a container running since at.
func started(p *corev1.Pod, at time.Time) *corev1.Pod {
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "sliver", State: corev1.ContainerState{
		Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(at)},
	}}}
	return p
}

func TestPodTracker(t *testing.T) {
	now := t0
	tr := &PodTracker{History: attr.NewHistory(), FullName: (&slicedir.Directory{Authority: "plc"}).FullName, Now: func() time.Time { return now }}
	ip := netip.MustParseAddr("10.244.0.5")
	holderAt := func(at time.Time) string {
		h, ok := tr.History.At(ip, at)
		if !ok {
			return ""
		}
		return h.PodUID + " " + h.Slice
	}

	// A pod first seen running holds its IP since its start time.
	tr.Update(sliverPod("a", "uid-a", "10.244.0.5", corev1.PodRunning, t0.Add(-time.Hour)))
	if got := holderAt(t0.Add(-30 * time.Minute)); got != "uid-a plc.princeton.codeen" {
		t.Fatalf("Before the agent saw it, the IP was held by %q, want pod a of plc.princeton.codeen", got)
	}
	// It ends: the IP is released when that is seen.
	now = t0.Add(time.Minute)
	tr.Update(sliverPod("a", "uid-a", "10.244.0.5", corev1.PodSucceeded, t0.Add(-time.Hour)))
	// A second pod is first seen Pending without an IP, then gains a's IP.
	now = t0.Add(2 * time.Minute)
	tr.Update(sliverPod("b", "uid-b", "", corev1.PodPending, time.Time{}))
	now = t0.Add(3 * time.Minute)
	tr.Update(started(sliverPod("b", "uid-b", "10.244.0.5", corev1.PodRunning, t0.Add(2*time.Minute)), t0.Add(140*time.Second)))

	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{t0.Add(30 * time.Second), "uid-a plc.princeton.codeen"},
		{t0.Add(90 * time.Second), ""},
		{t0.Add(130 * time.Second), ""},                           // b's container had not started
		{t0.Add(150 * time.Second), "uid-b plc.princeton.codeen"}, // it had: its first flows come before its status shows the IP
		{t0.Add(4 * time.Minute), "uid-b plc.princeton.codeen"},
	} {
		if got := holderAt(tc.at); got != tc.want {
			t.Errorf("At %v the IP was held by %q, want %q", tc.at.Sub(t0), got, tc.want)
		}
	}

	// Deleting b releases the IP.
	now = t0.Add(5 * time.Minute)
	tr.Delete(sliverPod("b", "uid-b", "10.244.0.5", corev1.PodRunning, t0.Add(2*time.Minute)))
	if got := holderAt(t0.Add(6 * time.Minute)); got != "" {
		t.Errorf("After b was deleted the IP was held by %q", got)
	}

	// A pod seen gaining an IP whose previous holder's release was seen
	// after the pod started holds it from that release only, and one
	// whose previous holder still holds it from the moment it is seen.
	now = t0.Add(10 * time.Minute)
	tr.Update(sliverPod("c", "uid-c", "10.244.0.5", corev1.PodRunning, t0.Add(9*time.Minute)))
	tr.Update(sliverPod("d", "uid-d", "", corev1.PodPending, time.Time{}))
	now = t0.Add(12 * time.Minute)
	tr.Delete(sliverPod("c", "uid-c", "10.244.0.5", corev1.PodRunning, t0.Add(9*time.Minute)))
	now = t0.Add(13 * time.Minute)
	tr.Update(started(sliverPod("d", "uid-d", "10.244.0.5", corev1.PodRunning, t0.Add(11*time.Minute)), t0.Add(11*time.Minute+20*time.Second)))
	if got := holderAt(t0.Add(11*time.Minute + 30*time.Second)); got != "uid-c plc.princeton.codeen" {
		t.Errorf("Before c's release the IP was held by %q, want c", got)
	}
	if got := holderAt(t0.Add(12*time.Minute + 30*time.Second)); got != "uid-d plc.princeton.codeen" {
		t.Errorf("After c's release, before d's IP was seen, the IP was held by %q, want d", got)
	}
	ip2 := netip.MustParseAddr("10.244.0.9")
	now = t0.Add(20 * time.Minute)
	tr.Update(sliverPod("e", "uid-e", "10.244.0.9", corev1.PodRunning, t0.Add(19*time.Minute)))
	tr.Update(sliverPod("f", "uid-f", "", corev1.PodPending, time.Time{}))
	now = t0.Add(21 * time.Minute)
	tr.Update(started(sliverPod("f", "uid-f", "10.244.0.9", corev1.PodRunning, t0.Add(20*time.Minute)), t0.Add(20*time.Minute+10*time.Second)))
	if h, _ := tr.History.At(ip2, t0.Add(20*time.Minute+30*time.Second)); h.PodUID != "uid-e" {
		t.Errorf("While e still held the IP, it was given to %q", h.PodUID)
	}
	if h, _ := tr.History.At(ip2, t0.Add(21*time.Minute+time.Second)); h.PodUID != "uid-f" {
		t.Errorf("Once f was seen with the IP, it was held by %q, want f", h.PodUID)
	}

	// A pod's later address (a new sandbox) is held from the moment it is
	// seen: its container's start says nothing of when that address came.
	ip3 := netip.MustParseAddr("10.244.0.11")
	now = t0.Add(30 * time.Minute)
	tr.Update(started(sliverPod("g", "uid-g", "10.244.0.10", corev1.PodRunning, t0.Add(29*time.Minute)), t0.Add(29*time.Minute)))
	now = t0.Add(32 * time.Minute)
	tr.Update(started(sliverPod("g", "uid-g", "10.244.0.11", corev1.PodRunning, t0.Add(29*time.Minute)), t0.Add(31*time.Minute)))
	if _, ok := tr.History.At(ip3, t0.Add(31*time.Minute+30*time.Second)); ok {
		t.Error("A pod's second address was dated back before it was seen")
	}
	if h, _ := tr.History.At(ip3, t0.Add(32*time.Minute+time.Second)); h.PodUID != "uid-g" {
		t.Errorf("The second address is held by %q, want g", h.PodUID)
	}

	// Host-network pods and pods of no slice.
	hostNet := sliverPod("h", "uid-h", "192.0.2.10", corev1.PodRunning, t0)
	hostNet.Spec.HostNetwork = true
	tr.Update(hostNet)
	if _, ok := tr.History.At(netip.MustParseAddr("192.0.2.10"), t0.Add(time.Hour)); ok {
		t.Error("A host-network pod was given the node's IP")
	}
	plain := sliverPod("dns", "uid-dns", "10.244.0.7", corev1.PodRunning, t0)
	plain.Labels = nil
	tr.Update(plain)
	if h, ok := tr.History.At(netip.MustParseAddr("10.244.0.7"), t0.Add(time.Hour)); !ok || h.Slice != "" || h.Sliver != "" || h.PodUID != "uid-dns" {
		t.Errorf("A pod of no slice is held as %+v, %v; want its UID only: the public lookup never names the node's other pods", h, ok)
	}
}

func typesUID(s string) types.UID { return types.UID(s) }

func TestOptionsValidate(t *testing.T) {
	valid := func() Options {
		return Options{NodeName: "n1", Authority: "plc", DataDir: "/tmp/x", Retention: time.Hour, DumpInterval: time.Minute, PruneInterval: time.Minute, SegmentAge: time.Hour, MaxResults: 1000}
	}
	for _, tc := range []struct {
		name  string
		edit  func(*Options)
		error string
	}{
		{"valid", func(*Options) {}, ""},
		{"no node", func(o *Options) { o.NodeName = "" }, "--node-name"},
		{"negative size", func(o *Options) { o.MaxBytes = -1 }, "--max-bytes"},
		{"zero retention", func(o *Options) { o.Retention = 0 }, "--retention"},
		{"too many results", func(o *Options) { o.MaxResults = 1 << 20 }, "--max-results"},
		{"bad CIDR", func(o *Options) { o.Unlimited = "10.0.0.0/8, nonsense" }, `"nonsense" is not a CIDR`},
		{"good CIDRs", func(o *Options) { o.Unlimited = "10.0.0.0/8, fd00::/64" }, ""},
		{"public page on its own port", func(o *Options) { o.ListenAddr, o.PublicAddr = ":9470", ":80" }, ""},
		{"zero segment age", func(o *Options) { o.SegmentAge = 0 }, "--segment-age"},
		{"archive server without readers", func(o *Options) { o.ArchiveAddr, o.ArchiveReaders = ":9473", " , " }, "--archive-readers"},
		{"archive server over TLS", func(o *Options) {
			o.ArchiveAddr, o.ArchiveReaders, o.ArchiveTLSDir = ":9473", "system:serviceaccount:planetkube-system:planetkube-archiver", "/etc/planetkube/archive-tls"
		}, ""},
		{"archive TLS without the server", func(o *Options) { o.ArchiveTLSDir = "/etc/planetkube/archive-tls" }, "--archive-listen-address"},
		{"IPFIX over UDP", func(o *Options) {
			o.Export = ExportOptions{Collector: "udp://192.0.2.9:4739", EnterpriseNumber: 32473, TemplateInterval: time.Minute}
		}, ""},
		{"IPFIX collector without a port", func(o *Options) {
			o.Export = ExportOptions{Collector: "udp://192.0.2.9", EnterpriseNumber: 1, TemplateInterval: time.Minute}
		}, "--ipfix-collector"},
		{"IPFIX enterprise number 0", func(o *Options) {
			o.Export = ExportOptions{Collector: "tcp://192.0.2.9:4739", TemplateInterval: time.Minute}
		}, "--ipfix-enterprise-number"},
		{"public page on the lookup's port", func(o *Options) { o.ListenAddr, o.PublicAddr = ":9470", ":9470" }, "--public-listen-address :9470 is --listen-address already"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := valid()
			tc.edit(&o)
			err := o.Validate()
			switch {
			case tc.error == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.error != "" && (err == nil || !strings.Contains(err.Error(), tc.error)):
				t.Errorf("Validate() = %v, want an error mentioning %q", err, tc.error)
			}
		})
	}
}

// TestForeignSliverHolder checks that a foreign slice's sliver is named by
// the full name it carries, and only in the namespace that name gives.
func TestForeignSliverHolder(t *testing.T) {
	tr := &PodTracker{History: attr.NewHistory(), FullName: (&slicedir.Directory{Authority: "plc"}).FullName}
	foreign := sliverPod("a", "uid-a", "10.244.0.5", corev1.PodRunning, t0)
	foreign.Namespace = naming.ForeignSliceNamespace("ple", "inria", "codeen")
	foreign.Annotations = map[string]string{planetv1.AnnotationSliceFullName: "ple.inria.codeen"}
	if got := tr.holder(foreign).Slice; got != "ple.inria.codeen" {
		t.Fatalf("foreign sliver: %q", got)
	}
	forged := sliverPod("b", "uid-b", "10.244.0.6", corev1.PodRunning, t0)
	forged.Annotations = map[string]string{planetv1.AnnotationSliceFullName: "ple.inria.codeen"}
	if got := tr.holder(forged).Slice; got != "plc.princeton.codeen" {
		t.Fatalf("a claimed name outside its namespace: %q", got)
	}
}
