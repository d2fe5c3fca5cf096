package slicecmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/cli"
	"github.com/planetkube/planetkube/internal/expiry"
	"github.com/planetkube/planetkube/internal/naming"
)

// pollInterval is how often renew reads the slice while it waits.
const pollInterval = 250 * time.Millisecond

func renew(args []string, std IO) error {
	fs := cli.NewFlagSet("slice renew", "NAME --for DURATION [-n NAMESPACE] [flags]",
		"Renews a slice: sets its spec.expiresAt to now + DURATION (to the second), then waits\n"+
			"until the controller has the new expiry in force and prints it. A renewal may set the\n"+
			"expiry at most 8 weeks ahead (PlanetLab's rule): a longer DURATION is refused here,\n"+
			"before any change, with the latest time allowed.\n\n"+
			"GitOps: where Git sets spec.expiresAt, change it there instead: a sync would set it back.\n\n"+
			"Example:\n  planetkube slice renew codeen -n princeton --for 14d")
	var (
		cf      clusterFlags
		forArg  string
		waitFor time.Duration
	)
	cf.bind(fs)
	fs.StringVar(&forArg, "for", "", "How long from now the slice lives: a duration such as 14d, 2w, 36h or 1w3d12h (at most 8w).")
	fs.DurationVar(&waitFor, "wait", 30*time.Second, "How long to wait for the controller to apply the renewal (0: do not wait).")
	pos, help, err := parseArgs(fs, args)
	if help || err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("give the slice's NAME, once: planetkube slice renew NAME --for 14d")
	}
	name := pos[0]
	if forArg == "" {
		return errors.New("--for is required: how long from now the slice lives, such as 14d")
	}
	d, err := ParseDuration(forArg)
	if err != nil {
		return fmt.Errorf("--for: %w", err)
	}
	now := std.Now()
	at := now.Add(d).Truncate(time.Second).UTC()
	if msg := expiry.Check(at, now); msg != "" {
		return fmt.Errorf("refused, nothing changed: --for %s: %s A renewal may set the expiry at most 8 weeks (--for 8w) ahead.", forArg, msg)
	}

	c, ns, err := cf.connect()
	if err != nil {
		return err
	}
	ctx := context.Background()
	key := client.ObjectKey{Namespace: ns, Name: name}
	slice := &planetv1.Slice{}
	if err := c.Get(ctx, key, slice); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("slice %s not found", key)
		}
		return fmt.Errorf("reading slice %s: %w", key, err)
	}
	if naming.IsAuthorityNamespace(ns) {
		return fmt.Errorf("slice %s is a foreign slice (%s): its expiry is its ticket's, so it is renewed at its home authority",
			key, slice.Annotations[planetv1.AnnotationSliceFullName])
	}
	body, err := json.Marshal(map[string]any{"spec": map[string]any{"expiresAt": at.Format(time.RFC3339)}})
	if err != nil {
		return err
	}
	if err := c.Patch(ctx, slice, client.RawPatch(types.MergePatchType, body)); err != nil {
		return fmt.Errorf("renewing slice %s: %w", key, err)
	}
	if waitFor <= 0 {
		fmt.Fprintf(std.Out, "slice %s: spec.expiresAt set to %s; not waiting for the controller\n", key, at.Format(time.RFC3339))
		return nil
	}
	if err := waitApplied(ctx, c, key, slice.Generation, at, waitFor); err != nil {
		return err
	}
	fmt.Fprintf(std.Out, "slice %s expires at %s (in %s)\n", key, at.Format(time.RFC3339), expiry.Humanize(at.Sub(std.Now())))
	return nil
}

// waitApplied waits until the slice's status, at generation gen or later,
// shows at as the expiry in force, or the controller refused it (Ready
// False, reason InvalidExpiry: the error carries its message).
func waitApplied(ctx context.Context, c client.Client, key client.ObjectKey, gen int64, at time.Time, timeout time.Duration) error {
	var (
		refused *expiryRefused
		last    = "nothing read yet"
	)
	err := wait.PollUntilContextTimeout(ctx, pollInterval, timeout, true, func(ctx context.Context) (bool, error) {
		s := &planetv1.Slice{}
		if err := c.Get(ctx, key, s); err != nil {
			last = err.Error()
			return false, nil
		}
		if s.Status.ObservedGeneration < gen {
			last = fmt.Sprintf("the controller has observed generation %d, not %d yet", s.Status.ObservedGeneration, gen)
			return false, nil
		}
		ready := meta.FindStatusCondition(s.Status.Conditions, planetv1.ConditionReady)
		if ready != nil && ready.ObservedGeneration >= gen && ready.Reason == planetv1.ReasonInvalidExpiry {
			refused = &expiryRefused{key: key, msg: ready.Message}
			return true, nil
		}
		if s.Status.ExpiresAt != nil && s.Status.ExpiresAt.Time.Equal(at) {
			return true, nil
		}
		last = "the expiry in force is " + expiresAt(s)
		return false, nil
	})
	switch {
	case refused != nil:
		return refused
	case err != nil:
		return fmt.Errorf("slice %s: spec.expiresAt is set to %s, but the controller did not apply it within %s (%s): is the manager running?",
			key, at.Format(time.RFC3339), timeout, last)
	}
	return nil
}

// expiryRefused is the controller's refusal of a renewal.
type expiryRefused struct {
	key client.ObjectKey
	msg string
}

func (e *expiryRefused) Error() string {
	return fmt.Sprintf("slice %s: the controller refused the renewal (Ready=False, %s): %s", e.key, planetv1.ReasonInvalidExpiry, e.msg)
}

func expiresAt(s *planetv1.Slice) string {
	if s.Status.ExpiresAt == nil {
		return "not set"
	}
	return s.Status.ExpiresAt.UTC().Format(time.RFC3339)
}

// maxDuration bounds what ParseDuration reads (no overflow).
const maxDuration = 100 * 366 * 24 * time.Hour

// ParseDuration parses a renewal's duration: whole weeks (w) and days (d)
// first, then what time.ParseDuration reads (h, m, s ...): 14d, 2w, 36h,
// 1w3d12h. It must be positive.
func ParseDuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("%q is not a duration such as 14d, 2w or 36h", s)
	if strings.ContainsAny(s, "+-") {
		return 0, bad
	}
	tooLong := fmt.Errorf("%q is more than %d years", s, maxDuration/(366*24*time.Hour))
	var total time.Duration
	rest := s
	for rest != "" {
		i := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
		if i <= 0 || (rest[i] != 'd' && rest[i] != 'w') {
			break
		}
		unit := 24 * time.Hour
		if rest[i] == 'w' {
			unit *= 7
		}
		n, err := strconv.ParseInt(rest[:i], 10, 64)
		if err != nil || time.Duration(n) > (maxDuration-total)/unit {
			return 0, tooLong
		}
		total += time.Duration(n) * unit
		rest = rest[i+1:]
	}
	if rest != "" {
		d, err := time.ParseDuration(rest)
		if err != nil {
			return 0, bad
		}
		if d > maxDuration-total {
			return 0, tooLong
		}
		total += d
	}
	if total <= 0 {
		return 0, fmt.Errorf("%q: the duration must be positive", s)
	}
	return total, nil
}
