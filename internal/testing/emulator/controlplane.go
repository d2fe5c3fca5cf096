package emulator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// pollInterval is how often readiness conditions are checked.
const pollInterval = 100 * time.Millisecond

// binaries are the programs a cluster needs in its BinDir.
var binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}

// FindBinDir returns $PLANETKUBE_BIN if set, else the bin folder next to the
// go.mod found by walking up from the working directory.
func FindBinDir() (string, error) {
	if dir := os.Getenv("PLANETKUBE_BIN"); dir != "" {
		return dir, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding bin dir: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "bin"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("finding bin dir: no go.mod above the working directory; set PLANETKUBE_BIN")
		}
		dir = parent
	}
}

// CheckBinaries returns an error naming what binDir lacks of the binaries and
// kwok stage manifests a cluster needs (build them with hack/tools/build.sh).
func CheckBinaries(binDir string) error {
	var missing []string
	for _, b := range binaries {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			missing = append(missing, b)
		}
	}
	if stages, _ := filepath.Glob(filepath.Join(binDir, "kwok-stages", "*.yaml")); len(stages) == 0 {
		missing = append(missing, "kwok-stages/*.yaml")
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing in %s: %s (run hack/tools/build.sh)", binDir, strings.Join(missing, ", "))
	}
	return nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// freePorts returns n distinct free loopback ports.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for len(ports) < n {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		if !containsInt(ports, p) {
			ports = append(ports, p)
		}
	}
	return ports, nil
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// waitFor polls cond every interval until it is true, ctx ends, or one of procs exits.
func waitFor(ctx context.Context, what string, interval time.Duration, procs []*Process, cond func(context.Context) bool) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for _, p := range procs {
			if p.Exited() {
				return fmt.Errorf("waiting for %s: %w", what, p.exitError())
			}
		}
		if cond(ctx) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
}

// portAttempts is how often a server is started on fresh ports when the
// ports it was given were taken meanwhile.
const portAttempts = 3

// retryPorts runs start until it succeeds, fails for another reason than a
// port clash, or has been tried portAttempts times.
func retryPorts(start func() error) error {
	var err error
	for range portAttempts {
		if err = start(); !errors.Is(err, errPortInUse) {
			return err
		}
	}
	return err
}

// startEtcd starts etcd on free loopback ports and waits until it is healthy.
func (c *Cluster) startEtcd(ctx context.Context) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	p, err := c.startComponent("etcd", []string{
		"--name=default",
		"--data-dir=" + filepath.Join(c.WorkDir, "etcd"),
		"--listen-client-urls=" + client, "--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=default=" + peer,
		"--unsafe-no-fsync", "--log-level=warn",
	})
	if err != nil {
		return err
	}
	c.etcdURL = client
	return waitFor(ctx, "etcd health", pollInterval, []*Process{p}, func(ctx context.Context) bool {
		return httpOK(ctx, client+"/health", `"health":"true"`)
	})
}

// httpOK reports whether GET url answers 200 with a body containing want.
func httpOK(ctx context.Context, url, want string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK && strings.Contains(string(body), want)
}

// startAPIServer starts kube-apiserver, writes the admin kubeconfig and waits
// until /readyz answers ok.
func (c *Cluster) startAPIServer(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	p, err := c.startComponent("kube-apiserver", append([]string{
		"--etcd-servers=" + c.etcdURL,
		"--cert-dir=" + filepath.Join(c.WorkDir, "apiserver"),
		"--tls-cert-file=" + c.pki.ServingCert, "--tls-private-key-file=" + c.pki.ServingKey,
		"--client-ca-file=" + c.pki.CACert,
		"--secure-port=" + strconv.Itoa(port),
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--endpoint-reconciler-type=none", // loopback addresses are refused as endpoints
		"--authorization-mode=Node,RBAC",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + c.pki.SAPub,
		"--service-account-signing-key-file=" + c.pki.SAKey,
		"--allow-privileged=true",
		"--max-requests-inflight=1000", "--max-mutating-requests-inflight=500",
		"--enable-priority-and-fairness=false",
	}, c.realNodeAPIServerArgs()...))
	if err != nil {
		return err
	}
	host := "https://127.0.0.1:" + strconv.Itoa(port)
	if err := c.writeKubeconfig(host); err != nil {
		return err
	}
	return waitFor(ctx, "kube-apiserver /readyz", pollInterval, []*Process{p}, func(ctx context.Context) bool {
		body, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(body) == "ok"
	})
}

