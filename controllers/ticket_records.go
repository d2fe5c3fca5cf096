package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/ticket"
)

// The records of redeemed tickets are ConfigMaps in the manager's
// namespace, read without a cache (a record just made must be seen), so
// that they outlive the Tickets, the foreign slices and the authorities'
// namespaces they are about, and only the install's operators read them.
// Two kinds, by their planetkube.io/ticket-record label:
const (
	// recordJTI: an issuer's jti was redeemed, for the token whose hash it
	// holds. A jti grants once per issuer: another token with it is
	// Replayed.
	recordJTI = "jti"
	// recordSlice: a slice's floor, below which its tickets grant nothing
	// here: set by a withdrawal (every ticket of the slice not newer than
	// it is Revoked), or when the slice is released because the last
	// Ticket that granted it went (a strictly older ticket is Superseded:
	// it cannot bring back what a newer one granted). It lasts as long as
	// any ticket below it can: its iat plus ticket.MaxLifetime.
	recordSlice = "slice"
)

// recordName is the name of a jti's record: "ticket-" and 20 hex characters
// of sha256("<issuer>/<jti>"). (It also names the sub-pool a pool ticket
// makes: one per grant.)
func recordName(issuer, jti string) string {
	sum := sha256.Sum256([]byte(issuer + "/" + jti))
	return "ticket-" + hex.EncodeToString(sum[:10])
}

// sliceRecordName is the name of a slice's floor record: "slice-" and 20
// hex characters of sha256("slice/<full name>").
func sliceRecordName(fullName string) string {
	sum := sha256.Sum256([]byte("slice/" + fullName))
	return "slice-" + hex.EncodeToString(sum[:10])
}

// recordOf is what a record says: the ticket it is about (its issuer, jti,
// slice and Order), when it expires and, for a slice's floor, whether a
// withdrawal set it.
type recordOf struct {
	issuer, jti, slice string
	order              ticket.Order
	expires            time.Time
	withdrawn          bool
}

// about returns the record of a verified ticket, expiring with it.
func about(v *ticket.Verified) recordOf {
	return recordOf{issuer: v.Issuer, jti: v.ID, slice: v.SliceName(), order: v.Order(), expires: v.Expires()}
}

// configMap is the record's ConfigMap, of kind and name.
func (r *TicketReconciler) configMap(kind, name string, rec recordOf) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: r.Namespace, Name: name,
			Labels: map[string]string{planetv1.LabelManagedBy: planetv1.ManagedByValue, planetv1.LabelTicketRecord: kind},
		},
		Data: map[string]string{
			"issuer": rec.issuer, "jti": rec.jti, "slice": rec.slice, "tokenSHA256": rec.order.Hash,
			"issuedAt": strconv.FormatInt(rec.order.IssuedAt, 10), "expires": rec.expires.UTC().Format(time.RFC3339),
			"withdrawn": strconv.FormatBool(rec.withdrawn),
		},
	}
}

// checkJTI refuses, without writing, a ticket whose jti the issuer already
// redeemed for another token (Replayed). record makes the claim.
func (r *TicketReconciler) checkJTI(ctx context.Context, v *ticket.Verified, out *redemption) error {
	have := &corev1.ConfigMap{}
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: recordName(v.Issuer, v.ID)}, have)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return r.sameToken(have, v, out)
}

// record claims the ticket's jti for its token: creating the record is
// atomic, so two tokens with one jti of one issuer cannot both be
// redeemed, whatever slices they name. The same token again is idempotent;
// another token with the jti is Replayed.
func (r *TicketReconciler) record(ctx context.Context, v *ticket.Verified, out *redemption) error {
	rec := r.configMap(recordJTI, recordName(v.Issuer, v.ID), about(v))
	err := r.Create(ctx, rec)
	if err == nil {
		return nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("recording ticket %s of %s: %w", v.ID, v.Issuer, err)
	}
	have := &corev1.ConfigMap{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(rec), have); err != nil {
		return err
	}
	return r.sameToken(have, v, out)
}

// sameToken refuses v as Replayed unless the jti record is its token's.
func (r *TicketReconciler) sameToken(have *corev1.ConfigMap, v *ticket.Verified, out *redemption) error {
	if have.Data["tokenSHA256"] == v.Hash && have.Data["issuer"] == v.Issuer && have.Data["jti"] == v.ID {
		return nil
	}
	return out.refuse(&ticket.Refusal{Reason: ticket.Replayed, Message: fmt.Sprintf(
		"%s already redeemed another ticket with jti %s: a jti grants once", v.Issuer, v.ID)})
}

// floor is a slice's floor record, read.
type floor struct {
	order     ticket.Order
	jti       string
	withdrawn bool
	expires   time.Time
}

// readFloor returns the slice's floor in force (not expired, with the
// skew), or nil, and the record (nil when there is none).
func (r *TicketReconciler) readFloor(ctx context.Context, fullName string) (*floor, *corev1.ConfigMap, error) {
	cm := &corev1.ConfigMap{}
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: sliceRecordName(fullName)}, cm)
	if apierrors.IsNotFound(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	iat, _ := strconv.ParseInt(cm.Data["issuedAt"], 10, 64)
	exp, err := time.Parse(time.RFC3339, cm.Data["expires"])
	if err != nil || cm.Data["slice"] != fullName || !exp.Add(r.skew()).After(r.Now()) {
		return nil, cm, nil // not this slice's (a hash collision), unreadable, or expired: holds nothing
	}
	return &floor{order: ticket.Order{IssuedAt: iat, Hash: cm.Data["tokenSHA256"]}, jti: cm.Data["jti"],
		withdrawn: cm.Data["withdrawn"] == "true", expires: exp}, cm, nil
}

