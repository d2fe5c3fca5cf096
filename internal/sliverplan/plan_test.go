package sliverplan

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/placement"
)

const tmpl = "t1"

// sliver is a running, ready, current sliver of slice "s" on node.
func sliver(node string, mods ...func(*Sliver)) Sliver {
	s := Sliver{Name: naming.SliverName("s", node), Node: node, TemplateHash: tmpl, Phase: corev1.PodRunning, Ready: true}
	for _, m := range mods {
		m(&s)
	}
	return s
}

func failed(reason string) func(*Sliver) {
	return func(s *Sliver) {
		s.Phase, s.Ready, s.Reason, s.Message = corev1.PodFailed, false, reason, "Node didn't have enough resource: cpu"
	}
}
func waiting(reason string) func(*Sliver) {
	return func(s *Sliver) { s.Phase, s.Ready, s.WaitingReason = corev1.PodPending, false, reason }
}
func template(h string) func(*Sliver) { return func(s *Sliver) { s.TemplateHash = h } }
func terminating(s *Sliver)           { s.Terminating = true }
func notReady(s *Sliver)              { s.Ready, s.Phase = false, corev1.PodPending }
func reservedAs(h string) func(*Sliver) {
	return func(s *Sliver) { s.ReservedHash, s.Name = h, naming.ReservedSliverName("s", s.Node, h) }
}

func TestMake(t *testing.T) {
	tests := []struct {
		name     string
		run      []string
		retained []string
		reserved map[string]string
		slivers  []Sliver
		backOff  map[string]time.Duration
		noRoom   map[string]string
		gone     []string

		create  []string
		delete  []string // sliver names
		now     []string // of delete, those with no grace period
		ready   int
		pending int
		issues  map[string]string // node -> reason
	}{{
		name: "empty slice on two nodes: create both", run: []string{"n1", "n2"},
		create: []string{"n1", "n2"}, pending: 2,
		issues: map[string]string{"n1": planetv1.SliverIssueNotCreated, "n2": planetv1.SliverIssueNotCreated},
	}, {
		name: "converged: nothing to do", run: []string{"n1", "n2"},
		slivers: []Sliver{sliver("n1"), sliver("n2")}, ready: 2,
	}, {
		name: "node left the placement: its sliver goes; gone node at once", run: []string{"n1"},
		slivers: []Sliver{sliver("n1"), sliver("n2"), sliver("n3")}, gone: []string{"n3"},
		delete: []string{"s-n2", "s-n3"}, now: []string{"s-n3"}, ready: 1,
	}, {
		name: "template changed: replaced make-before-break (old kept while the name is taken)", run: []string{"n1"},
		slivers: []Sliver{sliver("n1", template("old"))},
		delete:  []string{"s-n1"}, pending: 1, issues: map[string]string{"n1": planetv1.SliverIssueReplacing},
	}, {
		name: "reservation starts: successor made first, old one kept", run: []string{"n1"}, reserved: map[string]string{"n1": "abc"},
		slivers: []Sliver{sliver("n1")},
		create:  []string{"n1"}, pending: 1, issues: map[string]string{"n1": planetv1.SliverIssueReplacing},
	}, {
		name: "successor pending: old one still kept", run: []string{"n1"}, reserved: map[string]string{"n1": "abc"},
		slivers: []Sliver{sliver("n1"), sliver("n1", reservedAs("abc"), notReady)},
		pending: 1, issues: map[string]string{"n1": "Pending"},
	}, {
		name: "successor ready: old one goes", run: []string{"n1"}, reserved: map[string]string{"n1": "abc"},
		slivers: []Sliver{sliver("n1"), sliver("n1", reservedAs("abc"))},
		delete:  []string{"s-n1"}, ready: 1,
	}, {
		name: "successor failed: old one goes at once", run: []string{"n1"}, reserved: map[string]string{"n1": "abc"},
		slivers: []Sliver{sliver("n1"), sliver("n1", reservedAs("abc"), failed("OutOfcpu"))},
		delete:  []string{"s-n1", "s-n1-abc"}, pending: 1, issues: map[string]string{"n1": "OutOfcpu"},
	}, {
		name: "failed sliver, no back-off: it goes (replaced once gone)", run: []string{"n1"},
		slivers: []Sliver{sliver("n1", failed("OutOfcpu"))},
		delete:  []string{"s-n1"}, pending: 1, issues: map[string]string{"n1": "OutOfcpu"},
	}, {
		name: "failed sliver backing off: kept, reason shown", run: []string{"n1"},
		slivers: []Sliver{sliver("n1", failed("OutOfcpu"))}, backOff: map[string]time.Duration{"n1": 4 * time.Second},
		pending: 1, issues: map[string]string{"n1": "OutOfcpu"},
	}, {
		name: "failed sliver off the placement goes, back-off or not", run: []string{},
		slivers: []Sliver{sliver("n1", failed("OutOfcpu"))}, backOff: map[string]time.Duration{"n1": time.Second},
		delete: []string{"s-n1"},
	}, {
		name: "the name is still held by a terminating pod: wait", run: []string{"n1"},
		slivers: []Sliver{sliver("n1", terminating)},
		pending: 1, issues: map[string]string{"n1": planetv1.SliverIssueNotCreated},
	}, {
		name: "no room on the node: not created, said why", run: []string{"n1", "n2"},
		noRoom: map[string]string{"n2": "node n2 takes no more pods"},
		create: []string{"n1"}, pending: 2,
		issues: map[string]string{"n1": planetv1.SliverIssueNotCreated, "n2": planetv1.SliverIssueNodeFull},
	}, {
		name: "reasons follow the pod: ErrImagePull, not ContainerCreating", run: []string{"n1"},
		slivers: []Sliver{sliver("n1", waiting("ErrImagePull"))},
		pending: 1, issues: map[string]string{"n1": "ErrImagePull"},
	}, {
		name: "retained node keeps an old sliver, reported by placement", run: []string{"n1"}, retained: []string{"n1"},
		slivers: []Sliver{sliver("n1", template("old"), notReady)},
	}, {
		name: "misnamed and second slivers go", run: []string{"n1"},
		slivers: []Sliver{sliver("n1"), {Name: "stray", Node: "n1", TemplateHash: tmpl, Phase: corev1.PodRunning}},
		delete:  []string{"stray"}, ready: 1,
	}, {
		name: "succeeded sliver goes", run: []string{"n1"},
		slivers: []Sliver{sliver("n1", func(s *Sliver) { s.Phase, s.Ready = corev1.PodSucceeded, false })},
		delete:  []string{"s-n1"}, pending: 1, issues: map[string]string{"n1": "Succeeded"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var issues []placement.Issue
			for _, n := range tt.retained {
				issues = append(issues, placement.Issue{Node: n, Reason: placement.ReasonNodeNotReady})
			}
			p := Make(Input{
				Slice: "s", TemplateHash: tmpl, Reserved: tt.reserved, Slivers: tt.slivers,
				Placement: placement.Result{Run: tt.run, Retained: tt.retained, Issues: issues, Matching: len(tt.run)},
				NodeGone:  func(n string) bool { return slices.Contains(tt.gone, n) },
				BackOff:   tt.backOff,
				NoRoom: func(n string) (string, string) {
					if tt.noRoom[n] == "" {
						return "", ""
					}
					return planetv1.SliverIssueNodeFull, tt.noRoom[n]
				},
			})
			if !slices.Equal(p.Create, tt.create) {
				t.Errorf("Create = %v, want %v", p.Create, tt.create)
			}
			var del, now []string
			for _, d := range p.Delete {
				del = append(del, tt.slivers[d.Index].Name)
				if d.Now {
					now = append(now, tt.slivers[d.Index].Name)
				}
			}
			slices.Sort(del)
			if !slices.Equal(del, tt.delete) || !slices.Equal(now, tt.now) {
				t.Errorf("Delete = %v (now %v), want %v (now %v)", del, now, tt.delete, tt.now)
			}
			if p.Desired != len(tt.run) || p.Ready != tt.ready || p.Pending != tt.pending {
				t.Errorf("desired/ready/pending = %d/%d/%d, want %d/%d/%d", p.Desired, p.Ready, p.Pending, len(tt.run), tt.ready, tt.pending)
			}
			got := map[string]string{}
			for _, is := range p.Issues {
				got[is.Node] = is.Reason
			}
			for _, n := range tt.retained {
				delete(got, n)
			}
			if len(got) != len(tt.issues) {
				t.Errorf("issues = %v, want %v", got, tt.issues)
			}
			for n, r := range tt.issues {
				if got[n] != r {
					t.Errorf("issue on %s = %q, want %q (all: %v)", n, got[n], r, got)
				}
			}
		})
	}
}

