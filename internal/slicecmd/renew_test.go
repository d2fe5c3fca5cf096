package slicecmd

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/cli"
	"github.com/planetkube/planetkube/internal/expiry"
	"github.com/planetkube/planetkube/internal/manager"
	"github.com/planetkube/planetkube/internal/scheme"
	"github.com/planetkube/planetkube/internal/testing/poll"
	"github.com/planetkube/planetkube/internal/testing/skiplog"
	"github.com/planetkube/planetkube/internal/testing/testenv"
)

func TestParseDuration(t *testing.T) {
	day := 24 * time.Hour
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{in: "14d", want: 14 * day},
		{in: "2w", want: 14 * day},
		{in: "36h", want: 36 * time.Hour},
		{in: "1w3d12h", want: 10*day + 12*time.Hour},
		{in: "8w", want: expiry.MaxAhead},
		{in: "90m", want: 90 * time.Minute},
		{in: "1.5d", err: "not a duration"},
		{in: "12h1d", err: "not a duration"},
		{in: "d", err: "not a duration"},
		{in: "14", err: "not a duration"},
		{in: "-14d", err: "not a duration"},
		{in: "0d", err: "must be positive"},
		{in: "99999999999999999999d", err: "more than 100 years"},
		{in: "6000w", err: "more than 100 years"},
		{in: "36500d2562047h", err: "more than 100 years"},
	} {
		got, err := ParseDuration(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseDuration(%q) = %v, %v; want an error saying %q", tc.in, got, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// cluster is an API server with PlanetKube's manager (the real Slice
// controller) and a site PI's kubeconfig.
type cluster struct {
	ctx        context.Context
	admin      client.Client
	kubeconfig string // the PI larry's: planetkube-site-pi in princeton
}

// startCluster starts envtest, the manager as the binary wires it, the site
// princeton with the PI larry bound by the Site controller to the ClusterRole
// of config/rbac/user_roles.yaml, and returns when larry can read its slices.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	root := filepath.Join("..", "..")
	env := testenv.New(root, testenv.WithoutWebhooks)
	cfg, err := env.Start()
	if err != nil {
		skiplog.UnlessRoot(t, "envtest could not start (run make tools): "+err.Error())
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx := t.Context()
	admin, err := client.New(cfg, client.Options{Scheme: scheme.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "planetkube-system"}}); err != nil {
		t.Fatal(err)
	}
	applyUserRoles(t, ctx, admin, filepath.Join(root, "config", "rbac", "user_roles.yaml"))

	ctrl.SetLogger(logr.Discard())
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:     scheme.Scheme(),
		Cache:      manager.CacheOptions(),
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := manager.Setup(mgr, manager.Options{
		Authority: "plc", Namespace: "planetkube-system", AuthorityKeySecret: "planetkube-authority-key",
		SliverWriters: 4, SharesPerNode: 100, SliceWorkers: 1,
	}); err != nil {
		t.Fatal(err)
	}
	mctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(mctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	t.Cleanup(func() { stop(); <-done })

	site := &planetv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "princeton"}, Spec: planetv1.SiteSpec{PIs: []planetv1.Subject{{Name: "larry"}}}}
	if err := admin.Create(ctx, site); err != nil {
		t.Fatal(err)
	}
	user, err := env.AddUser(envtest.User{Name: "larry"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	larryCfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	larry, err := client.New(larryCfg, client.Options{Scheme: scheme.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "larry may list princeton's slices", 30*time.Second, 100*time.Millisecond, func() error {
		return larry.List(ctx, &planetv1.SliceList{}, client.InNamespace("princeton"))
	})
	return &cluster{ctx: ctx, admin: admin, kubeconfig: path}
}

// applyUserRoles creates the ClusterRoles of a file such as
// config/rbac/user_roles.yaml.
func applyUserRoles(t *testing.T, ctx context.Context, c client.Client, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		role := &rbacv1.ClusterRole{}
		if err := dec.Decode(role); err != nil {
			if err.Error() != "EOF" {
				t.Fatal(err)
			}
			return
		}
		if role.Name != "" {
			if err := c.Create(ctx, role); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// run runs a command line ("slice renew ...") as larry with the clock now.
func (c *cluster) run(t *testing.T, now func() time.Time, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	cli.Stdout = &out
	t.Cleanup(func() { cli.Stdout = os.Stdout })
	err := Slice(append(args[1:], "--kubeconfig", c.kubeconfig), IO{Out: &out, Err: &errb, Now: now})
	return out.String(), err
}

// slice reads princeton's slice name.
func (c *cluster) slice(t *testing.T, name string) *planetv1.Slice {
	t.Helper()
	s := &planetv1.Slice{}
	if err := c.admin.Get(c.ctx, client.ObjectKey{Namespace: "princeton", Name: name}, s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRenew renews slices through the real Slice controller, as the site's
// PI: within the 8-week limit the expiry in force becomes now + the
// duration, and the notice of the last week clears; past it the command
// refuses before any write; with the user's clock an hour ahead, 8 weeks is
// past the controller's limit, and the command says why the controller
// refused it.
func TestRenew(t *testing.T) {
	c := startCluster(t)
	created := time.Now()
	soon := &planetv1.Slice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "princeton", Name: "codeen"},
		Spec: planetv1.SliceSpec{
			Template:  planetv1.SliverTemplate{Image: "registry.k8s.io/pause:3.10"},
			ExpiresAt: &metav1.Time{Time: created.Add(3 * 24 * time.Hour)},
		},
	}
	if err := c.admin.Create(c.ctx, soon); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "codeen in its last week", 30*time.Second, 100*time.Millisecond, func() error {
		cond := meta.FindStatusCondition(c.slice(t, "codeen").Status.Conditions, planetv1.ConditionExpiresSoon)
		if cond == nil || cond.Status != metav1.ConditionTrue || cond.Reason != planetv1.ReasonLastWeek {
			return fmt.Errorf("ExpiresSoon = %+v", cond)
		}
		return nil
	})
	printed := regexp.MustCompile(`^slice princeton/codeen expires at (\S+) \(in (\d+ days)\)\n$`)

	t.Run("within the limit", func(t *testing.T) {
		before := time.Now()
		out, err := c.run(t, time.Now, "slice", "renew", "--for", "14d", "codeen", "-n", "princeton")
		if err != nil {
			t.Fatalf("renew: %v\n%s", err, out)
		}
		m := printed.FindStringSubmatch(out)
		if m == nil || m[2] != "14 days" {
			t.Fatalf("printed %q, want it to match %s with 14 days", out, printed)
		}
		at, err := time.Parse(time.RFC3339, m[1])
		if err != nil {
			t.Fatal(err)
		}
		if lo, hi := before.Add(14*24*time.Hour).Add(-time.Second), time.Now().Add(14*24*time.Hour); at.Before(lo) || at.After(hi) {
			t.Errorf("expiry %s, want now + 14 days (%s .. %s)", at, lo, hi)
		}
		s := c.slice(t, "codeen")
		if !s.Spec.ExpiresAt.Time.Equal(at) || !s.Status.ExpiresAt.Time.Equal(at) {
			t.Errorf("spec.expiresAt %s, status.expiresAt %s, want both %s", s.Spec.ExpiresAt, s.Status.ExpiresAt, at)
		}
		poll.Until(t, "the notice cleared", 30*time.Second, 100*time.Millisecond, func() error {
			cond := meta.FindStatusCondition(c.slice(t, "codeen").Status.Conditions, planetv1.ConditionExpiresSoon)
			if cond == nil || cond.Status != metav1.ConditionFalse || cond.Reason != planetv1.ReasonNotExpiringSoon {
				return fmt.Errorf("ExpiresSoon = %+v", cond)
			}
			return nil
		})
	})

	t.Run("exactly at the limit", func(t *testing.T) {
		out, err := c.run(t, time.Now, "slice", "renew", "codeen", "-n", "princeton", "--for", "8w")
		if m := printed.FindStringSubmatch(out); err != nil || m == nil || m[2] != "56 days" {
			t.Fatalf("renew --for 8w: %v, printed %q", err, out)
		}
	})

	t.Run("past the limit, refused before any write", func(t *testing.T) {
		before := c.slice(t, "codeen")
		now := time.Now()
		out, err := c.run(t, func() time.Time { return now }, "slice", "renew", "codeen", "-n", "princeton", "--for", "8w1d")
		latest := now.Truncate(time.Second).Add(expiry.MaxAhead).UTC().Format(time.RFC3339)
		if err == nil || !strings.Contains(err.Error(), "more than 8 weeks ahead") || !strings.Contains(err.Error(), "the latest allowed now is "+latest) {
			t.Fatalf("renew --for 8w1d: %v (printed %q), want a refusal naming the 8-week limit and %s", err, out, latest)
		}
		if after := c.slice(t, "codeen"); after.ResourceVersion != before.ResourceVersion {
			t.Errorf("the slice changed (resourceVersion %s → %s)", before.ResourceVersion, after.ResourceVersion)
		}
	})

	t.Run("refused by the controller", func(t *testing.T) {
		before := c.slice(t, "codeen")
		ahead := func() time.Time { return time.Now().Add(time.Hour) } // the user's clock is an hour fast
		out, err := c.run(t, ahead, "slice", "renew", "codeen", "-n", "princeton", "--for", "8w")
		if err == nil || !strings.Contains(err.Error(), "the controller refused the renewal (Ready=False, InvalidExpiry)") ||
			!strings.Contains(err.Error(), "more than 8 weeks ahead") {
			t.Fatalf("renew with a clock an hour ahead: %v (printed %q), want the controller's InvalidExpiry message", err, out)
		}
		if after := c.slice(t, "codeen"); !after.Status.ExpiresAt.Equal(before.Status.ExpiresAt) {
			t.Errorf("the expiry in force changed: %s → %s", before.Status.ExpiresAt, after.Status.ExpiresAt)
		}
	})

	t.Run("a slice that does not exist", func(t *testing.T) {
		if _, err := c.run(t, time.Now, "slice", "renew", "nosuch", "-n", "princeton", "--for", "14d"); err == nil || !strings.Contains(err.Error(), "slice princeton/nosuch not found") {
			t.Fatalf("renew nosuch: %v", err)
		}
		if err := c.admin.Get(c.ctx, client.ObjectKey{Namespace: "princeton", Name: "nosuch"}, &planetv1.Slice{}); !apierrors.IsNotFound(err) {
			t.Fatalf("nosuch: %v", err)
		}
	})
}

func TestUsage(t *testing.T) {
	var out bytes.Buffer
	cli.Stdout = &out
	t.Cleanup(func() { cli.Stdout = os.Stdout })
	std := IO{Out: &out, Err: &out, Now: time.Now}
	if err := Slice([]string{"renew", "--help"}, std); err != nil || !strings.Contains(out.String(), "Usage: planetkube slice renew NAME --for DURATION") {
		t.Fatalf("renew --help: %v\n%s", err, out.String())
	}
	if err := Slice(nil, std); err == nil || !strings.Contains(err.Error(), "planetkube slice <plan|renew>") {
		t.Fatalf("no command: %v", err)
	}
	for _, args := range [][]string{{"renew", "--for", "14d"}, {"renew", "a", "b", "--for", "14d"}, {"renew", "codeen"}} {
		if err := Slice(args, std); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
