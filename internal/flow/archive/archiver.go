package archive

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/planetkube/planetkube/internal/flow/fanout"
	"github.com/planetkube/planetkube/internal/flow/store"
)

// Defaults of the Archiver.
const (
	DefaultInterval  = 10 * time.Minute
	DefaultRetention = 90 * 24 * time.Hour
)

// Archiver syncs every node agent's segments into the archive every
// Interval, then applies the archive's own retention (by age, then by
// size). It runs on the leader only.
type Archiver struct {
	Fetcher *Fetcher
	// Targets lists the agents (their segment servers' URLs).
	Targets fanout.Targets
	// Nodes lists the cluster's nodes (ClusterNodes), to tell what the
	// archive lacks of those that left (AccountLeft); nil: not told.
	Nodes func(context.Context) (sets.Set[string], error)
	// TLS, if set, gives the configuration of HTTPS to the agents before
	// each round (archivetls: Ensure, ClientConfig): the agents are then
	// asked at https://, and a round whose TLS cannot be had downloads
	// nothing. Nil: plain HTTP.
	TLS func(context.Context) (*tls.Config, error)
	// Interval is the time between syncs (default 10 minutes).
	Interval time.Duration
	// Retention is how long an archived segment is kept after its last
	// record (default 90 days); MaxBytes, if positive, caps the archive's
	// size (the oldest segments go first).
	Retention time.Duration
	MaxBytes  int64
	Metrics   *Metrics
	Log       logr.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Metrics count the archive's work, per node where it helps.
type Metrics struct {
	Segments, Bytes, Corrupt, Missed, Errors *prometheus.CounterVec
	LostSegments, LostRecords                *prometheus.GaugeVec
	Pruned                                   prometheus.Counter
	Size                                     prometheus.Gauge
}

// NewMetrics makes the archive's metrics, named planetkube_archive_*.
func NewMetrics() *Metrics {
	vec := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "planetkube_archive_" + name, Help: help}, []string{"node"})
	}
	return &Metrics{
		Segments: vec("segments_total", "Segments downloaded, verified and archived."),
		Bytes:    vec("bytes_total", "Bytes of the segments archived."),
		Corrupt:  vec("corrupt_segments_total", "Segment downloads refused because they failed verification (fetched again at the next sync)."),
		Missed:   vec("missed_segments_total", "Segments a node pruned before they were archived: their flows are lost."),
		Errors:   vec("sync_errors_total", "Syncs of a node that failed (unreachable, refused, cut)."),
		LostSegments: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "planetkube_archive_lost_segments",
			Help: "Segments of a node that left the cluster which the archive lacks: the sealed ones its agent last listed and it had not fetched, and the one being written."}, []string{"node"}),
		LostRecords: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "planetkube_archive_lost_records",
			Help: "Flow records of those segments (as last listed: records written after are not known)."}, []string{"node"}),
		Pruned: prometheus.NewCounter(prometheus.CounterOpts{Name: "planetkube_archive_pruned_segments_total", Help: "Archived segments deleted by the archive's retention or size cap."}),
		Size:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "planetkube_archive_bytes", Help: "Size of the archive on disk."}),
	}
}

// Collectors lists the metrics for registration.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.Segments, m.Bytes, m.Corrupt, m.Missed, m.Errors, m.LostSegments, m.LostRecords, m.Pruned, m.Size}
}

// NeedLeaderElection is true: one replica archives.
func (a *Archiver) NeedLeaderElection() bool { return true }