func TestBackOffMessageSaysWhen(t *testing.T) {
	p := Make(Input{
		Slice: "s", TemplateHash: tmpl, Slivers: []Sliver{sliver("n1", failed("OutOfcpu"))},
		Placement: placement.Result{Run: []string{"n1"}}, NodeGone: func(string) bool { return false },
		BackOff: map[string]time.Duration{"n1": 8 * time.Second}, NoRoom: func(string) (string, string) { return "", "" },
	})
	if len(p.Issues) != 1 || p.Issues[0].Message != "Node didn't have enough resource: cpu (the sliver failed; a new one is tried in 8s)" {
		t.Errorf("issues = %+v", p.Issues)
	}
}

func TestIssuesBounded(t *testing.T) {
	var run []string
	for i := range 50 {
		run = append(run, "n"+string(rune('a'+i/26))+string(rune('a'+i%26)))
	}
	p := Make(Input{Slice: "s", TemplateHash: tmpl, Placement: placement.Result{Run: run},
		NodeGone: func(string) bool { return false }, NoRoom: func(string) (string, string) { return "", "" }})
	if len(p.Issues) != planetv1.MaxSliverIssues || p.Issues[0].Node != "naa" || len(p.Create) != 50 {
		t.Errorf("issues %d (first %v), creates %d", len(p.Issues), p.Issues[0], len(p.Create))
	}
	// Every node's issue is still there for the placement summary.
	if len(p.NodeIssues) != 50 || cap(p.Issues) != planetv1.MaxSliverIssues {
		t.Errorf("node issues %d, issues' capacity %d", len(p.NodeIssues), cap(p.Issues))
	}
}
