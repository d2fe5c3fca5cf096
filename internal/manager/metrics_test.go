package manager

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/planetkube/planetkube/internal/scheme"
	"github.com/planetkube/planetkube/internal/testing/poll"
	"github.com/planetkube/planetkube/internal/testing/ports"
)

// TestMetricsNeedAuthentication serves the metrics as the manager does by
// default (--metrics-secure) against a real API server: no token is 401, a
// ServiceAccount's token without the right is 403, and once bound to the
// ClusterRole of config/rbac/metrics_reader.yaml it reads the metrics.
func TestMetricsNeedAuthentication(t *testing.T) {
	cfg, ctx, c := startAPIServer(t)
	ctrl.SetLogger(logr.Discard())
	port := ports.Free(t)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme.Scheme(), Metrics: MetricsOptions(Options{MetricsAddr: "127.0.0.1:" + strconv.Itoa(port), MetricsSecure: true})})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		if err := mgr.Start(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("manager: %v", err)
		}
	}()

	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// token makes a ServiceAccount in default and returns a token of it.
	token := func(name string) string {
		t.Helper()
		if err := c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}); err != nil {
			t.Fatal(err)
		}
		tr, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	// The certificate is self-signed; what is checked here is who may read.
	get := func(token string) (int, string, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://127.0.0.1:"+strconv.Itoa(port)+"/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // self-signed
		resp, err := hc.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), nil
	}
	expect := func(what, token string, code int, body string) {
		t.Helper()
		poll.Until(t, what, 30*time.Second, 100*time.Millisecond, func() error {
			got, b, err := get(token)
			switch {
			case err != nil:
				return err
			case got != code || !strings.Contains(b, body):
				return fmt.Errorf("HTTP %d, want %d: %.200s", got, code, b)
			}
			return nil
		})
	}
	expect("no token is refused", "", http.StatusUnauthorized, "")
	expect("a token without the right is forbidden", token("stranger"), http.StatusForbidden, "")

	// Prometheus' ServiceAccount, bound to the chart's reader role before
	// its first request (the authorizer caches answers).
	reader := token("prometheus")
	b, err := os.ReadFile(filepath.Join("..", "..", "config", "rbac", "metrics_reader.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.Unmarshal(b, role); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "prometheus-reads-planetkube"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "default", Name: "prometheus"}},
	}
	for _, o := range []client.Object{role, binding} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	expect("the metrics reader reads the metrics", reader, http.StatusOK, "go_goroutines")
}
