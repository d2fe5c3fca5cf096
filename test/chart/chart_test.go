// Package chart tests the Helm chart (charts/planetkube) as helm renders it,
// with the pinned helm of hack/tools: every values file of ci/ renders and
// lints, the RBAC it renders is the RBAC generated from the markers, the
// namespaces carry the Pod Security level their workloads need, and the
// schema refuses bad values with a message naming the field.
package chart

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

var (
	root  = filepath.Join("..", "..")
	chart = filepath.Join(root, "charts", "planetkube")
)

// helm runs the pinned helm binary.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := filepath.Join(root, "bin", "helm")
	if dir := os.Getenv("PLANETKUBE_BIN"); dir != "" {
		bin = filepath.Join(dir, "helm")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no helm at %s: run `make tools`", bin)
	}
	var out, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	if err != nil {
		err = errors.New(strings.TrimSpace(stderr.String()))
	}
	return out.String(), err
}

type object = map[string]any

// render renders the chart into the release namespace planetkube-system.
func render(t *testing.T, args ...string) []object {
	t.Helper()
	out, err := helm(t, append([]string{"template", "planetkube", chart, "--namespace", "planetkube-system"}, args...)...)
	if err != nil {
		t.Fatalf("helm template %v: %v", args, err)
	}
	return docs(t, out)
}

// docs splits a multi-document YAML stream into objects.
func docs(t *testing.T, s string) []object {
	t.Helper()
	var out []object
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(s, -1) {
		var o object
		if err := yaml.Unmarshal([]byte(d), &o); err != nil {
			t.Fatalf("rendered YAML does not parse: %v\n%s", err, d)
		}
		if o != nil {
			out = append(out, o)
		}
	}
	return out
}

func str(o object, path ...string) string {
	var v any = o
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = m[p]
	}
	s, _ := v.(string)
	return s
}

// find returns the rendered object of a kind and name.
func find(objs []object, kind, name string) object {
	for _, o := range objs {
		if o["kind"] == kind && str(o, "metadata", "name") == name {
			return o
		}
	}
	return nil
}

func TestLintAndRenderEveryValuesFile(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(chart, "ci", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no values files in ci/: %v", err)
	}
	for _, f := range append([]string{""}, files...) {
		args := []string{"lint", "--strict", chart}
		if f != "" {
			args = append(args, "-f", f)
		}
		if out, err := helm(t, args...); err != nil {
			t.Errorf("helm %v: %v\n%s", args, err, out)
		}
		if f != "" {
			if objs := render(t, "-f", f); len(objs) == 0 {
				t.Errorf("%s renders nothing", f)
			}
		}
	}
}

// The chart's RBAC is the generated RBAC: the same rules, in the release's
// namespace.
func TestRBACIsTheGeneratedRBAC(t *testing.T) {
	objs := render(t, "--namespace", "site-a")
	for _, file := range []string{"config/rbac/role.yaml", "config/rbac/user_roles.yaml", "config/rbac/metrics_reader.yaml", "config/agent/role.yaml"} {
		b, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range docs(t, string(b)) {
			name := str(want, "metadata", "name")
			got := find(objs, want["kind"].(string), name)
			if got == nil {
				t.Errorf("%s %s of %s is not rendered", want["kind"], name, file)
				continue
			}
			if !reflect.DeepEqual(got["rules"], want["rules"]) {
				t.Errorf("%s %s: the chart's rules differ from %s", want["kind"], name, file)
			}
			if ns := str(want, "metadata", "namespace"); ns != "" && str(got, "metadata", "namespace") != "site-a" {
				t.Errorf("%s %s is in %q, not the release namespace", want["kind"], name, str(got, "metadata", "namespace"))
			}
		}
	}
}

