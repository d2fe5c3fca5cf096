package bench

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/testing/emulator"
	"github.com/planetkube/planetkube/internal/ticket"
)

const (
	redeemHeading = "## Ticket redemption (issue 9)"
	// redeemTickets sliver tickets, each for a 1-node slice.
	redeemTickets = 1000
)

var redeemPairs = flag.Int("redeem-pairs", 3, "alternating floor/tickets pairs of the redemption benchmark")

// TestTicketRedeemBench measures redeeming 1,000 sliver tickets for 1-node
// slices (one per node) until every sliver is Running, against the floor of
// 1,000 bare pods (one per node), in alternating pairs on one emulated
// cluster, and writes its section of the file named by -bench-out.
func TestTicketRedeemBench(t *testing.T) {
	if *benchOut == "" {
		t.Skip("Skipping the benchmarks: no -bench-out file given (run `make bench`)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	c := startCluster(ctx, t, findBinDir(t), *benchNodes)
	if err := c.InstallPlanetKube(ctx); err != nil {
		t.Fatal(err)
	}
	pprofPort, err := freeLocalPort()
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := c.StartPlanetKube(ctx, withManagerArgs("--pprof-bind-address=127.0.0.1:"+strconv.Itoa(pprofPort))...)
	if err != nil {
		t.Fatalf("Starting the manager: %v", err)
	}
	prof := profiler{port: pprofPort, dir: filepath.Join(c.LogDir, "profiles")}
	if err := os.MkdirAll(prof.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	k8s, bare, err := benchClients(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	issuer := ticket.NewSigner("ple", ed25519.NewKeyFromSeed([]byte(strings.Repeat("b", ed25519.SeedSize))))
	if err := k8s.Create(ctx, &planetv1.Authority{
		ObjectMeta: metav1.ObjectMeta{Name: issuer.Authority},
		Spec: planetv1.AuthoritySpec{Keys: []planetv1.AuthorityKey{{
			ID: issuer.KeyID, PublicKey: ticket.EncodePublicKey(issuer.Key.Public().(ed25519.PublicKey)),
		}}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := updateSite(ctx, k8s, func(s *planetv1.SiteSpec) { s.TrustedAuthorities = []string{"plc", issuer.Authority} }); err != nil {
		t.Fatal(err)
	}
	nodes := c.NodeNames
	if len(nodes) > redeemTickets {
		nodes = nodes[:redeemTickets]
	}
	var floor, tickets []timing
	var firsts []string
	// The last pair's writes, from the API server's counts, and the
	// manager's CPU profile over its redemptions.
	var floorWrites, ticketWrites map[string]int
	var cpuTop string
	cpuSeconds := 60
	for pair := range *redeemPairs {
		last := pair == *redeemPairs-1
		runFloor := func() error {
			ns := fmt.Sprintf("redeem-floor-%d", pair)
			if err := createNamespace(ctx, c.Client, ns); err != nil {
				return err
			}
			before, err := apiserverRequests(ctx, c)
			if err != nil {
				return err
			}
			tm, err := measure(ctx, t, c.Client, phase{name: fmt.Sprintf("Floor %d", pair), namespace: ns, start: func(ctx context.Context) error {
				return createManyFloorPods(ctx, bare, ns, nodes, 1)
			}}, len(nodes), 10*time.Minute)
			floor = append(floor, tm)
			if err != nil {
				return err
			}
			if last {
				if floorWrites, err = writesSince(ctx, c, before); err != nil {
					return err
				}
			}
			return deletePodsAndWait(ctx, t, c.Client, []string{ns})
		}
		runTickets := func() error {
			tokens, err := signTickets(issuer, pair, nodes)
			if err != nil {
				return err
			}
			before, err := apiserverRequests(ctx, c)
			if err != nil {
				return err
			}
			profiled := make(chan error, 1)
			if last {
				go func() {
					file, err := prof.fetch(ctx, "profile?seconds="+strconv.Itoa(cpuSeconds), "redeem-cpu.pprof")
					if err == nil {
						cpuTop, err = prof.top(ctx, file, "", 20, "-cum")
					}
					profiled <- err
				}()
			}
			tm, err := measure(ctx, t, c.Client, phase{
				name: fmt.Sprintf("Tickets %d", pair), selector: planetv1.LabelSite + "=" + naming.AuthorityNamespace(issuer.Authority),
				start: func(ctx context.Context) error { return applyTickets(ctx, k8s, pair, tokens) },
			}, len(nodes), 10*time.Minute)
			tickets = append(tickets, tm)
			if err != nil {
				return err
			}
			// The next profile covers about as long as this redemption took.
			cpuSeconds = int(tm.running.Seconds()) + 5
			if last {
				if ticketWrites, err = writesSince(ctx, c, before); err != nil {
					return err
				}
				if err := <-profiled; err != nil {
					return err
				}
			}
			return deleteRedeemed(ctx, t, k8s, c.Client, issuer.Authority)
		}
		order, first := []func() error{runFloor, runTickets}, "floor"
		if pair%2 == 1 {
			order, first = []func() error{runTickets, runFloor}, "tickets"
		}
		firsts = append(firsts, first)
		for _, run := range order {
			if err := run(); err != nil {
				t.Fatal(err)
			}
		}
	}
	reportManagerErrors(t, mgr)

	var ratios []float64
	var b strings.Builder
	m := describeMachine()
	fmt.Fprintf(&b, "Command: `make bench` (alone: `go test ./test/bench/ -run TestTicketRedeemBench -v -timeout 60m -args -bench-out=$PWD/docs/benchmarks.md`). Date: %s. Machine: %d CPUs (%s), Linux %s, %s. One emulated cluster of %d kwok nodes (site `%s`, which trusts `ple`).\n\n",
		m.date.Format("2006-01-02 15:04 MST"), m.cpus, m.cpuModel, m.kernel, m.goVersion, len(c.NodeNames), benchSite)
	fmt.Fprintf(&b, "**%d sliver tickets** signed by `ple`, each for a 1-node slice (one per node), applied as Tickets from %d goroutines, until every sliver is Running, "+
		"against the floor of %d bare pods (one per node) created by client-go with no rate limit from %d goroutines. Each redemption verifies the token, records its jti, makes the slice "+
		"(its authority's namespace, then the slice namespace, keys Secret, users' RoleBinding and sliver). The two sides alternate over %d pairs.\n\n",
		len(nodes), floorWorkers, len(nodes), floorWorkers, *redeemPairs)
	b.WriteString("| Pair | First | Floor: all Running | Tickets: all Running | Tickets / floor |\n|---:|---|---:|---:|---:|\n")
	for i := range floor {
		r := tickets[i].running.Seconds() / floor[i].running.Seconds()
		ratios = append(ratios, r)
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %.2f× |\n", i+1, firsts[i], seconds(floor[i].running), seconds(tickets[i].running), r)
	}
	med, lo, hi := medianRange(ratios)
	fmt.Fprintf(&b, "\nTickets / floor, all Running: **median %.2f×** (range %.2f×–%.2f× over %d pairs).\n", med, lo, hi, len(ratios))
	fmt.Fprintf(&b, "\n**Writes** of the last pair, from the API server's request counts (every client's: kwok's pod status updates and the benchmark's own creates included), per sliver:\n\n%s", writesTable(floorWrites, ticketWrites, len(nodes)))
	fmt.Fprintf(&b, "\n**Where the manager's time goes** over the last pair's redemptions (`--pprof-bind-address`, `go tool pprof -top -cum`):\n\n```\n%s\n```\n", cpuTop)
	b.WriteString("\nA redeemed ticket costs about ten API writes of the manager's where a floor pod costs one (the jti record, the Slice and its status, the Ticket's status, the slice namespace and its keys hash, the keys Secret, the users' RoleBinding, the sliver, events), after a dry run, and kube-controller-manager adds two to each new namespace (its ServiceAccount and `kube-root-ca.crt`); tickets are redeemed 16 at a time (`--ticket-workers`) and their slices placed 4 at a time (`--slice-workers`).\n")
	if err := writeSection(*benchOut, redeemHeading, b.String()); err != nil {
		t.Fatal(err)
	}
	t.Logf("Wrote %s:\n%s", *benchOut, b.String())
}

// writesSince returns the API server's write requests since before (counts
// as apiserverRequests gives them), by verb and resource.
func writesSince(ctx context.Context, c *emulator.Cluster, before map[string]int) (map[string]int, error) {
	after, err := apiserverRequests(ctx, c)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for k, v := range after {
		verb, rest, _ := strings.Cut(k, " ")
		resource, _, _ := strings.Cut(rest, " ")
		if d := v - before[k]; d > 0 && verb != "GET" && verb != "LIST" && verb != "WATCH" {
			out[verb+" "+resource] += d
		}
	}
	return out, nil
}

// writesTable is a markdown table of the floor's and the tickets' writes
// per sliver, by verb and resource.
func writesTable(floor, tickets map[string]int, n int) string {
	keys := slices.Sorted(maps.Keys(tickets))
	for k := range floor {
		if _, ok := tickets[k]; !ok {
			keys = append(keys, k)
		}
	}
	var b strings.Builder
	b.WriteString("| Request | Floor, per pod | Tickets, per sliver |\n|---|---:|---:|\n")
	var ft, tt, fo, to int
	for _, k := range keys {
		if 4*floor[k] < n && 4*tickets[k] < n {
			fo, to = fo+floor[k], to+tickets[k] // under 0.25 a sliver on both sides
		} else {
			fmt.Fprintf(&b, "| `%s` | %.2f | %.2f |\n", k, float64(floor[k])/float64(n), float64(tickets[k])/float64(n))
		}
		ft, tt = ft+floor[k], tt+tickets[k]
	}
	fmt.Fprintf(&b, "| every other request (each under 0.25 a sliver) | %.2f | %.2f |\n", float64(fo)/float64(n), float64(to)/float64(n))
	fmt.Fprintf(&b, "| **all writes** | **%.2f** | **%.2f** |\n", float64(ft)/float64(n), float64(tt)/float64(n))
	return b.String()
}

// signTickets signs one sliver ticket per node, for slice
// ple.bench.r<pair>-<i> on that node only.
func signTickets(s ticket.Signer, pair int, nodes []string) ([]string, error) {
	now := time.Now()
	out := make([]string, len(nodes))
	for i, n := range nodes {
		tok, err := s.Issue(ticket.Claims{
			Audience: "plc", ID: fmt.Sprintf("bench-%d-%d", pair, i), IssuedAt: now.Unix(), Expiry: now.Add(24 * time.Hour).Unix(),
			Sliver: &ticket.SliverGrant{
				Slice: fmt.Sprintf("ple.%s.r%d-%04d", benchSite, pair, i), Description: "redemption benchmark",
				Template: planetv1.SliverTemplate{Image: pauseImage},
				Nodes:    planetv1.SliceNodes{NodeSelection: planetv1.NodeSelection{Names: []string{n}}},
			},
		})
		if err != nil {
			return nil, err
		}
		out[i] = tok
	}
	return out, nil
}

// applyTickets creates the Tickets in the site's namespace from
// floorWorkers goroutines.
func applyTickets(ctx context.Context, k8s client.Client, pair int, tokens []string) error {
	return inParallel(len(tokens), func(i int) error {
		return k8s.Create(ctx, &planetv1.Ticket{
			ObjectMeta: metav1.ObjectMeta{Namespace: benchSite, Name: fmt.Sprintf("r%d-%04d", pair, i)},
			Spec:       planetv1.TicketSpec{Token: tokens[i]},
		})
	})
}

// deleteRedeemed deletes the Tickets and the foreign slices, then waits
// until no sliver of the authority is left (deleting the slivers with no
// grace period, as the floor's cleanup does). Tickets and slices are
// deleted one by one from a few goroutines, as kubectl delete --all does:
// one delete-collection of 1,000 Tickets, each deletion waiting on the
// API server busy with the releases that the deletions before it set off,
// outlasted the API server's 60 s request timeout.
func deleteRedeemed(ctx context.Context, t *testing.T, k8s client.Client, cs kubernetes.Interface, authority string) error {
	began := time.Now()
	tickets := &planetv1.TicketList{}
	if err := k8s.List(ctx, tickets, client.InNamespace(benchSite)); err != nil {
		return err
	}
	if err := deleteEach(ctx, k8s, len(tickets.Items), func(i int) client.Object { return &tickets.Items[i] }); err != nil {
		return err
	}
	t.Logf("Deleted %d Tickets in %s", len(tickets.Items), time.Since(began).Round(time.Millisecond))
	slices := &planetv1.SliceList{}
	if err := k8s.List(ctx, slices, client.InNamespace(naming.AuthorityNamespace(authority))); err != nil {
		return err
	}
	if err := deleteEach(ctx, k8s, len(slices.Items), func(i int) client.Object { return &slices.Items[i] }); err != nil {
		return err
	}
	selector := planetv1.LabelSite + "=" + naming.AuthorityNamespace(authority)
	err := wait.PollUntilContextTimeout(ctx, time.Second, 15*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: "0"})
		if err != nil {
			return false, nil
		}
		seen := map[string]bool{}
		for _, p := range pods.Items {
			if !seen[p.Namespace] {
				seen[p.Namespace] = true
				_ = cs.CoreV1().Pods(p.Namespace).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}, metav1.ListOptions{LabelSelector: selector})
			}
		}
		left := &planetv1.SliceList{}
		if err := k8s.List(ctx, left, client.InNamespace(naming.AuthorityNamespace(authority))); err != nil {
			return false, nil
		}
		return len(pods.Items) == 0 && len(left.Items) == 0, nil
	})
	t.Logf("Cleanup took %s", time.Since(began).Round(time.Second))
	return err
}

// deleteEach deletes n objects, each in its own request, from 8
// goroutines; one already gone is not an error, and a request that fails
// is tried again (up to 5 times).
func deleteEach(ctx context.Context, k8s client.Client, n int, obj func(i int) client.Object) error {
	return runParallel(8, n, func(i int) error {
		return retry.OnError(retry.DefaultBackoff, func(err error) bool { return !apierrors.IsNotFound(err) }, func() error {
			return client.IgnoreNotFound(k8s.Delete(ctx, obj(i)))
		})
	})
}
