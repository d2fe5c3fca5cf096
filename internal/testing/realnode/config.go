package realnode

import (
	"fmt"
	"strings"

	"github.com/planetkube/planetkube/internal/agent/memory"
)

// containerdConfig is containerd 2's configuration for one node: its own
// root, state and socket; the CRI plugin with the node's pause image pinned
// as the sandbox image, runc from $PATH with the cgroupfs driver, CNI from
// Debian's plugins and the node's conf folder; and oom_score_adj kept at
// containerd's own (root here lacks CAP_SYS_RESOURCE: a lower score fails
// every sandbox); the pods' network namespaces are mounted under its state,
// where the node's teardown finds them.
func containerdConfig(dir, socket, pauseImage, cniConfDir string) string {
	return fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = %[5]q

[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = [%[6]q]
    conf_dir = %[7]q
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
      SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
`, dir+"/root", dir+"/state", socket, socket+".ttrpc", pauseImage, CNIBinDir, cniConfDir)
}

// cniConfig is the node's pod network: a bridge that is the pods' gateway
// and masquerades what leaves the pod range, addresses from host-local, and
// portmap for hostPort.
func cniConfig(bridge, podCIDR, dataDir string) string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "planetkube-realnode",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": %q}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, bridge, podCIDR, dataDir)
}

// PodsMemory is the memory a real node gives its pods: the limit of its
// kubepods cgroup, and its allocatable memory less evictionHard's 100Mi.
// The node's capacity is the whole machine's (24 GiB here), which everything
// else on it shares, so the kubelet reserves the rest for the system
// (systemReserved) and, enforcing allocatable on pods, limits kubepods to
// this: what pods use can be measured against a mark of its own (the
// agent's --memory-source=pods) and filled in a test. It fits the chart's
// pods (the manager's two replicas request 128Mi each, the agent 64Mi) and
// the sample pools (2Gi per node reserved at princeton).
const PodsMemory = 3 << 30

// systemReserved is the kubelet's systemReserved memory that leaves
// PodsMemory to the pods of a machine with memTotal bytes (its
// /proc/meminfo MemTotal, the kubelet's capacity); none on a machine with
// less than a GiB beyond PodsMemory.
func systemReserved(memTotal uint64) string {
	if memTotal < PodsMemory+1<<30 {
		return ""
	}
	return fmt.Sprintf("systemReserved: {memory: %dKi}\n", (memTotal-PodsMemory)>>10)
}

// memTotal is the machine's MemTotal in bytes, 0 when unknown.
func memTotal() uint64 {
	m, err := memory.NodeMemInfo()
	if err != nil {
		return 0
	}
	return m.Total
}

// kubeletConfig is the KubeletConfiguration of one node: cgroup v1 allowed
// (failCgroupV1: false, the default since 1.35 refuses this host), the
// cgroupfs driver under a cgroup root of the node's own, x509 and webhook
// authentication and authorization (the API server's client certificate),
// no read-only port, no DNS of the host handed to pods, PodsMemory for the
// pods (the rest of the machine reserved for the system), and eviction and
// image garbage collection that the test run's disk use does not trigger.
func kubeletConfig(o kubeletOptions) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %q
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
%scontainerRuntimeEndpoint: unix://%s
address: %q
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %q}
authorization:
  mode: Webhook
podLogsDir: %q
resolvConf: ""
failSwapOn: false
serializeImagePulls: false
registerNode: true
maxPods: 110
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%%
  imagefs.available: 1%%
  nodefs.inodesFree: 1%%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
fileCheckFrequency: 0s
syncFrequency: 10s
nodeStatusUpdateFrequency: 5s
shutdownGracePeriod: 0s
`, o.CgroupRoot, systemReserved(memTotal()), o.Socket, o.NodeIP, o.CACert, o.PodLogsDir)
}

type kubeletOptions struct {
	CgroupRoot, Socket, NodeIP, CACert, PodLogsDir string
}

// kubeProxyConfig runs kube-proxy in iptables mode in the node's network
// namespace, masquerading all Service traffic; it leaves the conntrack
// sysctls alone (the agent's tests own them) and listens on the node's
// loopback only.
func kubeProxyConfig(kubeconfig, name, clusterCIDR string) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %q
hostnameOverride: %q
mode: iptables
clusterCIDR: %q
# Pods on one bridge reaching each other through a Service: without
# br_netfilter the reply skips conntrack's un-DNAT unless the request was
# masqueraded too.
iptables:
  masqueradeAll: true
conntrack:
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
`, kubeconfig, name, clusterCIDR)
}

// kubeconfig is a client configuration for server with a client certificate.
func kubeconfig(server, caCert, cert, key string) string {
	return strings.TrimLeft(fmt.Sprintf(`
apiVersion: v1
kind: Config
clusters:
- name: planetkube
  cluster: {server: %q, certificate-authority: %q}
users:
- name: node
  user: {client-certificate: %q, client-key: %q}
contexts:
- name: planetkube
  context: {cluster: planetkube, user: node}
current-context: planetkube
`, server, caCert, cert, key), "\n")
}
