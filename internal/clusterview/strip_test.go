package clusterview

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/sliverplan"
)

// fill sets every exported field reachable from v to a random value:
// strings, numbers and bools, one to three elements in slices and maps,
// pointers allocated, quantities and times valid. A field a reader starts
// to read that a strip drops then differs between the whole pod and the
// stripped one.
func fill(v reflect.Value, r *rand.Rand, depth int) {
	if depth > 8 {
		return
	}
	switch v.Type() {
	case reflect.TypeFor[resource.Quantity]():
		v.Set(reflect.ValueOf(*resource.NewMilliQuantity(r.Int64N(1<<40), resource.DecimalSI)))
		return
	case reflect.TypeFor[metav1.Time]():
		v.Set(reflect.ValueOf(metav1.NewTime(time.Unix(r.Int64N(1<<31), 0))))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(string(rune('a'+r.IntN(26))) + string(rune('a'+r.IntN(26))))
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 1)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(r.Int64N(100))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(r.Uint64N(100))
	case reflect.Ptr:
		p := reflect.New(v.Type().Elem())
		fill(p.Elem(), r, depth+1)
		v.Set(p)
	case reflect.Slice:
		n := 1 + r.IntN(3)
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := range n {
			fill(s.Index(i), r, depth+1)
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for range 1 + r.IntN(3) {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			fill(k, r, depth+1)
			fill(e, r, depth+1)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	case reflect.Struct:
		for i := range v.NumField() {
			if f := v.Field(i); f.CanSet() {
				fill(f, r, depth+1)
			}
		}
	}
}

// randomSliver is a pod with every field set, labelled and annotated as a
// sliver, sometimes ready, sometimes with a container waiting.
func randomSliver(r *rand.Rand) *corev1.Pod {
	p := &corev1.Pod{}
	fill(reflect.ValueOf(p).Elem(), r, 0)
	p.Labels[planetv1.LabelManagedBy], p.Labels[planetv1.LabelSite], p.Labels[planetv1.LabelSlice] = planetv1.ManagedByValue, "site", "slice"
	p.Annotations[AnnotationTemplateHash], p.Annotations[AnnotationReservedHash] = "t"+p.Name, "r"+p.Name
	if r.IntN(2) == 0 {
		p.DeletionTimestamp = nil
	}
	if r.IntN(2) == 0 {
		p.Annotations[AnnotationAllocation] = "a" + p.Name
	}
	for i := range p.Status.Conditions {
		if r.IntN(2) == 0 {
			p.Status.Conditions[i].Type = corev1.PodReady
		}
	}
	for i := range p.Status.ContainerStatuses {
		if r.IntN(3) == 0 {
			p.Status.ContainerStatuses[i].State.Waiting = nil
		} else if r.IntN(3) == 0 {
			p.Status.ContainerStatuses[i].State.Waiting.Reason = ""
		}
	}
	return p
}

// TestStripSliverKeepsWhatTheControllersRead checks that every reader of
// the manager's cached pods sees the same of a stripped pod as of the
// whole one: the Slice controller's sliverplan.SliverOf (its plan, status
// and pod predicate), the labels it maps a pod to its slice by, the UID it
// deletes by, and the view's use of the node. A reader that starts to read
// a field the strip drops makes it fail.
func TestStripSliverKeepsWhatTheControllersRead(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		p := randomSliver(r)
		got, err := StripSliver(p)
		if err != nil {
			t.Fatal(err)
		}
		s := got.(*corev1.Pod)
		if a, b := sliverplan.SliverOf(p, AnnotationTemplateHash, AnnotationReservedHash), sliverplan.SliverOf(s, AnnotationTemplateHash, AnnotationReservedHash); a != b {
			t.Fatalf("pod %d: the sliver read from the whole pod\n%+v\nand from the stripped one\n%+v", i, a, b)
		}
		if a, b := *useOf(p), *useOf(s); a != b {
			t.Fatalf("pod %d: the view's use of the whole pod %+v, of the stripped one %+v", i, a, b)
		}
		for _, k := range []string{planetv1.LabelManagedBy, planetv1.LabelSite, planetv1.LabelSlice} {
			if p.Labels[k] != s.Labels[k] {
				t.Fatalf("pod %d: label %s %q, stripped %q", i, k, p.Labels[k], s.Labels[k])
			}
		}
		if p.UID != s.UID || p.Name != s.Name || p.Namespace != s.Namespace || p.ResourceVersion != s.ResourceVersion || !p.DeletionTimestamp.Equal(s.DeletionTimestamp) {
			t.Fatalf("pod %d: identity %s/%s %s %s %v, stripped %s/%s %s %s %v", i,
				p.Namespace, p.Name, p.UID, p.ResourceVersion, p.DeletionTimestamp, s.Namespace, s.Name, s.UID, s.ResourceVersion, s.DeletionTimestamp)
		}
		kept := 2 // the template and reserved hashes, and the allocation if any
		if _, ok := p.Annotations[AnnotationAllocation]; ok {
			kept++
		}
		if s.Spec.Containers[0].Image != "" || len(s.Spec.Volumes) != 0 || len(s.Labels) != 3 || len(s.Annotations) != kept || s.Status.PodIP != "" {
			t.Fatalf("pod %d: the strip kept what no reader reads: %+v", i, s)
		}
	}
}