// checkFloor refuses a ticket of a slice below its floor: Revoked when
// its issuer withdrew the slice by a ticket not older than it, Superseded
// when it is older than the ticket the slice last ran here.
func (r *TicketReconciler) checkFloor(ctx context.Context, v *ticket.Verified, out *redemption) error {
	f, _, err := r.readFloor(ctx, v.SliceName())
	switch {
	case err != nil || f == nil:
		return err
	case f.withdrawn && !v.Order().After(f.order):
		return out.refuse(&ticket.Refusal{Reason: ticket.Revoked, Message: fmt.Sprintf(
			"slice %s was withdrawn by its issuer (ticket %s, issued at %s): this older ticket is revoked here until %s",
			v.SliceName(), f.jti, unixTime(f.order.IssuedAt), f.expires.UTC().Format(time.RFC3339))})
	case !f.withdrawn && v.Sliver != nil && f.order.After(v.Order()): // a pool grant is not ordered with sliver tickets
		out.reason, out.message = planetv1.ReasonSuperseded, fmt.Sprintf(
			"slice %s last ran a newer ticket here (jti %s, issued at %s): this older one does not bring it back", v.SliceName(), f.jti, unixTime(f.order.IssuedAt))
	}
	return nil
}

// raiseFloor records a slice's floor (a withdrawal, or the ticket it ran
// when it was released), unless the record holds a newer one; a
// withdrawal wins over a release of the same ticket. The floor lasts as
// long as any ticket below it can: its iat plus ticket.MaxLifetime.
func (r *TicketReconciler) raiseFloor(ctx context.Context, rec recordOf) error {
	rec.expires = time.Unix(rec.order.IssuedAt+ticket.MaxLifetimeSeconds, 0)
	want := r.configMap(recordSlice, sliceRecordName(rec.slice), rec)
	f, have, err := r.readFloor(ctx, rec.slice)
	switch {
	case err != nil:
		return err
	case have == nil:
		if err := r.Create(ctx, want); err != nil {
			return fmt.Errorf("recording the floor of slice %s: %w", rec.slice, err) // AlreadyExists: retried, read again
		}
		return nil
	case f != nil && (f.order.After(rec.order) || f.order == rec.order && (f.withdrawn || !rec.withdrawn)):
		return nil // this floor, or a higher one, is recorded
	}
	have.Labels, have.Data = want.Labels, want.Data
	if err := r.Update(ctx, have); err != nil { // optimistic: a conflict is retried
		return fmt.Errorf("recording the floor of slice %s: %w", rec.slice, err)
	}
	return nil
}

func unixTime(s int64) string { return time.Unix(s, 0).UTC().Format(time.RFC3339) }

// skew is the clock skew allowed on tickets.
func (r *TicketReconciler) skew() time.Duration { return ticket.EffectiveSkew(r.Skew) }

// +kubebuilder:rbac:groups="",namespace=planetkube-system,resources=configmaps,verbs=list;delete

// RecordPruner deletes the records of redeemed tickets once what they are
// about has expired (with the clock skew): a jti whose ticket expired no
// longer verifies, and a floor outlives every ticket below it. So the
// records stay bounded by the tickets alive, however many were ever
// redeemed. It runs on the leader, at start and every Interval.
type RecordPruner struct {
	// Client deletes; APIReader lists (records are not cached).
	Client    client.Client
	APIReader client.Reader
	// Namespace is the manager's, where the records are.
	Namespace string
	// Interval between prunes (default an hour); Skew the clock skew
	// allowed on tickets.
	Interval time.Duration
	Skew     time.Duration
	// Now returns the current time (default time.Now).
	Now func() time.Time
}

// NeedLeaderElection: one replica prunes.
func (p *RecordPruner) NeedLeaderElection() bool { return true }

// Start prunes until ctx ends.
func (p *RecordPruner) Start(ctx context.Context) error {
	if p.Now == nil {
		p.Now = time.Now
	}
	interval := p.Interval
	if interval <= 0 {
		interval = time.Hour
	}
	log := ctrl.LoggerFrom(ctx).WithName("ticket-records")
	for {
		if n, err := p.Prune(ctx); err != nil {
			log.Error(err, "Pruning the records of expired tickets; retried at the next round")
		} else if n > 0 {
			log.Info("Pruned the records of expired tickets", "count", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// Prune deletes the records that expired, and returns how many it deleted.
// A record whose expiry cannot be read is kept.
func (p *RecordPruner) Prune(ctx context.Context) (int, error) {
	list := &corev1.ConfigMapList{}
	if err := p.APIReader.List(ctx, list, client.InNamespace(p.Namespace), client.HasLabels{planetv1.LabelTicketRecord}); err != nil {
		return 0, fmt.Errorf("listing ticket records: %w", err)
	}
	cutoff := p.Now().Add(-ticket.EffectiveSkew(p.Skew))
	n := 0
	for i := range list.Items {
		cm := &list.Items[i]
		exp, err := time.Parse(time.RFC3339, cm.Data["expires"])
		if err != nil || exp.After(cutoff) {
			continue
		}
		// Only as read: a floor raised meanwhile is kept.
		if err := p.Client.Delete(ctx, cm, client.Preconditions{UID: &cm.UID, ResourceVersion: &cm.ResourceVersion}); client.IgnoreNotFound(err) != nil && !apierrors.IsConflict(err) {
			return n, fmt.Errorf("deleting ticket record %s: %w", cm.Name, err)
		}
		n++
	}
	return n, nil
}