func TestNamespacesAndWorkloads(t *testing.T) {
	objs := render(t)
	agentNS := find(objs, "Namespace", "planetkube-agent")
	if agentNS == nil || str(agentNS, "metadata", "labels", "pod-security.kubernetes.io/enforce") != "privileged" {
		t.Errorf("the agents' namespace is missing or not Pod Security privileged: %v", agentNS)
	}
	dep := find(objs, "Deployment", "planetkube-manager")
	if dep == nil {
		t.Fatal("no manager Deployment")
	}
	if r := dep["spec"].(object)["replicas"]; r != 2.0 {
		t.Errorf("manager replicas = %v, want 2 (leader election)", r)
	}
	args := dep["spec"].(object)["template"].(object)["spec"].(object)["containers"].([]any)[0].(object)["args"].([]any)
	for _, want := range []string{"--leader-elect", "--leader-elect-namespace=planetkube-system", "--webhook-cert-mode=self",
		"--webhook-configuration=planetkube-validating-webhooks", "--agent-namespace=planetkube-agent", "--authority=plc",
		"--peers-file=/etc/planetkube/peers/peers.yaml"} { // an empty list too: dropping the last peer deletes it
		if !slices.Contains(args, any(want)) {
			t.Errorf("manager args %v lack %s", args, want)
		}
	}
	vwc := find(objs, "ValidatingWebhookConfiguration", "planetkube-validating-webhooks")
	if vwc == nil {
		t.Fatal("no ValidatingWebhookConfiguration under the chart's name")
	}
	for _, w := range vwc["webhooks"].([]any) {
		w := w.(object)
		if w["failurePolicy"] != "Ignore" || str(w, "clientConfig", "service", "name") != "planetkube-webhook" || str(w, "clientConfig", "service", "namespace") != "planetkube-system" {
			t.Errorf("webhook %s: failurePolicy %v, service %v", w["name"], w["failurePolicy"], w["clientConfig"])
		}
	}
	for _, crd := range []string{"slices.planetkube.io", "sites.planetkube.io", "resourcepools.planetkube.io", "tickets.planetkube.io", "authorities.planetkube.io"} {
		o := find(objs, "CustomResourceDefinition", crd)
		if o == nil || str(o, "metadata", "annotations", "helm.sh/resource-policy") != "keep" {
			t.Errorf("CRD %s missing or not kept on uninstall", crd)
		}
	}
	if o := find(render(t, "--set", "crds.keep=false"), "CustomResourceDefinition", "slices.planetkube.io"); str(o, "metadata", "annotations", "helm.sh/resource-policy") != "" {
		t.Error("crds.keep=false still keeps the CRDs")
	}
	trusted := find(render(t, "--set", "trust.default={plc,ple}"), "Deployment", "planetkube-manager")
	if args := trusted["spec"].(object)["template"].(object)["spec"].(object)["containers"].([]any)[0].(object)["args"].([]any); !slices.Contains(args, any("--default-trusted-authorities=plc,ple")) {
		t.Errorf("trust.default does not reach the manager: %v", args)
	}
	peered := render(t, "-f", filepath.Join(chart, "ci", "peers-values.yaml"))
	cm := find(peered, "ConfigMap", "planetkube-peers")
	if cm == nil || !strings.Contains(str(cm, "data", "peers.yaml"), "name: ple") {
		t.Errorf("peers do not reach the manager's ConfigMap: %v", cm)
	}
	if a := find(peered, "Deployment", "planetkube-manager")["spec"].(object)["template"].(object)["spec"].(object)["containers"].([]any)[0].(object)["args"].([]any); !slices.Contains(a, any("--peers-file=/etc/planetkube/peers/peers.yaml")) {
		t.Errorf("the manager is not given the peers: %v", a)
	}
	if find(render(t, "--set", "nodeAgent.enabled=false"), "DaemonSet", "planetkube-node-agent") != nil {
		t.Error("nodeAgent.enabled=false still renders the agent")
	}
	agentArgs := func(objs []object) []any {
		ds := find(objs, "DaemonSet", "planetkube-node-agent")
		return ds["spec"].(object)["template"].(object)["spec"].(object)["containers"].([]any)[0].(object)["args"].([]any)
	}
	if a := agentArgs(objs); slices.Contains(a, any("--bandwidth")) {
		t.Errorf("bandwidth shaping is on by default: %v", a)
	}
	operated := render(t, "--set", "operator.name=PlanetLab Europe: #1", "--set", "operator.url=https://planet-lab.eu", "--set", "operator.abuseContact=abuse@planet-lab.eu")
	managerArgs := find(operated, "Deployment", "planetkube-manager")["spec"].(object)["template"].(object)["spec"].(object)["containers"].([]any)[0].(object)["args"].([]any)
	for _, args := range [][]any{agentArgs(operated), managerArgs} {
		for _, want := range []string{"--operator-name=PlanetLab Europe: #1", "--operator-url=https://planet-lab.eu", "--abuse-contact=abuse@planet-lab.eu"} {
			if !slices.Contains(args, any(want)) {
				t.Errorf("args %v lack %s", args, want)
			}
		}
	}
	if a := agentArgs(objs); slices.ContainsFunc(a, func(v any) bool { return strings.HasPrefix(v.(string), "--operator") }) {
		t.Errorf("operator flags without operator values: %v", a)
	}
	if a := agentArgs(objs); !slices.Contains(a, any("--memory-source=node")) {
		t.Errorf("the memory watchdog does not measure the node by default: %v", a)
	}
	if a := agentArgs(render(t, "--set", "nodeAgent.memoryWatchdog.source=pods")); !slices.Contains(a, any("--memory-source=pods")) {
		t.Errorf("memoryWatchdog.source=pods does not reach the agent: %v", a)
	}
	// Off, the agent is still told the uplink: it removes the shaping an
	// earlier agent left there.
	if a := agentArgs(render(t, "--set", "nodeAgent.bandwidth.uplink=eth1")); !slices.Contains(a, any("--bandwidth-uplink=eth1")) || slices.Contains(a, any("--bandwidth")) {
		t.Errorf("bandwidth off with uplink eth1: agent args %v, want --bandwidth-uplink=eth1 and no --bandwidth", a)
	}
	shaped := agentArgs(render(t, "--set", "nodeAgent.bandwidth.enabled=true", "--set", "nodeAgent.bandwidth.exempt={192.0.2.0/24}", "--set", "nodeAgent.bandwidth.uplink=eth1"))
	for _, want := range []string{"--bandwidth", "--bandwidth-uplink=eth1", "--bandwidth-node-cap=1000000000", "--bandwidth-budget=10800000000",
		"--bandwidth-threshold=0.8", "--bandwidth-exempt=192.0.2.0/24", "--bandwidth-exempt-budget=32400000000", "--bandwidth-min-rate=1000"} {
		if !slices.Contains(shaped, any(want)) {
			t.Errorf("agent args %v lack %s", shaped, want)
		}
	}
}