// TestRelabelledPodMovesBetweenFeeds: a pod whose managed-by label is
// changed by hand leaves one cache and joins the other; the view keeps
// counting it whichever informer tells it first.
func TestRelabelledPodMovesBetweenFeeds(t *testing.T) {
	for _, joinFirst := range []bool{true, false} {
		v := New(nil)
		v.SetNode(mkNode("n1", "a", true))
		ours := pod("a-s", "p", "n1", "1", "1Gi", sliverLabels("a", "s"))
		theirs := pod("a-s", "p", "n1", "1", "1Gi", map[string]string{"app": "x"})
		v.SetPod(ours)
		if joinFirst {
			v.SetPod(theirs) // the other cache adds it
			v.DeletePodOf(ours)
		} else {
			v.DeletePodOf(ours) // PlanetKube's cache drops it
			v.SetPod(theirs)
		}
		free, _ := v.Free("n1", "a/other", "")
		if got := free.Resources.Cpu().MilliValue(); got != 3000 {
			t.Errorf("join first %v: free cpu %dm, want 3000m (the pod counted once)", joinFirst, got)
		}
		v.DeletePodOf(ours) // a late delete from the cache it left
		if free, _ := v.Free("n1", "a/other", ""); free.Resources.Cpu().MilliValue() != 3000 {
			t.Errorf("join first %v: a late delete from the old cache dropped the pod", joinFirst)
		}
		v.DeletePodOf(theirs)
		if free, _ := v.Free("n1", "a/other", ""); free.Resources.Cpu().MilliValue() != 4000 {
			t.Errorf("join first %v: the pod's deletion did not free its room", joinFirst)
		}
	}
}

// TestStrippedPodsShareEqualMaps: two slivers of a slice with the same
// requests share their labels, annotations and requests once stripped;
// another slice's or other requests do not.
func TestStrippedPodsShareEqualMaps(t *testing.T) {
	strip := func(p *corev1.Pod) *corev1.Pod {
		p.Annotations = map[string]string{AnnotationTemplateHash: "t", AnnotationReservedHash: "", "other": p.Name}
		s, _ := StripSliver(p)
		return s.(*corev1.Pod)
	}
	same := func(a, b any) bool { return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer() }
	a := strip(pod("a-s", "s-n1", "n1", "1", "2Gi", sliverLabels("a", "s")))
	b := strip(pod("a-s", "s-n2", "n2", "1", "2Gi", sliverLabels("a", "s")))
	c := strip(pod("a-t", "t-n1", "n1", "2", "2Gi", sliverLabels("a", "t")))
	if !same(a.Labels, b.Labels) || !same(a.Annotations, b.Annotations) || !same(a.Spec.Containers[0].Resources.Requests, b.Spec.Containers[0].Resources.Requests) {
		t.Error("two slivers of a slice with equal maps do not share them")
	}
	if same(a.Labels, c.Labels) || same(a.Spec.Containers[0].Resources.Requests, c.Spec.Containers[0].Resources.Requests) {
		t.Error("slivers with different labels or requests share them")
	}
	if !reflect.DeepEqual(c.Labels, sliverLabels("a", "t")) || c.Spec.Containers[0].Resources.Requests.Cpu().MilliValue() != 2000 {
		t.Errorf("shared maps changed the values: %v %v", c.Labels, c.Spec.Containers[0].Resources.Requests)
	}
}
