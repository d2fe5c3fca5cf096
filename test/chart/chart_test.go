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
		{"operator.url=javascript:alert(1)", "/operator/url"},
		{"operator.abuseContact=call us", "/operator/abuseContact"},
		{"nodeAgent.bandwidth.nodeCap=0", "/nodeAgent/bandwidth/nodeCap"},
		{"manager.extraArgs[0]=rm -rf", "/manager/extraArgs/0"},
		{"nosuchvalue=1", "nosuchvalue"},
		{"trust.default={plc,Ple}", "/trust/default/1"},
		{"peers[0].name=ple", "/peers/0"},
		{"metrics.managerPort=9443", "/metrics/managerPort"},
		{"peers[0].name=ple,peers[0].keys[0].id=XYZ,peers[0].keys[0].publicKey=abc", "/peers/0/keys/0"},
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
