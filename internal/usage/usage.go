// Package usage is what a node agent reports of the slices that used its
// node, and how the manager reads it: the agent serves a Report at Path on
// its API port; the manager fetches every agent's and sums them per slice.
package usage

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Path is where an agent serves its Report.
const Path = "/api/v1/usage"

// maxReport bounds a report the manager reads (a node with 1,000 slices'
// slivers is about 150 KB).
const maxReport = 4 << 20

// Report is one node's use by slices.
type Report struct {
	// Node is the agent's node.
	Node string `json:"node"`
	// At is when the figures were read.
	At time.Time `json:"at"`
	// Since is when the agent started counting: the counters (CPUSeconds,
	// Flows) count from then, and start again from zero when it restarts.
	Since time.Time `json:"since"`
	// Slices holds one entry per slice with a sliver on the node since the
	// agent started (a sliver gone keeps its slice's counts).
	Slices []Slice `json:"slices"`
}

// Slice is one slice's use of one node.
type Slice struct {
	// Slice is the slice's full name, <authority>.<site>.<slice>.
	Slice string `json:"slice"`
	// Namespace and Name are the Slice object's (the sliver pods'
	// planetkube.io/site and planetkube.io/slice labels; the authority
	// namespace and the foreign slice's name for a foreign slice).
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Slivers is how many of its slivers run on the node now.
	Slivers int `json:"slivers"`
	// CPUSeconds is the CPU time its slivers used on the node since the
	// agent started (their cgroups' cpuacct.usage, summed; a sliver gone
	// keeps what it used).
	CPUSeconds float64 `json:"cpuSeconds"`
	// Flows is how many flows of its the agent recorded since it started.
	Flows int64 `json:"flows"`
	// BytesToday is what it sent from the node in the bandwidth budget's
	// current period (a day), and BudgetBytes that period's budget on the
	// node; both 0 when the agent does not shape bandwidth.
	BytesToday  int64 `json:"bytesToday"`
	BudgetBytes int64 `json:"budgetBytes"`
}

// Fetch reads an agent's Report from its base URL (http://<pod IP>:<port>).
func Fetch(ctx context.Context, c *http.Client, base string) (*Report, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+Path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s%s: %s", base, Path, resp.Status)
	}
	r := &Report{}
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxReport))
	if err := dec.Decode(r); err != nil {
		return nil, fmt.Errorf("%s%s: %w", base, Path, err)
	}
	return r, nil
}
