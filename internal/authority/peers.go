package authority

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/ticket"
)

// Peers the operator lists are Authorities the manager keeps: applied with
// this field manager and labelled LabelPeer, so that one dropped from the
// list is deleted (and, through the Authority finalizer, its slices here).
const (
	peersFieldOwner = "planetkube-peers"
	// LabelPeer marks the Authorities made from --peers-file.
	LabelPeer = "planetkube.io/peer"
	// MaxPeers bounds the list.
	MaxPeers = 64
)

// +kubebuilder:rbac:groups=planetkube.io,resources=authorities,verbs=delete

// Peer is a peer authority as the operator lists it (the chart's peers).
type Peer struct {
	// Name is the peer's authority (ple).
	Name string `json:"name"`
	// DisplayName is shown on its Authority.
	DisplayName string `json:"displayName,omitempty"`
	// Keys are its public keys (id and base64 Ed25519 key, as its own
	// Authority shows them).
	Keys []planetv1.AuthorityKey `json:"keys"`
	// FeedURL, FeedCABundle and PollIntervalSeconds say where and how
	// often its feed is polled (pull federation); Push how its cluster is
	// reached to push tickets. As the Authority's spec.
	FeedURL             string                  `json:"feedURL,omitempty"`
	FeedCABundle        string                  `json:"feedCABundle,omitempty"`
	PollIntervalSeconds int32                   `json:"pollIntervalSeconds,omitempty"`
	Push                *planetv1.AuthorityPush `json:"push,omitempty"`
}

// ReadPeers reads and checks a YAML list of peers: each a valid authority
// name other than local and listed once, with 1 to 8 keys that decode as
// Ed25519 public keys whose id is their own.
func ReadPeers(data []byte, local string) ([]Peer, error) {
	var peers []Peer
	if err := yaml.UnmarshalStrict(data, &peers); err != nil {
		return nil, fmt.Errorf("not a YAML list of peers (name, displayName, keys): %w", err)
	}
	if len(peers) > MaxPeers {
		return nil, fmt.Errorf("%d peers, more than %d", len(peers), MaxPeers)
	}
	seen := map[string]bool{}
	for i, p := range peers {
		switch {
		case !naming.ValidAuthority(p.Name):
			return nil, fmt.Errorf("peer %d: %q is not an authority name", i+1, p.Name)
		case p.Name == local:
			return nil, fmt.Errorf("peer %d: %s is this install's own authority", i+1, p.Name)
		case seen[p.Name]:
			return nil, fmt.Errorf("peer %s is listed twice", p.Name)
		case len(p.Keys) == 0 || len(p.Keys) > 8:
			return nil, fmt.Errorf("peer %s: give 1 to 8 keys", p.Name)
		case len(p.DisplayName) > 128:
			return nil, fmt.Errorf("peer %s: displayName over 128 characters", p.Name)
		case p.FeedURL != "" && (!strings.HasPrefix(p.FeedURL, "https://") || len(p.FeedURL) > 2048):
			return nil, fmt.Errorf("peer %s: feedURL must be an https:// URL of at most 2048 characters", p.Name)
		case p.PollIntervalSeconds != 0 && (p.PollIntervalSeconds < 10 || p.PollIntervalSeconds > 86400):
			return nil, fmt.Errorf("peer %s: pollIntervalSeconds must be in 10..86400", p.Name)
		case p.Push != nil && (p.Push.SecretName == "" || len(p.Push.SecretName) > 253):
			return nil, fmt.Errorf("peer %s: push.secretName must name a Secret", p.Name)
		case len(p.FeedCABundle) > 65536:
			return nil, fmt.Errorf("peer %s: feedCABundle over 64 KiB", p.Name)
		}
		seen[p.Name] = true
		for _, k := range p.Keys {
			pub, err := ticket.DecodePublicKey(k.PublicKey)
			if err != nil || ticket.KeyID(pub) != k.ID {
				return nil, fmt.Errorf("peer %s: key %q is not a base64 Ed25519 public key whose id is its own (the first 16 hex characters of its SHA-256)", p.Name, k.ID)
			}
		}
	}
	return peers, nil
}

// PeerSync keeps one Authority per listed peer and deletes those it made
// for peers no longer listed. It runs once on the leader, at start (the
// list comes from a file the chart mounts; a changed list rolls the pods).
type PeerSync struct {
	Client client.Client
	Peers  []Peer
}

// NeedLeaderElection: one replica writes.
func (s *PeerSync) NeedLeaderElection() bool { return true }

// Start syncs, retrying with back-off until it succeeds or ctx ends.
func (s *PeerSync) Start(ctx context.Context) error {
	return retry(ctx, "Syncing the peer authorities; retrying", s.Sync, "peers", len(s.Peers))
}

// Sync applies every listed peer and deletes the peers it made before that
// are no longer listed. An Authority made otherwise (without LabelPeer) is
// never touched, even when the list names it.
func (s *PeerSync) Sync(ctx context.Context) error {
	names := make([]string, 0, len(s.Peers))
	for _, p := range s.Peers {
		have := &planetv1.Authority{}
		err := s.Client.Get(ctx, client.ObjectKey{Name: p.Name}, have)
		if client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("reading Authority %s: %w", p.Name, err)
		}
		if err == nil && have.Labels[LabelPeer] != "true" {
			// Made by hand (or by a ticket's redemption): its owner keeps it.
			ctrl.LoggerFrom(ctx).Info("An Authority not made from the peers list has a listed peer's name: left as it is", "authority", p.Name)
			continue
		}
		keys := make([]any, 0, len(p.Keys))
		for _, k := range p.Keys {
			keys = append(keys, map[string]any{"id": k.ID, "publicKey": k.PublicKey})
		}
		spec := map[string]any{"keys": keys}
		if p.DisplayName != "" {
			spec["displayName"] = p.DisplayName
		}
		if p.FeedURL != "" {
			spec["feedURL"] = p.FeedURL
		}
		if p.FeedCABundle != "" {
			spec["feedCABundle"] = p.FeedCABundle
		}
		if p.PollIntervalSeconds != 0 {
			spec["pollIntervalSeconds"] = int64(p.PollIntervalSeconds)
		}
		if p.Push != nil {
			spec["push"] = map[string]any{"secretName": p.Push.SecretName}
		}
		obj := map[string]any{
			"apiVersion": planetv1.GroupVersion.String(),
			"kind":       "Authority",
			"metadata": map[string]any{
				"name":   p.Name,
				"labels": map[string]any{planetv1.LabelManagedBy: planetv1.ManagedByValue, LabelPeer: "true"},
			},
			"spec": spec,
		}
		if err := s.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(&unstructured.Unstructured{Object: obj}), client.FieldOwner(peersFieldOwner), client.ForceOwnership); err != nil {
			return fmt.Errorf("applying peer Authority %s: %w", p.Name, err)
		}
		names = append(names, p.Name)
	}
	made := &planetv1.AuthorityList{}
	if err := s.Client.List(ctx, made, client.MatchingLabels{LabelPeer: "true"}); err != nil {
		return fmt.Errorf("listing peer Authorities: %w", err)
	}
	for i := range made.Items {
		a := &made.Items[i]
		if slices.Contains(names, a.Name) || !a.DeletionTimestamp.IsZero() {
			continue
		}
		if err := s.Client.Delete(ctx, a); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting Authority %s, no longer a peer: %w", a.Name, err)
		}
		ctrl.LoggerFrom(ctx).Info("Deleted an Authority no longer listed as a peer", "authority", a.Name)
	}
	return nil
}
