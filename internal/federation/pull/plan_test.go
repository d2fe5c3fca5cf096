package pull

import (
	"slices"
	"testing"
)

func TestCompare(t *testing.T) {
	p := func(name, id string) Pulled { return Pulled{Name: name, SliceID: id} }
	refused := func(id, name string) Pulled { return Pulled{Name: name, SliceID: id, Refused: true} }
	for _, tc := range []struct {
		name         string
		feed         []Pulled
		held         []Held
		create, drop []string
	}{
		{"first poll", []Pulled{p("a1", "a"), p("b1", "b")}, nil, []string{"a1", "b1"}, nil},
		{"steady", []Pulled{p("a1", "a")}, []Held{{"a1", "a", true}}, nil, nil},
		{"slice gone from the feed", nil, []Held{{"a1", "a", true}}, nil, []string{"a1"}},
		{"renewal not yet redeemed keeps the old", []Pulled{p("a2", "a")}, []Held{{"a1", "a", true}}, []string{"a2"}, nil},
		{"renewal pending", []Pulled{p("a2", "a")}, []Held{{"a1", "a", true}, {"a2", "a", false}}, nil, nil},
		{"renewal redeemed drops the old", []Pulled{p("a2", "a")}, []Held{{"a1", "a", false}, {"a2", "a", true}}, nil, []string{"a1"}},
		// Each ticket on its own: a refused one is not applied and keeps
		// its slice; the others are applied and withdrawn regardless.
		{"a refused ticket keeps its slice; a dropped slice still goes", []Pulled{refused("b", "b2"), p("c1", "c")},
			[]Held{{"a1", "a", true}, {"b1", "b", true}}, []string{"c1"}, []string{"a1"}},
		{"a refused renewal beside a valid one", []Pulled{refused("a", "a3"), p("a2", "a")},
			[]Held{{"a1", "a", false}, {"a2", "a", true}}, nil, []string{"a1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := Compare(tc.feed, tc.held)
			var created []string
			for _, c := range plan.Create {
				created = append(created, c.Name)
			}
			if !slices.Equal(created, tc.create) || !slices.Equal(plan.Delete, tc.drop) {
				t.Fatalf("create %v delete %v, want %v %v", created, plan.Delete, tc.create, tc.drop)
			}
		})
	}
}
