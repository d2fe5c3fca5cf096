package manager

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/planetkube/planetkube/controllers"
	"github.com/planetkube/planetkube/internal/authority"
	"github.com/planetkube/planetkube/internal/federation/feed"
	"github.com/planetkube/planetkube/internal/httpserver"
)

// FeedHandler is this install's feed (pull federation): to a peer that
// signs its request with a key of its Authority here, the tickets the home
// slices were given for it (and the withdrawals of those it no longer
// runs), from their Secrets in the manager's namespace (secrets reads
// them: the cache of those Secrets).
func FeedHandler(c client.Reader, secrets cache.Cache, signer *authority.SignerSource, o Options) (http.Handler, error) {
	tickets := &controllers.FeedTickets{Reader: secrets, Namespace: o.Namespace}
	// Every change to the Secrets makes the versions computed before it
	// computed again.
	inf, err := secrets.GetInformer(context.Background(), &corev1.Secret{}, cache.BlockUntilSynced(false))
	if err != nil {
		return nil, fmt.Errorf("watching the tickets' Secrets for the feed: %w", err)
	}
	changed := func(any) { tickets.Changed() }
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: changed, UpdateFunc: func(_, o any) { changed(o) }, DeleteFunc: changed,
	}); err != nil {
		return nil, fmt.Errorf("watching the tickets' Secrets for the feed: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle(feed.Path, &feed.Handler{
		Local:  o.Authority,
		Signer: signer.Signer,
		Keys:   authority.Keys{Reader: c, Own: signer}.Of,
		Tickets: func(ctx context.Context, requester, have string) (feed.Answer, error) {
			return tickets.Answer(ctx, requester, have, time.Now())
		},
		Skew: o.TicketSkew,
	})
	return mux, nil
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
	return (&httpserver.Server{
		Addr: s.addr, Handler: s.handler, What: "the federation feed",
		TLS: &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: watcher.GetCertificate},
	}).Start(ctx)
}
