// Package httpserver runs an HTTP handler as a controller-runtime Runnable
// on every replica: the agents' flow lookup, public page and segment
// downloads, the manager's cluster-wide lookup and federation feed, the
// archiver's lookups.
package httpserver

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Server serves a handler on an address until its context ends; it is a
// controller-runtime Runnable that every replica runs (no leader election).
type Server struct {
	// Addr is the listen address, such as ":9470".
	Addr string
	// Handler is what it serves.
	Handler http.Handler
	// Ready, if set, is closed once the server listens.
	Ready chan struct{}
	// TLS, if set, makes it serve HTTPS with this configuration.
	TLS *tls.Config
	// What names what is served, in errors (default "flow lookups").
	What string
}

func (s *Server) what() string {
	if s.What == "" {
		return "flow lookups"
	}
	return s.What
}

// Start listens and serves until ctx ends, then shuts down gracefully.
func (s *Server) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("listening on %s for %s: %w", s.Addr, s.what(), err)
	}
	if s.Ready != nil {
		close(s.Ready)
	}
	srv := &http.Server{
		Handler:           s.Handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      time.Minute,
		MaxHeaderBytes:    16 << 10,
		TLSConfig:         s.TLS,
	}
	errc := make(chan error, 1)
	go func() {
		if s.TLS != nil {
			errc <- srv.ServeTLS(ln, "", "")
			return
		}
		errc <- srv.Serve(ln)
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("serving %s on %s: %w", s.what(), s.Addr, err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}

// NeedLeaderElection is false: every replica serves lookups.
func (s *Server) NeedLeaderElection() bool { return false }
