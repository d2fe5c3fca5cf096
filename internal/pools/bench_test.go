package pools

import (
	"fmt"
	"testing"
	"time"
)

// benchPools builds a realistic installation: sites sites of nodesPerSite
// nodes each and 40 pools per site: two root pools over all the site's nodes,
// each split into three overlapping halves, each half split into five
// fifths, every other fifth bound to a slice (half of those bindings
// expired); and two more root pools over one half of the nodes each.
// Everything fits, so every pool is accounted for in full.
func benchPools(sites, nodesPerSite int) ([]Pool, Capacity, time.Time) {
	now := t0.Add(30 * 24 * time.Hour)
	capacity := Capacity{}
	var pools []Pool
	add := func(p Pool) Pool {
		p.Created = t0.Add(time.Duration(len(pools)) * time.Second)
		pools = append(pools, p)
		return p
	}
	for s := range sites {
		site := fmt.Sprintf("site%d", s)
		nodes := make([]string, nodesPerSite)
		for i := range nodes {
			nodes[i] = fmt.Sprintf("%s-n%d", site, i)
			capacity[nodes[i]] = rl("cpu", "64", "memory", "256Gi", "ephemeral-storage", "1Ti",
				"planetkube.io/egress-bandwidth", "10G", "planetkube.io/slivers", "100")
		}
		half, quarter, tenth := nodesPerSite/2, nodesPerSite/4, nodesPerSite/10
		for r := range 2 {
			root := add(Pool{Key: fmt.Sprintf("%s/split%d", site, r), Site: site, Nodes: nodes,
				PerNode: rl("cpu", "16", "memory", "64Gi", "ephemeral-storage", "200Gi",
					"planetkube.io/egress-bandwidth", "2G", "planetkube.io/slivers", "20")})
			for c := range 3 {
				child := add(Pool{Key: fmt.Sprintf("%s-%d", root.Key, c), Parent: root.Key, Site: site,
					Nodes: nodes[c*quarter : c*quarter+half],
					PerNode: rl("cpu", "4", "memory", "16Gi", "ephemeral-storage", "50Gi",
						"planetkube.io/egress-bandwidth", "500M", "planetkube.io/slivers", "5")})
				for g := range 5 {
					p := Pool{Key: fmt.Sprintf("%s-%d", child.Key, g), Parent: child.Key, Site: site,
						Nodes: child.Nodes[g*tenth : (g+1)*tenth],
						PerNode: rl("cpu", "2", "memory", "8Gi", "ephemeral-storage", "20Gi",
							"planetkube.io/egress-bandwidth", "200M", "planetkube.io/slivers", "2")}
					if g%2 == 0 {
						until := now.Add(time.Duration(g-1) * time.Hour) // g=0: expired
						p.Binding = &Binding{Slice: fmt.Sprintf("slices/%s-%d", site, g), Until: until}
					}
					add(p)
				}
			}
		}
		for r := range 2 {
			add(Pool{Key: fmt.Sprintf("%s/plain%d", site, r), Site: site, Nodes: nodes[r*half : (r+1)*half],
				PerNode: rl("cpu", "8", "memory", "32Gi", "ephemeral-storage", "100Gi",
					"planetkube.io/egress-bandwidth", "1G", "planetkube.io/slivers", "10")})
		}
	}
	return pools, capacity, now
}

// BenchmarkAccount is one recomputation over 1,000 nodes (5 sites of 200)
// and 200 pools.
func BenchmarkAccount(b *testing.B) {
	pools, capacity, now := benchPools(5, 200)
	b.ReportAllocs()
	for b.Loop() {
		Account(pools, capacity, now)
	}
}
