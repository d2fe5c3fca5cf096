package kubeconfig

import (
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, and that whatever it accepts
// talks https to a verified server in a valid namespace.
func FuzzParse(f *testing.F) {
	p := newTestPKI(f)
	f.Add(write(f, tokenConfig(p)))
	f.Add(write(f, certConfig(p)))
	for _, tc := range refusals(f, p) {
		f.Add(tc.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		peer, err := Parse(data)
		if err != nil {
			if peer != nil {
				t.Fatalf("refusal %q returned a peer", err)
			}
			return
		}
		c := peer.Config
		switch {
		case c == nil:
			t.Fatal("accepted with no configuration")
		case !strings.HasPrefix(c.Host, "https://") || c.Host != peer.Server:
			t.Fatalf("accepted host %q, server %q", c.Host, peer.Server)
		case len(c.CAData) == 0:
			t.Fatal("accepted with no CA data")
		case peer.Namespace == "":
			t.Fatal("accepted with no namespace")
		case c.Insecure || c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" || c.BearerTokenFile != "":
			t.Fatalf("accepted with insecure TLS or a file: %+v", c.TLSClientConfig)
		case c.ExecProvider != nil || c.AuthProvider != nil || c.Proxy != nil || c.Username != "" || c.Password != "":
			t.Fatal("accepted with an exec or auth provider, a proxy or basic authentication")
		case c.BearerToken == "" && (len(c.CertData) == 0 || len(c.KeyData) == 0):
			t.Fatal("accepted with no credentials")
		}
	})
}