// Start syncs and prunes until ctx ends.
func (a *Archiver) Start(ctx context.Context) error {
	every := a.Interval
	if every <= 0 {
		every = DefaultInterval
	}
	for {
		a.Once(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
	}
}

// Once syncs every agent, then prunes the archive.
func (a *Archiver) Once(ctx context.Context) {
	targets, err := a.Targets(ctx)
	if err != nil {
		a.Log.Error(err, "Listing the node agents to archive")
	}
	for _, t := range a.secure(ctx, targets) {
		res, err := a.Fetcher.Sync(ctx, t.Node, t.URL)
		m := a.metrics()
		m.Segments.WithLabelValues(t.Node).Add(float64(res.Fetched))
		m.Bytes.WithLabelValues(t.Node).Add(float64(res.Bytes))
		m.Corrupt.WithLabelValues(t.Node).Add(float64(res.Corrupt))
		m.Missed.WithLabelValues(t.Node).Add(float64(res.Missed))
		if res.Missed > 0 {
			a.Log.Info("A node pruned segments before they were archived: their flows are lost", "node", t.Node, "segments", res.Missed)
		}
		if err != nil {
			m.Errors.WithLabelValues(t.Node).Inc()
			a.Log.Info("Archiving a node's segments failed; the next sync resumes", "node", t.Node, "error", err.Error())
		}
	}
	a.accountLeft(ctx, targets)
	pruned, size, err := Prune(a.Fetcher.Dir, a.now(), a.retention(), a.MaxBytes)
	if err != nil {
		a.Log.Error(err, "Pruning the archive")
	}
	a.metrics().Pruned.Add(float64(pruned))
	a.metrics().Size.Set(float64(size))
}

// secure sets the Fetcher's TLS for this round and returns the targets at
// their https:// addresses; none if TLS could not be had.
func (a *Archiver) secure(ctx context.Context, targets []fanout.Target) []fanout.Target {
	if a.TLS == nil {
		return targets
	}
	cfg, err := a.TLS(ctx)
	if err != nil {
		a.Log.Error(err, "Preparing TLS to the agents; nothing is downloaded in the clear, this round downloads nothing")
		return nil
	}
	if old := a.Fetcher.TLS; old == nil || !old.RootCAs.Equal(cfg.RootCAs) { // new CAs: new connections
		a.Fetcher.TLS = cfg
	}
	out := make([]fanout.Target, len(targets))
	for i, t := range targets {
		out[i] = fanout.Target{Node: t.Node, URL: "https://" + strings.TrimPrefix(t.URL, "http://")}
	}
	return out
}

// accountLeft tells what the archive lacks of the nodes that left the
// cluster: a log line when a node is found gone, and the gauges, from the
// node folders (so that they survive a restart).
func (a *Archiver) accountLeft(ctx context.Context, targets []fanout.Target) {
	m := a.metrics()
	if a.Nodes != nil {
		nodes, err := a.Nodes(ctx)
		switch {
		case err != nil:
			a.Log.Error(err, "Listing the nodes, to tell what the archive lacks of those that left")
		case nodes.Len() == 0:
			// A cluster without nodes is a broken answer, not every node gone.
			a.Log.Info("The cluster lists no nodes; not telling any as left")
		default:
			for _, t := range targets { // an agent that is listed is on a node
				nodes.Insert(t.Node)
			}
			left, err := AccountLeft(a.Fetcher.Dir, nodes, a.now())
			if err != nil {
				a.Log.Error(err, "Telling what the archive lacks of the nodes that left")
			}
			for _, l := range left {
				a.Log.Info("A node left the cluster before the archive had all its flows: they are lost",
					"node", l.Node, "segments", l.Segments, "records", l.Records, "listedAt", l.ListedAt)
			}
		}
	}
	lefts, err := LeftNodes(a.Fetcher.Dir)
	if err != nil {
		a.Log.Error(err, "Reading what the archive lacks of the nodes that left")
	}
	m.LostSegments.Reset()
	m.LostRecords.Reset()
	for _, l := range lefts {
		m.LostSegments.WithLabelValues(l.Node).Set(float64(l.Segments))
		m.LostRecords.WithLabelValues(l.Node).Set(float64(l.Records))
	}
}

func (a *Archiver) metrics() *Metrics {
	if a.Metrics == nil {
		a.Metrics = NewMetrics()
	}
	return a.Metrics
}

func (a *Archiver) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *Archiver) retention() time.Duration {
	if a.Retention <= 0 {
		return DefaultRetention
	}
	return a.Retention
}

// archived is an archived segment, for pruning.
type archived struct {
	dir     string
	seq     uint64
	maxTime time.Time
	bytes   int64
}

// Prune deletes the archived segments whose last record is older than
// retention, then, if maxBytes > 0, the oldest until the archive fits. It
// returns how many it deleted and the archive's size after.
func Prune(root string, now time.Time, retention time.Duration, maxBytes int64) (int, int64, error) {
	nodes, err := nodeFolders(root) // not a volume's lost+found
	if err != nil {
		return 0, 0, err
	}
	var all []archived
	var errs []error
	for _, n := range nodes {
		dir := filepath.Join(root, n)
		seqs, err := Archived(dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, seq := range seqs {
			info, size, err := store.ReadIndexInfo(filepath.Join(dir, store.SegmentFileName(seq, "idx")))
			if err != nil {
				errs = append(errs, err)
				continue
			}
			all = append(all, archived{dir: dir, seq: seq, maxTime: info.MaxTime, bytes: size})
		}
	}
	slices.SortFunc(all, func(a, b archived) int { return a.maxTime.Compare(b.maxTime) })
	var total int64
	for _, s := range all {
		total += s.bytes
	}
	cutoff := now.Add(-retention)
	pruned := 0
	for _, s := range all {
		if !s.maxTime.Before(cutoff) && (maxBytes <= 0 || total <= maxBytes) {
			break
		}
		// The index first: a data file without it is not archived.
		if err := removeSegment(s.dir, s.seq); err != nil {
			errs = append(errs, err)
			continue
		}
		total -= s.bytes
		pruned++
	}
	return pruned, total, errors.Join(errs...)
}

func removeSegment(dir string, seq uint64) error {
	for _, ext := range []string{"idx", "log"} {
		if err := os.Remove(filepath.Join(dir, store.SegmentFileName(seq, ext))); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("archive: %w", err)
		}
	}
	return nil
}