// writeKubeconfig writes the admin kubeconfig for host and sets Config and Client.
func (c *Cluster) writeKubeconfig(host string) error {
	read := func(path string) ([]byte, error) { return os.ReadFile(path) }
	ca, err := read(c.pki.CACert)
	if err != nil {
		return fmt.Errorf("reading CA: %w", err)
	}
	cert, err := read(c.pki.AdminCert)
	if err != nil {
		return fmt.Errorf("reading admin certificate: %w", err)
	}
	key, err := read(c.pki.AdminKey)
	if err != nil {
		return fmt.Errorf("reading admin key: %w", err)
	}
	const name = "planetkube-emulator"
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: host, CertificateAuthorityData: ca}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: "admin"}
	cfg.CurrentContext = name
	c.Kubeconfig = filepath.Join(c.WorkDir, "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, c.Kubeconfig); err != nil {
		return fmt.Errorf("writing kubeconfig: %w", err)
	}
	rc, err := clientcmd.NewDefaultClientConfig(*cfg, nil).ClientConfig()
	if err != nil {
		return fmt.Errorf("building admin config: %w", err)
	}
	rc.QPS, rc.Burst = 1000, 2000
	c.Config = rc
	if c.Client, err = kubernetes.NewForConfig(rc); err != nil {
		return fmt.Errorf("building admin client: %w", err)
	}
	return nil
}

// kwokConfiguration sets kwok's parallelism for a thousand emulated kubelets.
const kwokConfiguration = `apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  podPlayStageParallelism: 32
  nodePlayStageParallelism: 8
`

// startComponents starts kube-controller-manager, kube-scheduler and kwok
// against the running API server; they need not wait for each other.
func (c *Cluster) startComponents(kcmArgs []string) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	kubeconfig := "--kubeconfig=" + c.Kubeconfig
	kcm := append([]string{
		kubeconfig,
		"--controllers=*,-serviceaccount-token",
		// kwok heartbeats each node every 20-45 s; with a thousand nodes on a
		// few shared CPUs a heartbeat can lag past the default 50 s grace, and
		// the node lifecycle controller then marks the node Unknown and its
		// pods Ready=False, which kwok, unlike a kubelet, never turns back.
		// An emulated node fails only when a test makes it (the node-not-ready
		// stage), so lagging heartbeats get minutes, not seconds.
		"--node-monitor-grace-period=5m",
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--service-account-private-key-file=" + c.pki.SAKey,
		"--root-ca-file=" + c.pki.CACert,
		"--cluster-signing-cert-file=" + c.pki.CACert, "--cluster-signing-key-file=" + c.pki.CAKey,
		"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(ports[0]),
		"--cert-dir=" + filepath.Join(c.WorkDir, "kube-controller-manager"),
	}, c.realNodeControllerManagerArgs()...)
	kcm = append(kcm, kcmArgs...)
	if _, err := c.startComponent("kube-controller-manager", kcm); err != nil {
		return err
	}
	if _, err := c.startComponent("kube-scheduler", []string{
		kubeconfig,
		"--leader-elect=false",
		"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(ports[1]),
		"--cert-dir=" + filepath.Join(c.WorkDir, "kube-scheduler"),
	}); err != nil {
		return err
	}
	stages, err := filepath.Glob(filepath.Join(c.BinDir, "kwok-stages", "*.yaml"))
	if err != nil {
		return fmt.Errorf("listing kwok stages: %w", err)
	}
	kwok := []string{
		kubeconfig,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=" + fakeNodeAnnotation + "=fake",
		"--cidr=10.0.0.1/16",
		"--node-ip=10.255.0.1",
	}
	// Real nodes each run their own kubelet; kwok plays them all, by
	// default with 4 pod workers, which would make it, not the API server,
	// the bottleneck of every pod benchmark.
	kwokConfig := filepath.Join(c.WorkDir, "kwok-config.yaml")
	if err := os.WriteFile(kwokConfig, []byte(kwokConfiguration), 0o600); err != nil {
		return fmt.Errorf("writing kwok configuration: %w", err)
	}
	kwok = append(kwok, "--config="+kwokConfig)
	for _, s := range stages {
		kwok = append(kwok, "--config="+s)
	}
	// HOME keeps kwok from reading a ~/.kwok/kwok.yaml of the user.
	_, err = c.startComponent("kwok", kwok, "HOME="+filepath.Join(c.WorkDir, "kwok"))
	return err
}

// ImpersonatingKubeconfig writes a kubeconfig that authenticates as the admin
// and acts as user (impersonation), and returns its path.
func (c *Cluster) ImpersonatingKubeconfig(user string) (string, error) {
	cfg, err := clientcmd.LoadFromFile(c.Kubeconfig)
	if err != nil {
		return "", fmt.Errorf("reading the admin kubeconfig: %w", err)
	}
	for _, a := range cfg.AuthInfos {
		a.Impersonate = user
	}
	safe := strings.Map(func(r rune) rune {
		if r == ':' || r == '/' {
			return '_'
		}
		return r
	}, user)
	path := filepath.Join(c.WorkDir, "kubeconfig-"+safe)
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return "", fmt.Errorf("writing kubeconfig for %s: %w", user, err)
	}
	return path, nil
}