// The schema refuses bad values, and helm's message names the field (as
// a JSON pointer).
func TestSchemaRefusesBadValues(t *testing.T) {
	for _, c := range []struct {
		set, field string
	}{
		{"authority.name=PLC", "/authority/name"},
		{"authority.name=plc_japan", "/authority/name"},
		{"manager.replicas=0", "/manager/replicas"},
		{"webhooks.certificates=vault", "/webhooks/certificates"},
		{"webhooks.certificates=cert-manager", "certManager"},
		{"nodeAgent.lookupPort=70000", "/nodeAgent/lookupPort"},
		{"nodeAgent.lookupUnlimited[0]=everyone", "/nodeAgent/lookupUnlimited/0"},
		{"nodeAgent.retention=a week", "/nodeAgent/retention"},
		{"nodeAgent.bandwidth.threshold=1.5", "/nodeAgent/bandwidth/threshold"},
		{"nodeAgent.memoryWatchdog.source=kubepods", "/nodeAgent/memoryWatchdog/source"},
		{"operator.url=javascript:alert(1)", "/operator/url"},
		{"operator.abuseContact=call us", "/operator/abuseContact"},
		{"nodeAgent.bandwidth.nodeCap=0", "/nodeAgent/bandwidth/nodeCap"},
		{"manager.extraArgs[0]=rm -rf", "/manager/extraArgs/0"},
		{"nosuchvalue=1", "nosuchvalue"},
		{"trust.default={plc,Ple}", "/trust/default/1"},
		{"peers[0].name=ple", "/peers/0"},
		{"metrics.managerPort=9443", "/metrics/managerPort"},
		{"peers[0].name=ple,peers[0].keys[0].id=XYZ,peers[0].keys[0].publicKey=abc", "/peers/0/keys/0"},
		{"nodeAgent.publicPage.port=0", "/nodeAgent/publicPage/port"},
		{"nodeAgent.publicPage.port=65536", "/nodeAgent/publicPage/port"},
		{"nodeAgent.publicPage.enabled=yes", "/nodeAgent/publicPage/enabled"},
		{"lookup.service.type=ExternalName", "/lookup/service/type"},
		{"lookup.trustedProxies[0]=ingress-nginx", "/lookup/trustedProxies/0"},
		{"nodeAgent.ipfix.collector=collector.example:4739", "/nodeAgent/ipfix/collector"},
		{"archive.retention=90d", "/archive/retention"},
		{"archive.storage.size=lots", "/archive/storage/size"},
		{"archive.agentPort=0", "/archive/agentPort"},
		{"nodeAgent.ipfix.collector=http://collector.example:4739", "/nodeAgent/ipfix/collector"},
		{"nodeAgent.ipfix.enterpriseNumber=0", "/nodeAgent/ipfix/enterpriseNumber"},
		{"nodeAgent.ipfix.templateInterval=often", "/nodeAgent/ipfix/templateInterval"},
		{"lookup.service.port=0", "/lookup/service/port"},
		{"lookup.service.nodePort=30080", "/lookup/service/nodePort"}, // a ClusterIP Service has none
		{"lookup.service.externalTrafficPolicy=Local", "/lookup/service/externalTrafficPolicy"},
		{"lookup.service.type=NodePort,lookup.service.loadBalancerSourceRanges={192.0.2.0/24}", "/lookup/service/loadBalancerSourceRanges"},
		{"lookup.ingress.pathType=Regex", "/lookup/ingress/pathType"},
		{"lookup.ingress.path=lookup", "/lookup/ingress/path"},
		{"lookup.ingress.host=Flows_Example", "/lookup/ingress/host"},
		{"lookup.ingress.tls[0].secret=x", "/lookup/ingress/tls/0"},
		{"lookup.route=x", "/lookup"},
	} {
		_, err := helm(t, "template", "planetkube", chart, "--set", c.set)
		if err == nil {
			t.Errorf("--set %s: rendered, want refused", c.set)
			continue
		}
		if !strings.Contains(err.Error(), c.field) {
			t.Errorf("--set %s: the message does not name %s: %v", c.set, c.field, err)
		}
	}
}

