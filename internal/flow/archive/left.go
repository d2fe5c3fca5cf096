package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/planetkube/planetkube/internal/durable"
	"github.com/planetkube/planetkube/internal/flow/segments"
	"github.com/planetkube/planetkube/internal/flow/store"
	"github.com/planetkube/planetkube/internal/naming"
)

// The files the archive keeps in a node's folder besides its segments.
const (
	// pendingFile is what the node's agent last listed that the archive
	// lacked when that sync ended.
	pendingFile = "pending.json"
	// leftFile is what the archive lacks of the node since it left the
	// cluster.
	leftFile = "left.json"
)

// pending is a node's pendingFile.
type pending struct {
	// ListedAt is when the agent listed its segments.
	ListedAt time.Time `json:"listed_at"`
	// Segments are the sealed segments it listed that the archive lacked.
	Segments []store.SegmentInfo `json:"segments,omitempty"`
	// Unsealed is the segment it was writing, if it held records.
	Unsealed *store.SegmentInfo `json:"unsealed,omitempty"`
}

// savePending records what the archive (dir) lacks of a node's listing.
func savePending(dir string, list segments.List, at time.Time) error {
	have, err := Archived(dir)
	if err != nil {
		return err
	}
	p := pending{ListedAt: at.UTC(), Unsealed: list.Unsealed}
	for _, sg := range list.Segments {
		if _, ok := slices.BinarySearch(have, sg.Seq); !ok {
			p.Segments = append(p.Segments, sg)
		}
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := durable.WriteFile(filepath.Join(dir, pendingFile), b, 0o640); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	return nil
}

// Left is what the archive lacks of a node that left the cluster: the
// records its agent last listed (sealed segments the archive had not
// fetched, and the segment it was writing), which went with the node.
// Records written after that listing are not known; a node that leaves
// twice adds up.
type Left struct {
	Node string `json:"node"`
	// At is when the archiver found the node gone; ListedAt when its agent
	// had last listed its segments.
	At       time.Time `json:"at"`
	ListedAt time.Time `json:"listed_at"`
	// Segments and Records are what the archive lacks of that listing.
	Segments int   `json:"segments"`
	Records  int64 `json:"records"`
}

// AccountLeft finds the nodes of the archive (root) that are not among the
// cluster's nodes and whose agent listed segments since they were last
// accounted, and adds what the archive lacks of that listing to the node's
// leftFile. It returns what each such node lost now (nothing is lost where
// the archive had fetched everything sealed and nothing was being written).
// A node that comes back is archived again, and accounted again if it
// leaves again.
func AccountLeft(root string, nodes sets.Set[string], now time.Time) ([]Left, error) {
	folders, err := nodeFolders(root)
	if err != nil {
		return nil, err
	}
	var out []Left
	var errs []error
	for _, node := range folders {
		if nodes.Has(node) {
			continue
		}
		l, err := accountNode(filepath.Join(root, node), node, now)
		switch {
		case err != nil:
			errs = append(errs, err)
		case l.Segments > 0: // its records are in those segments
			out = append(out, l)
		}
	}
	return out, errors.Join(errs...)
}

// accountNode moves a node's pending listing, if any, into its leftFile.
func accountNode(dir, node string, now time.Time) (Left, error) {
	b, err := os.ReadFile(filepath.Join(dir, pendingFile))
	if os.IsNotExist(err) {
		return Left{}, nil
	}
	if err != nil {
		return Left{}, fmt.Errorf("archive: %w", err)
	}
	var p pending
	if err := json.Unmarshal(b, &p); err != nil {
		return Left{}, fmt.Errorf("archive: %s: %w", filepath.Join(dir, pendingFile), err)
	}
	have, err := Archived(dir)
	if err != nil {
		return Left{}, err
	}
	l := Left{Node: node, At: now.UTC(), ListedAt: p.ListedAt}
	for _, sg := range p.Segments {
		if _, ok := slices.BinarySearch(have, sg.Seq); !ok { // fetched since, by a sync cut short
			l.Segments++
			l.Records += sg.Records
		}
	}
	if p.Unsealed != nil {
		l.Segments++
		l.Records += p.Unsealed.Records
	}
	if l.Segments > 0 {
		total := l
		if prev, err := readLeft(dir); err == nil {
			total.Segments += prev.Segments
			total.Records += prev.Records
		}
		b, err := json.Marshal(total)
		if err != nil {
			return Left{}, err
		}
		if err := durable.WriteFile(filepath.Join(dir, leftFile), b, 0o640); err != nil {
			return Left{}, fmt.Errorf("archive: %w", err)
		}
	}
	if err := os.Remove(filepath.Join(dir, pendingFile)); err != nil {
		return Left{}, fmt.Errorf("archive: %w", err)
	}
	return l, nil
}

// readLeft reads a node folder's leftFile.
func readLeft(dir string) (Left, error) {
	var l Left
	b, err := os.ReadFile(filepath.Join(dir, leftFile))
	if err != nil {
		return l, err
	}
	return l, json.Unmarshal(b, &l)
}

// LeftNodes reads what the archive lacks of every node that left the
// cluster (their leftFile), by node.
func LeftNodes(root string) ([]Left, error) {
	folders, err := nodeFolders(root)
	if err != nil {
		return nil, err
	}
	var out []Left
	var errs []error
	for _, node := range folders {
		l, err := readLeft(filepath.Join(root, node))
		switch {
		case os.IsNotExist(err):
		case err != nil:
			errs = append(errs, fmt.Errorf("archive: %s: %w", node, err))
		default:
			l.Node = node
			out = append(out, l)
		}
	}
	return out, errors.Join(errs...)
}

// nodeFolders lists the archive's node folders (named after their nodes).
func nodeFolders(root string) ([]string, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && naming.ValidNode(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// ClusterNodes lists the names of the cluster's nodes (their metadata
// only).
func ClusterNodes(r client.Reader) func(context.Context) (sets.Set[string], error) {
	return func(ctx context.Context) (sets.Set[string], error) {
		var list metav1.PartialObjectMetadataList
		list.SetGroupVersionKind(schema.GroupVersionKind{Version: "v1", Kind: "NodeList"})
		if err := r.List(ctx, &list); err != nil {
			return nil, fmt.Errorf("archive: listing the nodes: %w", err)
		}
		names := sets.New[string]()
		for _, n := range list.Items {
			names.Insert(n.Name)
		}
		return names, nil
	}
}
