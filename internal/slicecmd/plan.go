package slicecmd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/cli"
	"github.com/planetkube/planetkube/internal/shortfall"
)

// maxPlanFile bounds the file plan reads.
const maxPlanFile = 4 << 20

// plan prints what a slice would get: it applies the slice as a server-side
// dry run (nothing is created or changed) and prints the answer of
// PlanetKube's webhook, which decides as the Slice controller does.
func plan(args []string, std IO) error {
	fs := cli.NewFlagSet("slice plan", "-f SLICE.yaml [-n NAMESPACE] [flags]",
		"Says what a slice would get if it were applied now, creating and changing nothing: how\n"+
			"many slivers on how many nodes of each site, and why the other nodes its selection names\n"+
			"would run none (the site does not trust the slice's authority, is disabled or at its slice\n"+
			"limit; the node is not ready, full, or its slots are held by a pool; maxNodes). It is\n"+
			"`kubectl apply --dry-run=server -f SLICE.yaml` printed as a table: the same words as the\n"+
			"slice's status.placement. A peer's nodes (spec.nodes.authorities) are chosen there.\n\n"+
			"Example:\n  planetkube slice plan -f slice.yaml")
	var (
		cf   clusterFlags
		file string
	)
	cf.bind(fs)
	fs.StringVar(&file, "f", "", "The Slice's YAML file (- for standard input).")
	pos, help, err := parseArgs(fs, args)
	if help || err != nil {
		return err
	}
	if len(pos) != 0 || file == "" {
		return errors.New("give the slice's file with -f, and nothing else: planetkube slice plan -f slice.yaml")
	}
	s, err := readSlice(file)
	if err != nil {
		return err
	}
	var warnings warningLog
	k, ns, err := cf.connect(func(c *rest.Config) { c.WarningHandler = &warnings })
	if err != nil {
		return err
	}
	if s.Namespace == "" {
		s.Namespace = ns
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := dryRunApply(ctx, k, s); err != nil {
		return err
	}
	return printPlan(std.Out, s, warnings.list())
}

// readSlice reads the one Slice of a YAML file.
func readSlice(file string) (*planetv1.Slice, error) {
	var r io.Reader = os.Stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxPlanFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxPlanFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", file, maxPlanFile)
	}
	var out *planetv1.Slice
	docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	for {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", file, err)
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil || tm.Kind != "Slice" {
			continue // not a Slice (a Site, a comment ...)
		}
		s := &planetv1.Slice{}
		if err := yaml.UnmarshalStrict(doc, s); err != nil {
			return nil, fmt.Errorf("reading the Slice in %s: %w", file, err)
		}
		if out != nil {
			return nil, fmt.Errorf("%s holds more than one Slice: plan them one at a time", file)
		}
		out = s
	}
	if out == nil {
		return nil, fmt.Errorf("%s holds no Slice (kind: Slice, apiVersion: planetkube.io/v1alpha1)", file)
	}
	return out, nil
}

// dryRunApply creates the slice, or updates it where it exists, as a
// server-side dry run.
func dryRunApply(ctx context.Context, k client.Client, s *planetv1.Slice) error {
	err := k.Create(ctx, s.DeepCopy(), client.DryRunAll)
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	have := &planetv1.Slice{}
	if err := k.Get(ctx, client.ObjectKeyFromObject(s), have); err != nil {
		return err
	}
	have.Spec, have.Labels, have.Annotations = s.Spec, s.Labels, s.Annotations
	return k.Update(ctx, have, client.DryRunAll)
}

// printPlan prints the webhook's warnings: the whole, a table of the sites,
// why, and the peers.
func printPlan(out io.Writer, s *planetv1.Slice, warnings []string) error {
	var sites []shortfall.SiteCount
	var other []string
	for _, w := range warnings {
		if c, ok := shortfall.ParseSiteWarning(w); ok {
			sites = append(sites, c)
		} else if rest, ok := strings.CutPrefix(w, "planetkube: "); ok {
			other = append(other, rest)
		}
	}
	if len(sites) == 0 && len(other) == 0 {
		return fmt.Errorf("the API server said nothing of what slice %s/%s would get: PlanetKube's webhook (which answers dry runs) is not installed or did not answer", s.Namespace, s.Name)
	}
	var b bytes.Buffer
	if len(other) > 0 {
		fmt.Fprintln(&b, other[0])
	}
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tSELECTED\tWOULD RUN\tWOULD NOT (REASON COUNT)")
	for _, c := range sites {
		var why []string
		for _, r := range c.Reasons {
			why = append(why, fmt.Sprintf("%s %d", r.Reason, r.Count))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", c.Site, c.Selected, c.Running, strings.Join(why, ", "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, o := range other[min(1, len(other)):] {
		fmt.Fprintln(&b, o)
	}
	_, err := out.Write(b.Bytes())
	return err
}

// warningLog keeps the warnings the API server answers with.
type warningLog struct {
	mu  sync.Mutex
	all []string
}

// HandleWarningHeader implements rest.WarningHandler.
func (l *warningLog) HandleWarningHeader(code int, _ string, text string) {
	if code != 299 || text == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all = append(l.all, text)
}

func (l *warningLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.all...)
}
