package archive

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/planetkube/planetkube/internal/agent/query"
	"github.com/planetkube/planetkube/internal/agent/store"
	"github.com/planetkube/planetkube/internal/flow"
	"github.com/planetkube/planetkube/internal/lookup/fanout"
)

// Reader answers flow queries from the archive: every node's archived
// segments, read-only, refreshed as the Fetcher adds and Prune removes
// them. It is a query.PartialStore: its answer says which nodes the
// archive holds and how far back each goes, and the lookup handler serves
// it as the agents' own API, so that the manager's cluster-wide lookup can
// ask the archive as it asks the nodes.
type Reader struct {
	// Dir is the archive's root (Fetcher.Dir).
	Dir string
	// Retention is the archive's, told in each node's holding.
	Retention time.Duration
	// Every bounds how often the directories are listed again (default 10 s).
	Every time.Duration

	mu     sync.Mutex
	nodes  map[string]*store.Store
	listed time.Time
}

// refresh opens the nodes' folders that appeared and refreshes each.
func (r *Reader) refresh() (map[string]*store.Store, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	every := r.Every
	if every <= 0 {
		every = 10 * time.Second
	}
	if r.nodes != nil && time.Since(r.listed) < every {
		return r.nodes, nil
	}
	if r.nodes == nil {
		r.nodes = map[string]*store.Store{}
	}
	ents, err := os.ReadDir(r.Dir)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() || !nodeName.MatchString(e.Name()) {
			continue
		}
		s, ok := r.nodes[e.Name()]
		if !ok {
			if s, err = store.OpenArchive(filepath.Join(r.Dir, e.Name())); err != nil {
				return nil, err
			}
			r.nodes[e.Name()] = s
			continue
		}
		if err := s.Refresh(); err != nil {
			return nil, err
		}
	}
	r.listed = time.Now()
	return r.nodes, nil
}

// Query implements query.Store.
func (r *Reader) Query(ctx context.Context, q flow.Query) ([]flow.Record, error) {
	res, err := r.QueryPartial(ctx, q)
	return res.Records, err
}

// QueryPartial answers q from every node's archive, ordered by start then
// node, at most q.Limit records (Truncated when there may be more).
func (r *Reader) QueryPartial(ctx context.Context, q flow.Query) (query.Partial, error) {
	nodes, err := r.refresh()
	if err != nil {
		return query.Partial{}, err
	}
	names := make([]string, 0, len(nodes))
	for n := range nodes {
		names = append(names, n)
	}
	slices.Sort(names)
	res := query.Partial{Asked: len(names)}
	var parts []fanout.Part
	for _, n := range names {
		recs, err := nodes[n].Query(ctx, q)
		if err != nil {
			if ctx.Err() != nil {
				return query.Partial{}, ctx.Err()
			}
			res.Errors = append(res.Errors, query.NodeError{Node: n, Error: "the archive could not read it"})
			continue
		}
		for i := range recs {
			recs[i].Node = n
		}
		// The store answers at most q.Limit records: as many means more may follow.
		parts = append(parts, fanout.Part{Records: recs, Truncated: len(recs) >= q.Limit})
		h := query.Holding{Node: n, RetentionSeconds: int64(r.Retention / time.Second)}
		if since := nodes[n].Stats().Oldest; !since.IsZero() {
			h.RecordsSince = &since
		}
		res.Holdings = append(res.Holdings, h)
	}
	res.Records, res.Truncated = fanout.Merge(parts, q.Limit)
	return res, nil
}