// The chart ships its generated files as `make manifests` copies them.
func TestFilesAreTheGeneratedOnes(t *testing.T) {
	for src, dst := range map[string]string{
		"config/rbac/role.yaml":           "files/rbac/role.yaml",
		"config/rbac/user_roles.yaml":     "files/rbac/user_roles.yaml",
		"config/rbac/metrics_reader.yaml": "files/rbac/metrics_reader.yaml",
		"config/agent/role.yaml":          "files/agent/role.yaml",
		"config/webhook/manifests.yaml":   "files/webhook/manifests.yaml",
	} {
		a, err := os.ReadFile(filepath.Join(root, src))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(chart, dst))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s: run `make manifests` (%v)", dst, src, err)
		}
	}
}

// The Argo CD snippet carries the one health script under each kind's key.
func TestArgoCDHealthPerKind(t *testing.T) {
	script, err := os.ReadFile(filepath.Join(chart, "health", "planetkube.lua"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(chart, "health", "argocd-cm.yaml"))
	if err != nil {
		t.Fatalf("%v: run `make manifests`", err)
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(b, &cm); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"Site", "Slice", "ResourcePool", "Ticket", "Authority"} {
		if got := cm.Data["resource.customizations.health.planetkube.io_"+kind]; got != string(script) {
			t.Errorf("the health check of %s is not planetkube.lua (run `make manifests`)", kind)
		}
	}
	if len(cm.Data) != 5 {
		t.Errorf("%d entries, want one per kind (5)", len(cm.Data))
	}
}

// container returns the first container of a rendered workload.
func container(t *testing.T, objs []object, kind, name string) object {
	t.Helper()
	o := find(objs, kind, name)
	if o == nil {
		t.Fatalf("no %s %s", kind, name)
	}
	return o["spec"].(object)["template"].(object)["spec"].(object)["containers"].([]any)[0].(object)
}

// capabilities returns what a container adds to its capabilities.
func capabilities(c object) []any {
	added, _ := c["securityContext"].(object)["capabilities"].(object)["add"].([]any)
	return added
}

// hasPort says whether a container declares the named port with the number.
func hasPort(c object, name string, number float64) bool {
	for _, p := range c["ports"].([]any) {
		if p.(object)["name"] == name && p.(object)["containerPort"] == number {
			return true
		}
	}
	return false
}

// Each node's lookup page on the node's own address (publicPage): off by
// default; on, a second listener and port on the host network, with
// NET_BIND_SERVICE only for a port below 1024.
func TestPublicPage(t *testing.T) {
	off := container(t, render(t), "DaemonSet", "planetkube-node-agent")
	if slices.ContainsFunc(off["args"].([]any), func(v any) bool { return strings.HasPrefix(v.(string), "--public-listen-address") }) {
		t.Errorf("a public listener by default: %v", off["args"])
	}
	if slices.ContainsFunc(off["ports"].([]any), func(p any) bool { return p.(object)["name"] == "public" }) {
		t.Errorf("a public port by default: %v", off["ports"])
	}
	if got := capabilities(off); !reflect.DeepEqual(got, []any{"NET_ADMIN"}) {
		t.Errorf("capabilities %v by default, want [NET_ADMIN]", got)
	}
	for _, c := range []struct {
		port      string
		number    float64
		bindBelow bool
	}{{"80", 80, true}, {"443", 443, true}, {"1023", 1023, true}, {"1024", 1024, false}, {"8080", 8080, false}} {
		args := []string{"--set", "nodeAgent.publicPage.enabled=true"}
		if c.port != "80" { // 80 is the default
			args = append(args, "--set", "nodeAgent.publicPage.port="+c.port)
		}
		objs := render(t, args...)
		agent := container(t, objs, "DaemonSet", "planetkube-node-agent")
		a := agent["args"].([]any)
		if !slices.Contains(a, any("--public-listen-address=:"+c.port)) || !slices.Contains(a, any("--listen-address=:9470")) {
			t.Errorf("port %s: agent args %v", c.port, a)
		}
		if !hasPort(agent, "public", c.number) || !hasPort(agent, "lookup", 9470) {
			t.Errorf("port %s: agent ports %v", c.port, agent["ports"])
		}
		want := []any{"NET_ADMIN"}
		if c.bindBelow {
			want = append(want, "NET_BIND_SERVICE")
		}
		if got := capabilities(agent); !reflect.DeepEqual(got, want) {
			t.Errorf("port %s: capabilities %v, want %v", c.port, got, want)
		}
		if ds := find(objs, "DaemonSet", "planetkube-node-agent"); ds["spec"].(object)["template"].(object)["spec"].(object)["hostNetwork"] != true {
			t.Error("the agent is not on the host network: its public port is not the node's")
		}
	}
	// The same port without the page enabled changes nothing.
	if c := container(t, render(t, "--set", "nodeAgent.publicPage.port=9470"), "DaemonSet", "planetkube-node-agent"); len(capabilities(c)) != 1 {
		t.Errorf("publicPage.port alone changed the agent: %v", c)
	}
}

// The manager's cluster-wide page behind lookup.service and lookup.ingress:
// nothing by default; the Service selects the manager's pods and sends to
// its lookup port; the Ingress carries the host, class, path, TLS and
// annotations given, and brings the Service with it.
func TestLookupServiceAndIngress(t *testing.T) {
	objs := render(t)
	if o := find(objs, "Service", "planetkube-lookup"); o != nil {
		t.Errorf("a lookup Service by default: %v", o)
	}
	if o := find(objs, "Ingress", "planetkube-lookup"); o != nil {
		t.Errorf("a lookup Ingress by default: %v", o)
	}
	if !hasPort(container(t, objs, "Deployment", "planetkube-manager"), "lookup", 9470) {
		t.Fatal("the manager has no lookup port for the Service to send to")
	}
	// The proxies whose X-Forwarded-For the lookup believes: none by
	// default, else the manager's flag.
	for _, tc := range []struct {
		set  []string
		want string
	}{
		{nil, ""},
		{[]string{"--set", "lookup.trustedProxies={10.244.0.0/16,fd00::/64}"}, "--lookup-trusted-proxies=10.244.0.0/16,fd00::/64"},
	} {
		var got string
		for _, a := range container(t, render(t, tc.set...), "Deployment", "planetkube-manager")["args"].([]any) {
			if s := a.(string); strings.HasPrefix(s, "--lookup-trusted-proxies") {
				got = s
			}
		}
		if got != tc.want {
			t.Errorf("%v: manager arg %q, want %q", tc.set, got, tc.want)
		}
	}

	svc := find(render(t, "--set", "lookup.service.enabled=true"), "Service", "planetkube-lookup")
	if svc == nil {
		t.Fatal("lookup.service.enabled renders no Service planetkube-lookup")
	}
	spec := svc["spec"].(object)
	wantSelector := object{"app.kubernetes.io/name": "planetkube", "app.kubernetes.io/instance": "planetkube", "app.kubernetes.io/component": "manager"}
	if !reflect.DeepEqual(spec["selector"], wantSelector) || spec["type"] != "ClusterIP" || str(svc, "metadata", "namespace") != "planetkube-system" {
		t.Errorf("Service: selector %v, type %v, namespace %s", spec["selector"], spec["type"], str(svc, "metadata", "namespace"))
	}
	ports := spec["ports"].([]any)
	if len(ports) != 1 || ports[0].(object)["port"] != 80.0 || ports[0].(object)["targetPort"] != "lookup" || ports[0].(object)["nodePort"] != nil {
		t.Errorf("Service ports %v, want 80 to lookup", ports)
	}
	for _, f := range []string{"externalTrafficPolicy", "loadBalancerSourceRanges"} {
		if spec[f] != nil {
			t.Errorf("a ClusterIP Service with %s: %v", f, spec[f])
		}
	}

	lb := find(render(t, "--set", "lookup.service.enabled=true", "--set", "lookup.service.type=LoadBalancer", "--set", "lookup.service.port=8080",
		"--set", "lookup.service.nodePort=30080", "--set", "lookup.service.externalTrafficPolicy=Local",
		"--set", "lookup.service.loadBalancerSourceRanges={192.0.2.0/24}", "--set", "lookup.service.annotations.example\\.com/lb=internet-facing"), "Service", "planetkube-lookup")
	spec = lb["spec"].(object)
	if spec["type"] != "LoadBalancer" || spec["externalTrafficPolicy"] != "Local" || !reflect.DeepEqual(spec["loadBalancerSourceRanges"], []any{"192.0.2.0/24"}) {
		t.Errorf("LoadBalancer Service spec %v", spec)
	}
	if p := spec["ports"].([]any)[0].(object); p["port"] != 8080.0 || p["nodePort"] != 30080.0 || p["targetPort"] != "lookup" {
		t.Errorf("LoadBalancer Service port %v", p)
	}
	if a := str(lb, "metadata", "annotations", "example.com/lb"); a != "internet-facing" {
		t.Errorf("Service annotations: %v", lb["metadata"])
	}

	// The Ingress alone brings its backend Service.
	objs = render(t, "-f", filepath.Join(chart, "ci", "public-lookup-values.yaml"), "--set", "lookup.service.enabled=false",
		"--set", "lookup.ingress.tls[1].secretName=other-tls", "--set", "lookup.ingress.tls[1].hosts={flows.example.org}")
	if find(objs, "Service", "planetkube-lookup") == nil {
		t.Error("lookup.ingress.enabled renders no Service for its backend")
	}
	ing := find(objs, "Ingress", "planetkube-lookup")
	if ing == nil {
		t.Fatal("lookup.ingress.enabled renders no Ingress planetkube-lookup")
	}
	if str(ing, "metadata", "namespace") != "planetkube-system" || str(ing, "metadata", "annotations", "cert-manager.io/cluster-issuer") != "letsencrypt" || str(ing, "spec", "ingressClassName") != "nginx" {
		t.Errorf("Ingress metadata %v, class %q", ing["metadata"], str(ing, "spec", "ingressClassName"))
	}
	wantTLS := []any{
		object{"secretName": "planetkube-lookup-tls", "hosts": []any{"flows.planet-lab.org"}}, // hosts default to the host
		object{"secretName": "other-tls", "hosts": []any{"flows.example.org"}},
	}
	if !reflect.DeepEqual(ing["spec"].(object)["tls"], wantTLS) {
		t.Errorf("Ingress tls %v, want %v", ing["spec"].(object)["tls"], wantTLS)
	}
	wantRules := []any{object{"host": "flows.planet-lab.org", "http": object{"paths": []any{object{
		"path": "/", "pathType": "Prefix",
		"backend": object{"service": object{"name": "planetkube-lookup", "port": object{"number": 80.0}}},
	}}}}}
	if !reflect.DeepEqual(ing["spec"].(object)["rules"], wantRules) {
		t.Errorf("Ingress rules %v, want %v", ing["spec"].(object)["rules"], wantRules)
	}

	plain := find(render(t, "--set", "lookup.ingress.enabled=true", "--set", "lookup.ingress.host=flows.example.org",
		"--set", "lookup.ingress.path=/flows", "--set", "lookup.ingress.pathType=Exact"), "Ingress", "planetkube-lookup")
	if spec := plain["spec"].(object); spec["ingressClassName"] != nil || spec["tls"] != nil || plain["metadata"].(object)["annotations"] != nil {
		t.Errorf("an Ingress with no class, TLS or annotations given has some: %v", plain)
	}
	if p := plain["spec"].(object)["rules"].([]any)[0].(object)["http"].(object)["paths"].([]any)[0].(object); p["path"] != "/flows" || p["pathType"] != "Exact" {
		t.Errorf("Ingress path %v", p)
	}
}

// What the schema cannot compare, the templates refuse, naming the field.
func TestTemplatesRefuseConflictingValues(t *testing.T) {
	for _, c := range []struct {
		sets  []string
		field string
	}{
		{[]string{"nodeAgent.publicPage.enabled=true", "nodeAgent.publicPage.port=9470"}, "nodeAgent.publicPage.port: 9470 is nodeAgent.lookupPort"},
		{[]string{"nodeAgent.publicPage.enabled=true", "nodeAgent.lookupPort=80"}, "nodeAgent.publicPage.port: 80 is nodeAgent.lookupPort"},
		{[]string{"nodeAgent.publicPage.enabled=true", "nodeAgent.publicPage.port=9472"}, "nodeAgent.publicPage.port: 9472 is nodeAgent.healthPort"},
		{[]string{"nodeAgent.publicPage.enabled=true", "nodeAgent.publicPage.port=9471"}, "nodeAgent.publicPage.port: 9471 is nodeAgent.metricsPort"},
		{[]string{"lookup.ingress.enabled=true"}, "lookup.ingress.host"},
		{[]string{"lookup.service.enabled=true", "manager.extraArgs[0]=--flow-lookup-address=0"}, "--flow-lookup-address=0"},
		{[]string{"lookup.ingress.enabled=true", "lookup.ingress.host=flows.example.org", "manager.extraArgs[0]=--flow-lookup-address=:8000"}, "lookup.ingress.enabled"},
	} {
		args := []string{"template", "planetkube", chart}
		for _, s := range c.sets {
			args = append(args, "--set", s)
		}
		_, err := helm(t, args...)
		if err == nil {
			t.Errorf("%v: rendered, want refused", c.sets)
			continue
		}
		if !strings.Contains(err.Error(), c.field) {
			t.Errorf("%v: the message does not name %s: %v", c.sets, c.field, err)
		}
	}
	// Without metrics the metrics port is free; without the page or a
	// Service, nothing is refused.
	for _, sets := range [][]string{
		{"nodeAgent.publicPage.enabled=true", "nodeAgent.publicPage.port=9471", "metrics.enabled=false"},
		{"nodeAgent.publicPage.port=9470"},
		{"manager.extraArgs[0]=--flow-lookup-address=0"},
		{"lookup.service.enabled=true", "manager.extraArgs[0]=--flow-lookup-address=:9470"},
	} {
		args := []string{}
		for _, s := range sets {
			args = append(args, "--set", s)
		}
		render(t, args...)
	}
}

// TestIPFIXExport: no export by default; a collector gives the agent its
// flags.
func TestIPFIXExport(t *testing.T) {
	ipfixArgs := func(objs []object) []string {
		var out []string
		for _, a := range container(t, objs, "DaemonSet", "planetkube-node-agent")["args"].([]any) {
			if s := a.(string); strings.HasPrefix(s, "--ipfix-") {
				out = append(out, s)
			}
		}
		return out
	}
	if got := ipfixArgs(render(t)); len(got) != 0 {
		t.Errorf("IPFIX flags by default: %v", got)
	}
	got := ipfixArgs(render(t, "--set", "nodeAgent.ipfix.collector=tcp://collector.example:4739", "--set", "nodeAgent.ipfix.observationDomain=4000000000"))
	want := []string{"--ipfix-collector=tcp://collector.example:4739", "--ipfix-observation-domain=4000000000", "--ipfix-enterprise-number=32473", "--ipfix-template-interval=1m"}
	if !slices.Equal(got, want) {
		t.Errorf("IPFIX flags %v, want %v", got, want)
	}
}

// archiveTLSVolume is the agents' archive-tls volume, if any.
func archiveTLSVolume(ds object) object {
	spec, _ := ds["spec"].(object)["template"].(object)["spec"].(object)
	vols, _ := spec["volumes"].([]any)
	for _, v := range vols {
		if v.(object)["name"] == "archive-tls" {
			return v.(object)
		}
	}
	return nil
}

// TestArchive: no archiver by default; enabled, an archiver StatefulSet with
// its volume, its ServiceAccount bound to the generated roles (in the
// release's namespace and the agents', and the cluster's), and the agents
// serving their segments to it alone.
func TestArchive(t *testing.T) {
	objs := render(t)
	if find(objs, "StatefulSet", "planetkube-archiver") != nil || slices.ContainsFunc(container(t, objs, "DaemonSet", "planetkube-node-agent")["args"].([]any),
		func(v any) bool { return strings.HasPrefix(v.(string), "--archive-") }) {
		t.Fatal("an archive by default")
	}
	objs = render(t, "--namespace", "site-a", "--set", "archive.enabled=true", "--set", "archive.storage.storageClassName=fast", "--set", "nodeAgent.namespace=agents")
	sts := find(objs, "StatefulSet", "planetkube-archiver")
	if sts == nil {
		t.Fatal("no archiver StatefulSet")
	}
	spec := sts["spec"].(object)
	claims := spec["volumeClaimTemplates"].([]any)
	if spec["replicas"] != 1.0 || len(claims) != 1 || str(claims[0].(object), "spec", "storageClassName") != "fast" ||
		str(claims[0].(object), "spec", "resources", "requests", "storage") != "50Gi" {
		t.Errorf("StatefulSet spec: replicas %v, claims %v", spec["replicas"], claims)
	}
	args := container(t, objs, "StatefulSet", "planetkube-archiver")["args"].([]any)
	for _, want := range []string{"archiver", "--agent-namespace=agents", "--agent-port=9473", "--retention=2160h", "--service-account=planetkube-archiver", "--listen-address=:9470"} {
		if !slices.Contains(args, any(want)) {
			t.Errorf("archiver args %v lack %s", args, want)
		}
	}
	if m := container(t, objs, "Deployment", "planetkube-manager")["args"].([]any); !slices.Contains(m, any("--archive-url=http://planetkube-archiver.site-a.svc:9470")) {
		t.Errorf("manager args %v: the cluster-wide lookup does not ask the archive", m)
	}
	agent := container(t, objs, "DaemonSet", "planetkube-node-agent")
	for _, want := range []string{"--archive-listen-address=:9473", "--archive-readers=system:serviceaccount:site-a:planetkube-archiver"} {
		if !slices.Contains(agent["args"].([]any), any(want)) {
			t.Errorf("agent args %v lack %s", agent["args"], want)
		}
	}
	if !hasPort(agent, "archive", 9473) {
		t.Errorf("agent ports %v", agent["ports"])
	}
	// TLS by default: the agents mount the certificate and key of the
	// archiver's Secret (optional: the archiver makes it), not the CA's key.
	if !slices.Contains(agent["args"].([]any), any("--archive-tls-dir=/etc/planetkube/archive-tls")) || !slices.Contains(args, any("--agent-tls=secret")) {
		t.Errorf("TLS: agent args %v, archiver args %v", agent["args"], args)
	}
	if v := archiveTLSVolume(find(objs, "DaemonSet", "planetkube-node-agent")); v == nil || str(v, "secret", "secretName") != "planetkube-archive-tls" || v["secret"].(object)["optional"] != true ||
		!reflect.DeepEqual(v["secret"].(object)["items"], []any{object{"key": "tls.crt", "path": "tls.crt"}, object{"key": "tls.key", "path": "tls.key"}}) {
		t.Errorf("the agents' archive-tls volume: %v", v)
	}
	plain := render(t, "--set", "archive.enabled=true", "--set", "archive.agentTLS=plain")
	if slices.ContainsFunc(container(t, plain, "DaemonSet", "planetkube-node-agent")["args"].([]any), func(v any) bool { return strings.HasPrefix(v.(string), "--archive-tls-dir") }) ||
		archiveTLSVolume(find(plain, "DaemonSet", "planetkube-node-agent")) != nil ||
		!slices.Contains(container(t, plain, "StatefulSet", "planetkube-archiver")["args"].([]any), any("--agent-tls=plain")) {
		t.Error("archive.agentTLS=plain still sets up TLS")
	}
	if _, err := helm(t, "template", "planetkube", chart, "--set", "archive.enabled=true", "--set", "archive.agentTLS=none"); err == nil || !strings.Contains(err.Error(), "agentTLS") {
		t.Errorf("archive.agentTLS=none: %v", err)
	}
	// The generated roles, in the release's namespace and the agents', each
	// bound to the archiver's ServiceAccount.
	b, err := os.ReadFile(filepath.Join(root, "config/archiver/role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	nsOf := map[string]string{"planetkube-system": "site-a", "planetkube-agent": "agents", "": ""}
	bindingOf := map[string]string{"Role": "RoleBinding", "ClusterRole": "ClusterRoleBinding"}
	for _, want := range docs(t, string(b)) {
		ns, kind := nsOf[str(want, "metadata", "namespace")], str(want, "kind")
		var got, binding object
		for _, o := range objs {
			if str(o, "metadata", "name") == "planetkube-archiver" && str(o, "metadata", "namespace") == ns {
				switch o["kind"] {
				case kind:
					got = o
				case bindingOf[kind]:
					binding = o
				}
			}
		}
		if got == nil || !reflect.DeepEqual(got["rules"], want["rules"]) {
			t.Errorf("the archiver's %s in %q: %v, want the rules of config/archiver/role.yaml", kind, ns, got)
		}
		if binding == nil || str(binding, "roleRef", "kind") != kind || str(binding, "roleRef", "name") != "planetkube-archiver" ||
			!reflect.DeepEqual(binding["subjects"], []any{object{"kind": "ServiceAccount", "name": "planetkube-archiver", "namespace": "site-a"}}) {
			t.Errorf("the archiver's %s in %q: %v", bindingOf[kind], ns, binding)
		}
	}
	if _, err := helm(t, "template", "planetkube", chart, "--set", "archive.enabled=true", "--set", "archive.agentPort=9470"); err == nil ||
		!strings.Contains(err.Error(), "archive.agentPort: 9470 is nodeAgent.lookupPort already") {
		t.Errorf("an archive port that is the lookup's: %v", err)
	}
}
