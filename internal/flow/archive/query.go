package archive

import (
	"context"
	"errors"
	"maps"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/planetkube/planetkube/internal/flow"
	"github.com/planetkube/planetkube/internal/flow/fanout"
	"github.com/planetkube/planetkube/internal/flow/lookup"
	"github.com/planetkube/planetkube/internal/flow/store"
)

// Reader answers flow queries from the archive: every node's archived
// segments, read-only, refreshed as the Fetcher adds and Prune removes
// them. It is a lookup.PartialStore: its answer says which nodes the
// archive holds and how far back each goes, and the lookup handler serves
// it as the agents' own API, so that the manager's cluster-wide lookup can
// ask the archive as it asks the nodes. Run as a manager Runnable (Start),
// it refreshes in the background and queries never wait for a refresh;
// otherwise a query refreshes when the last refresh is older than Every.
type Reader struct {
	// Dir is the archive's root (Fetcher.Dir).
	Dir string
	// Retention is the archive's, told in each node's holding.
	Retention time.Duration
	// Every bounds how often the directories are listed again (default 10 s).
	Every time.Duration

	// refreshing serializes refreshes; mu guards the fields below. nodes
	// is replaced, never changed, so a query reads the map it got while a
	// refresh builds the next.
	refreshing sync.Mutex
	mu         sync.Mutex
	nodes      map[string]*store.Store
	listed     time.Time
	background bool
}

func (r *Reader) every() time.Duration {
	if r.Every <= 0 {
		return 10 * time.Second
	}
	return r.Every
}

// Start opens the archived nodes, then refreshes them every Every until
// ctx ends. Queries meanwhile read what the last refresh found.
func (r *Reader) Start(ctx context.Context) error {
	log := logf.FromContext(ctx).WithName("archive-reader")
	r.mu.Lock()
	r.background = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.background = false
		r.mu.Unlock()
	}()
	for {
		if err := r.refresh(); err != nil {
			log.Error(err, "Reading the archive's folders")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(r.every()):
		}
	}
}

// NeedLeaderElection is false: every replica that serves lookups reads.
func (r *Reader) NeedLeaderElection() bool { return false }

// current returns the nodes a query reads: the last refresh's, unless
// none has run yet or, without Start, it is older than Every.
func (r *Reader) current() (map[string]*store.Store, error) {
	r.mu.Lock()
	nodes, stale := r.nodes, r.nodes == nil || !r.background && time.Since(r.listed) >= r.every()
	r.mu.Unlock()
	if !stale {
		return nodes, nil
	}
	err := r.refresh()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.nodes == nil { // the root could not be read
		return nil, err
	}
	return r.nodes, nil // a node that could not be read is left as it was
}

