package manager

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	flowquery "github.com/planetkube/planetkube/internal/agent/query"
	"github.com/planetkube/planetkube/internal/authority"
	"github.com/planetkube/planetkube/internal/federation/feed"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/ticket"
)

// FeedHandler is this install's feed (pull federation): to a peer that
// signs its request with a key of its Authority here, the tickets of the
// home slices that name it, from their status.federation.
func FeedHandler(c client.Reader, signer *authority.SignerSource, o Options) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(feed.Path, &feed.Handler{
		Local:  o.Authority,
		Signer: signer.Signer,
		Keys: func(ctx context.Context) (ticket.Keyring, error) {
			list := &planetv1.AuthorityList{}
			if err := c.List(ctx, list); err != nil {
				return nil, err
			}
			return authority.Keyring(list.Items), nil
		},
		Tickets: func(ctx context.Context, requester string) ([]string, error) {
			return FeedTickets(ctx, c, requester, time.Now())
		},
		Skew: o.TicketSkew,
	})
	return mux
}

// FeedTickets returns the unexpired tickets the home slices hold for a
// peer.
func FeedTickets(ctx context.Context, c client.Reader, requester string, now time.Time) ([]string, error) {
	list := &planetv1.SliceList{}
	if err := c.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil { // read-only
		return nil, err
	}
	var out []string
	for i := range list.Items {
		s := &list.Items[i]
		if naming.IsAuthorityNamespace(s.Namespace) || !s.DeletionTimestamp.IsZero() {
			continue
		}
		for _, e := range s.Status.Federation {
			if e.Authority != requester || e.Ticket == "" || e.Phase == planetv1.FederationWithdrawn || e.Phase == planetv1.FederationFailed {
				continue
			}
			if c, _, err := ticket.Inspect(e.Ticket); err != nil || !c.Expires().After(now) {
				continue // expired since: the federation controller withdraws it
			}
			out = append(out, e.Ticket)
		}
	}
	return out, nil
}

// feedServer serves the feed over TLS with the certificate of a folder
// (tls.crt, tls.key), reloaded when it changes. Every replica serves it.
type feedServer struct {
	addr, certDir string
	handler       http.Handler
}

// NeedLeaderElection: every replica serves the feed behind the Service.
func (s *feedServer) NeedLeaderElection() bool { return false }

// Start serves until ctx ends.
func (s *feedServer) Start(ctx context.Context) error {
	watcher, err := certwatcher.New(filepath.Join(s.certDir, "tls.crt"), filepath.Join(s.certDir, "tls.key"))
	if err != nil {
		return fmt.Errorf("loading the feed's certificate from %s: %w", s.certDir, err)
	}
	go func() { _ = watcher.Start(ctx) }()
	ctrl.LoggerFrom(ctx).Info("Serving the federation feed", "address", s.addr, "path", feed.Path)
	return (&flowquery.Server{
		Addr: s.addr, Handler: s.handler, What: "the federation feed",
		TLS: &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: watcher.GetCertificate},
	}).Start(ctx)
}
