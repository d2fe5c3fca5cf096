package slicecmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/shortfall"
)

func TestPrintPlan(t *testing.T) {
	p := &shortfall.Preview{
		FullName: "plc.princeton.codeen",
		Summary: &planetv1.PlacementSummary{Selected: 12, Running: 9, NotRunning: 3, Groups: []planetv1.NodeGroup{
			{Reason: planetv1.ReasonNotTrusted, Count: 2, Message: "the site does not trust authority plc", Nodes: []string{"mit-1", "mit-2"}},
			{Reason: planetv1.ReasonNodeFull, Count: 1, Message: "node princeton-3 takes no more pods", Nodes: []string{"princeton-3"}},
		}},
		Sites: []shortfall.SitePreview{
			{Site: "mit", Summary: &planetv1.PlacementSummary{Selected: 2, NotRunning: 2, Groups: []planetv1.NodeGroup{{Reason: planetv1.ReasonNotTrusted, Count: 2}}}},
			{Site: "princeton", Summary: &planetv1.PlacementSummary{Selected: 10, Running: 9, NotRunning: 1, Groups: []planetv1.NodeGroup{{Reason: planetv1.ReasonNodeFull, Count: 1}}}},
		},
		Peers: []string{"ple"},
	}
	var out strings.Builder
	s := &planetv1.Slice{}
	if err := printPlan(&out, s, append(p.Warnings(), "an unrelated warning")); err != nil {
		t.Fatal(err)
	}
	want := `slice plc.princeton.codeen would run 9 slivers on the 12 nodes its selection names here (2 sites); 3 would not run one
SITE       SELECTED  WOULD RUN  WOULD NOT (REASON COUNT)
mit        2         0          NotTrusted 2
princeton  10        9          NodeFull 1
why NotTrusted (2 nodes, e.g. mit-1, mit-2): the site does not trust authority plc
why NodeFull (1 nodes, e.g. princeton-3): node princeton-3 takes no more pods
peer ple: its nodes are chosen there when it redeems the slice's ticket (status.federation shows them)
`
	if out.String() != want {
		t.Errorf("printed:\n%s\nwant:\n%s", out.String(), want)
	}
	if err := printPlan(&out, s, nil); err == nil || !strings.Contains(err.Error(), "webhook") {
		t.Errorf("no warnings: %v, want an error naming the webhook", err)
	}
}

func TestReadSlice(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	slice := "apiVersion: planetkube.io/v1alpha1\nkind: Slice\nmetadata: {name: codeen, namespace: princeton}\nspec: {template: {image: pause}}\n"
	site := "apiVersion: planetkube.io/v1alpha1\nkind: Site\nmetadata: {name: princeton}\n"
	s, err := readSlice(write("one.yaml", site+"---\n"+slice))
	if err != nil || s.Name != "codeen" || s.Spec.Template.Image != "pause" {
		t.Fatalf("readSlice: %+v, %v", s, err)
	}
	if _, err := readSlice(write("two.yaml", slice+"---\n"+slice)); err == nil || !strings.Contains(err.Error(), "more than one Slice") {
		t.Errorf("two slices: %v", err)
	}
	if _, err := readSlice(write("none.yaml", site)); err == nil || !strings.Contains(err.Error(), "holds no Slice") {
		t.Errorf("no slice: %v", err)
	}
	if _, err := readSlice(write("typo.yaml", strings.Replace(slice, "template", "tempalte", 1))); err == nil || !strings.Contains(err.Error(), "tempalte") {
		t.Errorf("a misspelt field was read without a word")
	}
}
