// Package lookup serves a node's flow lookup over HTTP: a human page
// (GET /) and a JSON API (GET /api/v1/flows) that give the same answers.
// It is read-only, validates every input (400 with a message, the store is
// not asked), bounds results, and rate-limits each client IP.
//
// The same handler serves the cluster-wide lookup on the manager, over a
// store that asks every node (internal/flow/fanout): such a store implements
// PartialStore, and the nodes that did not answer are listed in the answer
// (the API's "errors", a notice on the page) rather than lost silently.
package lookup

import (
	"context"
	"time"

	"github.com/planetkube/planetkube/internal/flow"
)

// Store is what the handler reads (internal/flow/store implements it).
type Store interface {
	Query(ctx context.Context, q flow.Query) ([]flow.Record, error)
}

// NodeError says that a node did not answer a query, and why.
type NodeError struct {
	Node  string `json:"node"`
	Error string `json:"error"`
}

// Partial is the answer of a PartialStore: the records of the nodes that
// answered, and the nodes that did not.
type Partial struct {
	// Records are ordered by start, at most the query's Limit of them.
	Records []flow.Record
	// Truncated says that records may be missing after the last one, even if
	// there are fewer than the query's Limit (a node bounded its answer).
	Truncated bool
	// Errors lists the nodes that did not answer.
	Errors []NodeError
	// Asked is how many nodes were asked; 0 when none was found, so that
	// an empty answer is not mistaken for "no traffic".
	Asked int
	// Holdings say how far back the records of the nodes that answered go,
	// for those that said (the archive's with Source "archive").
	Holdings []Holding
	// ArchiveAsked says that the install's archive was asked too, and
	// ArchiveError why it did not answer, if it did not.
	ArchiveAsked bool
	ArchiveError string
}

// Holding says how far back a node's flow records go: a stranger asking
// about last month's traffic must learn that the node no longer knows.
type Holding struct {
	// Node is the node's name.
	Node string `json:"node"`
	// RecordsSince is the start of the oldest record the node holds;
	// absent when it holds none.
	RecordsSince *time.Time `json:"records_since,omitempty"`
	// RetentionSeconds is how long the node keeps records (0: not said).
	RetentionSeconds int64 `json:"retention_seconds,omitempty"`
	// Source is "archive" when the install's archive holds these records
	// of the node, "" when the node itself does.
	Source string `json:"source,omitempty"`
}

// PartialStore is a Store whose answer may lack some of its sources, such as
// the manager's fan-out to every node. The handler uses QueryPartial rather
// than Query when its store implements it.
type PartialStore interface {
	Store
	// QueryPartial answers q with what the sources that answered gave. Its
	// error is for a query that got no answer at all; it may come with a
	// Partial whose Errors say why each source failed.
	QueryPartial(ctx context.Context, q flow.Query) (Partial, error)
}

// SliceInfo is what the page shows about a slice beside its flows.
type SliceInfo struct {
	FullName, Description, URL string
	// Contacts are the people responsible, PIs then techs, without repeats.
	Contacts []string
	// PIs and Techs are the slice's site's, by name; Site and SiteURL its
	// display name and web site. Empty for a slice of another authority.
	PIs, Techs    []string
	Site, SiteURL string
}

// Directory resolves a slice's full name to what the page shows about it.
type Directory interface {
	Slice(fullName string) (SliceInfo, bool)
}
