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
func FeedHandler(c, secrets client.Reader, signer *authority.SignerSource, o Options) http.Handler {
	mux := http.NewServeMux()
	tickets := &controllers.FeedTickets{Reader: secrets, Namespace: o.Namespace}
	mux.Handle(feed.Path, &feed.Handler{
		Local:  o.Authority,
		Signer: signer.Signer,
		Keys:   authority.Keys{Reader: c, Own: signer}.Of,
		Tickets: func(ctx context.Context, requester string) ([]string, error) {
			return tickets.For(ctx, requester, time.Now())
		},
		Skew: o.TicketSkew,
	})
	return mux
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
