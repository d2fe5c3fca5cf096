package emulator

import (
	"context"
	"fmt"
	"net"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// fakeNodeAnnotation marks the nodes kwok manages (value "fake").
	fakeNodeAnnotation = "kwok.x-k8s.io/node"
	// SiteLabel carries a node's site.
	SiteLabel = "planetkube.io/site"
	// nodeWorkers is how many nodes are created in parallel.
	nodeWorkers = 32
)

// siteRegions maps the default sites to regions; other sites get "region-<site>".
var siteRegions = map[string]string{
	"princeton": "us-east",
	"mit":       "us-east",
	"berkeley":  "us-west",
	"ethz":      "eu-central",
	"tokyo":     "ap-northeast",
}

// NodeName returns the name of the i-th fake node of site, e.g. "node-princeton-003".
func NodeName(site string, i int) string {
	return fmt.Sprintf("node-%s-%03d", site, i)
}

// RegionZone returns the topology region and zone of a site's nodes.
func RegionZone(site string) (region, zone string) {
	region, ok := siteRegions[site]
	if !ok {
		region = "region-" + site
	}
	return region, region + "-" + site
}

// AddNode creates a fake node of site that kwok manages: 32 CPUs, 256 GiB of
// memory, 1 TiB of ephemeral storage and room for 1000 pods.
func (c *Cluster) AddNode(ctx context.Context, name, site string) error {
	region, zone := RegionZone(site)
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("32"),
		corev1.ResourceMemory:           resource.MustParse("256Gi"),
		corev1.ResourcePods:             resource.MustParse("1000"),
		corev1.ResourceEphemeralStorage: resource.MustParse("1Ti"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{fakeNodeAnnotation: "fake"},
			Labels: map[string]string{
				SiteLabel:                  site,
				corev1.LabelTopologyRegion: region,
				corev1.LabelTopologyZone:   zone,
				corev1.LabelHostname:       name,
				corev1.LabelOSStable:       "linux",
				corev1.LabelArchStable:     "amd64",
				"type":                     "kwok",
			},
		},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: capacity,
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: c.nextNodeIP()},
				{Type: corev1.NodeHostName, Address: name},
			},
		},
	}
	if _, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating node %s: %w", name, err)
	}
	return nil
}

// nextNodeIP returns a distinct InternalIP in 10.128.0.0/10 for each new node.
func (c *Cluster) nextNodeIP() string {
	n := 0x0a800000 + c.nodeIPSeq.Add(1)
	return net.IPv4(byte(n>>24), byte(n>>16), byte(n>>8), byte(n)).String()
}

// DeleteNode deletes a node; a node that does not exist is not an error.
func (c *Cluster) DeleteNode(ctx context.Context, name string) error {
	err := c.Client.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting node %s: %w", name, err)
	}
	return nil
}

// createInitialNodes creates n nodes (default 50) spread round-robin over the
// sites, nodeWorkers at a time.
func (c *Cluster) createInitialNodes(ctx context.Context, n int) error {
	switch {
	case n == 0:
		n = 50
	case n < 0:
		n = 0
	}
	type job struct{ name, site string }
	jobs := make(chan job)
	errs := make(chan error, nodeWorkers)
	var wg sync.WaitGroup
	for range nodeWorkers {
		wg.Go(func() {
			for j := range jobs {
				if err := c.AddNode(ctx, j.name, j.site); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var firstErr error
feed:
	for i := range n {
		site := c.Sites[i%len(c.Sites)]
		j := job{NodeName(site, i/len(c.Sites)), site}
		select {
		case jobs <- j:
			c.NodeNames = append(c.NodeNames, j.name)
		case firstErr = <-errs:
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	close(errs)
	if firstErr == nil {
		firstErr = <-errs
	}
	return firstErr
}

// WaitNodesReady waits until at least n fake nodes are Ready. It fails early if
// a control-plane process exits.
func (c *Cluster) WaitNodesReady(ctx context.Context, n int) error {
	c.mu.Lock()
	procs := append([]*Process(nil), c.control...)
	c.mu.Unlock()
	interval := pollInterval
	if n > 100 { // listing a thousand nodes ten times a second would load the API server
		interval = 5 * pollInterval
	}
	ready := 0
	err := waitFor(ctx, fmt.Sprintf("%d nodes Ready", n), interval, procs, func(ctx context.Context) bool {
		// ResourceVersion "0" is served from the API server's watch cache.
		list, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{
			LabelSelector: "type=kwok", ResourceVersion: "0"})
		if err != nil {
			return false
		}
		ready = 0
		for i := range list.Items {
			if nodeReady(&list.Items[i]) {
				ready++
			}
		}
		return ready >= n
	})
	if err != nil {
		return fmt.Errorf("%w (%d Ready)", err, ready)
	}
	return nil
}

// nodeReady reports whether node has the Ready condition True.
func nodeReady(node *corev1.Node) bool {
	for _, cond := range node.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}
