package federation

import (
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/federation/feed"
	"github.com/planetkube/planetkube/internal/testing/emulator"
	"github.com/planetkube/planetkube/internal/ticket"
)

// hostileFeed is a small feed server that answers ple's polls in the ways
// a broken or hostile home would, each on its own path.
type hostileFeed struct {
	*httptest.Server
	// CA is the server's certificate (PEM), for the Authority's
	// feedCABundle: TLS itself verifies, so only the feed is hostile.
	CA string
}

// newHostileFeed starts the server; home holds plc's key (a compromised or
// buggy home signs what it should not), audience is the poller.
func newHostileFeed(home ticket.Signer, audience string) *hostileFeed {
	GinkgoHelper()
	forger := ticket.NewSigner(home.Authority, seedKey("z"))
	requesters := ticket.Keyring{audience: {{ID: ple.signer().KeyID, Public: ple.key.Public().(ed25519.PublicKey)}}}
	sign := func(s ticket.Signer, reqID string, tickets ...string) []byte {
		body, err := feed.SignFeed(s, feed.Feed{Audience: audience, IssuedAt: time.Now().Unix(), Request: reqID, Tickets: tickets})
		Expect(err).NotTo(HaveOccurred())
		return []byte(body)
	}
	sliverTicket := func(aud string, iat time.Time) string {
		c := ticket.Claims{
			Audience: aud, IssuedAt: iat.Unix(), Expiry: time.Now().Add(24 * time.Hour).Unix(), ID: "hostile-" + aud + "-" + iat.Format("150405"),
			Sliver: &ticket.SliverGrant{Slice: "plc.mit.steady", Template: planetv1.SliverTemplate{Image: "evil:1"}},
		}
		token, err := home.Issue(c)
		Expect(err).NotTo(HaveOccurred())
		return token
	}
	stale := sign(home, strings.Repeat("0", 32))
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		token := strings.TrimPrefix(r.Header.Get("Authorization"), feed.AuthScheme+" ")
		req, err := feed.VerifyRequest(token, requesters, home.Authority, time.Minute, time.Now())
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var body []byte
		switch r.URL.Path {
		case "/forged":
			body = sign(forger, req.ID)
		case "/garbage":
			body = []byte("<html>this is not a feed</html>")
		case "/oversized":
			body = make([]byte, feed.MaxFeedBytes+1)
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
			return
		case "/other-audience":
			body = sign(home, req.ID, sliverTicket("plj", time.Now()))
		case "/replayed-feed":
			body = stale
		case "/old-ticket":
			body = sign(home, req.ID, sliverTicket(audience, time.Now().Add(-time.Hour)))
		default:
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/jose")
		_, _ = w.Write(body)
	})
	srv := httptest.NewTLSServer(mux)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return &hostileFeed{Server: srv, CA: string(ca)}
}

// requestFeed asks a home's feed as requester, signing with key, and
// returns the status and body.
func requestFeed(home *emulator.Cluster, key ed25519.PrivateKey, requester string) (int, string) {
	GinkgoHelper()
	_, _, ca, err := home.FeedServing()
	Expect(err).NotTo(HaveOccurred())
	pool := x509.NewCertPool()
	Expect(pool.AppendCertsFromPEM(ca)).To(BeTrue())
	token, _, err := feed.NewRequest(ticket.NewSigner(requester, key), "plc", time.Now())
	Expect(err).NotTo(HaveOccurred())
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, home.FeedURL(), nil)
	Expect(err).NotTo(HaveOccurred())
	r.Header.Set("Authorization", feed.AuthScheme+" "+token)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	resp, err := c.Do(r)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(body)
}