// refresh opens the nodes' folders that appeared and refreshes each, then
// makes them the nodes queries read. A node's folder that cannot be read
// is left as the last refresh found it, and said in the error.
func (r *Reader) refresh() error {
	r.refreshing.Lock()
	defer r.refreshing.Unlock()
	r.mu.Lock()
	nodes := maps.Clone(r.nodes)
	r.mu.Unlock()
	if nodes == nil {
		nodes = map[string]*store.Store{}
	}
	folders, err := nodeFolders(r.Dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, node := range folders {
		s, ok := nodes[node]
		if !ok {
			s, err := store.OpenArchive(filepath.Join(r.Dir, node))
			if err != nil {
				errs = append(errs, err)
				continue
			}
			nodes[node] = s
			continue
		}
		if err := s.Refresh(); err != nil {
			errs = append(errs, err)
		}
	}
	r.mu.Lock()
	r.nodes, r.listed = nodes, time.Now()
	r.mu.Unlock()
	return errors.Join(errs...)
}

// Query implements lookup.Store.
func (r *Reader) Query(ctx context.Context, q flow.Query) ([]flow.Record, error) {
	res, err := r.QueryPartial(ctx, q)
	return res.Records, err
}

// QueryPartial answers q from every node's archive, ordered by start then
// node, at most q.Limit records (Truncated when there may be more).
func (r *Reader) QueryPartial(ctx context.Context, q flow.Query) (lookup.Partial, error) {
	nodes, err := r.current()
	if err != nil {
		return lookup.Partial{}, err
	}
	names := make([]string, 0, len(nodes))
	for n := range nodes {
		names = append(names, n)
	}
	slices.Sort(names)
	res := lookup.Partial{Asked: len(names)}
	// The nodes are read in parallel, as many at once as there are CPUs,
	// first for a share of the limit each: the merge keeps the earliest
	// q.Limit records of all, so a node whose share ends after the q.Limit-th
	// of them has nothing more to give, and only the others are read again
	// for the whole limit. With many nodes answering a busy destination
	// this decodes a few records a node instead of q.Limit.
	answers := make([]nodeAnswer, len(names))
	share := q.Limit
	if len(names) > 1 {
		share = min(q.Limit, max(minShare, 4*q.Limit/len(names)))
	}
	all := make([]int, len(names))
	for i := range all {
		all[i] = i
	}
	readNodes(ctx, nodes, names, all, q, share, answers)
	if share < q.Limit {
		readNodes(ctx, nodes, names, needMore(answers, share, q.Limit), q, q.Limit, answers)
	}
	if err := ctx.Err(); err != nil {
		return lookup.Partial{}, err
	}
	var parts []fanout.Part
	for i, n := range names {
		recs, err := answers[i].recs, answers[i].err
		if err != nil {
			res.Errors = append(res.Errors, lookup.NodeError{Node: n, Error: "the archive could not read it"})
			continue
		}
		// A node answers at most its limit: as many means more may follow.
		parts = append(parts, fanout.Part{Records: recs, Truncated: len(recs) >= answers[i].limit})
		h := lookup.Holding{Node: n, RetentionSeconds: int64(r.Retention / time.Second)}
		if since := nodes[n].Stats().Oldest; !since.IsZero() {
			h.RecordsSince = &since
		}
		res.Holdings = append(res.Holdings, h)
	}
	res.Records, res.Truncated = fanout.Merge(parts, q.Limit)
	return res, nil
}

// minShare is the least a node is asked for in the first round.
const minShare = 16

// nodeAnswer is one node's records (their Node set) for a limit.
type nodeAnswer struct {
	recs  []flow.Record
	limit int
	err   error
}

// readNodes queries the nodes at idx with limit, in parallel (as many at
// once as there are CPUs), into answers.
func readNodes(ctx context.Context, nodes map[string]*store.Store, names []string, idx []int, q flow.Query, limit int, answers []nodeAnswer) {
	q.Limit = limit
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for _, i := range idx {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			recs, err := nodes[names[i]].Query(ctx, q)
			for j := range recs {
				recs[j].Node = names[i]
			}
			answers[i] = nodeAnswer{recs: recs, limit: limit, err: err}
		}()
	}
	wg.Wait()
}

// needMore returns the nodes whose first-round share may leave out records
// among the earliest limit of all: those that filled their share and whose
// last record is not after the limit-th record of the merge.
func needMore(answers []nodeAnswer, share, limit int) []int {
	parts := make([]fanout.Part, 0, len(answers))
	for _, a := range answers {
		parts = append(parts, fanout.Part{Records: a.recs})
	}
	merged, _ := fanout.Merge(parts, limit)
	var out []int
	for i, a := range answers {
		if a.err != nil || len(a.recs) < share {
			continue
		}
		if len(merged) < limit || before(a.recs[len(a.recs)-1], merged[limit-1]) <= 0 {
			out = append(out, i)
		}
	}
	return out
}

// before orders records by start, then node (as the fan-out merges them).
func before(a, b flow.Record) int {
	if c := a.Start.Compare(b.Start); c != 0 {
		return c
	}
	return strings.Compare(a.Node, b.Node)
}
