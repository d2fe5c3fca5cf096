package ticketcmd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/planetkube/planetkube/internal/cli"
	"github.com/planetkube/planetkube/internal/ticket"
)

var clock = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

// run runs a command line (ticket or authority ...) and returns its output.
func run(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	std := IO{In: strings.NewReader(stdin), Out: &out, Err: &errb, Now: func() time.Time { return clock }}
	cli.Stdout = &out
	t.Cleanup(func() { cli.Stdout = os.Stdout })
	var err error
	switch args[0] {
	case "ticket":
		err = Ticket(args[1:], std)
	case "authority":
		err = Authority(args[1:], std)
	}
	return out.String(), err
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDelegatedTicketRoundTrip makes a root and a child key, delegates,
// issues a child's ticket with the chain and inspects it against the root's
// Authority only: it verifies. Against another root, it does not.
func TestDelegatedTicketRoundTrip(t *testing.T) {
	dir := t.TempDir()
	rootKey, childKey := filepath.Join(dir, "plc.pem"), filepath.Join(dir, "japan.pem")
	rootAuthority, err := run(t, "", "authority", "keygen", "--authority", "plc", "--out", rootKey)
	if err != nil {
		t.Fatal(err)
	}
	childAuthority, err := run(t, "", "authority", "keygen", "--authority", "plc.japan", "--out", childKey)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(rootKey); st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", st.Mode())
	}
	if strings.Contains(rootAuthority, "PRIVATE") {
		t.Fatal("keygen printed the private key")
	}
	if _, err := run(t, "", "authority", "keygen", "--authority", "plc", "--out", rootKey); err == nil {
		t.Fatal("keygen overwrote a key file")
	}
	childPub := field(t, childAuthority, "publicKey:")

	deleg, err := run(t, "", "authority", "delegate", "--key", rootKey, "--authority", "plc", "--child", "plc.japan", "--child-public-key", childPub, "--expires-in", "720h")
	if err != nil {
		t.Fatal(err)
	}
	chain := write(t, dir, "chain", deleg)
	spec := write(t, dir, "spec.yaml", `audience: ple
expiresIn: 24h
sliver:
  slice: plc.japan.utokyo.codeen
  description: a CDN
  template: {image: nginx}
  nodes: {sites: [inria]}
`)
	tok, err := run(t, "", "ticket", "issue", "-f", spec, "--key", childKey, "--authority", "plc.japan", "--chain", chain)
	if err != nil {
		t.Fatal(err)
	}
	tok = strings.TrimSpace(tok)

	rootFile := write(t, dir, "root.yaml", rootAuthority)
	out, err := run(t, "", "ticket", "inspect", "--authorities", rootFile, tok)
	if err != nil {
		t.Fatalf("inspect: %v\n%s", err, out)
	}
	for _, want := range []string{"iss: plc.japan", "aud: ple", "slice: plc.japan.utokyo.codeen", "verified: yes", "root: plc"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}

	other := write(t, dir, "other.yaml", strings.Replace(childAuthority, "name: plc.japan", "name: plc", 1))
	out, err = run(t, "", "ticket", "inspect", "--authorities", other, tok)
	if ticket.ReasonOf(err) != ticket.BadDelegation || !strings.Contains(out, "verified: no") {
		t.Fatalf("inspect against the wrong root: %v\n%s", err, out)
	}

	// -o ticket prints a manifest; stdin works for inspect.
	manifest, err := run(t, "", "ticket", "issue", "-f", spec, "--key", childKey, "--authority", "plc.japan", "--chain", chain, "-o", "ticket", "--namespace", "tickets")
	if err != nil || !strings.Contains(manifest, "kind: Ticket") || !strings.Contains(manifest, "namespace: tickets") {
		t.Fatalf("-o ticket: %v\n%s", err, manifest)
	}
	if out, err := run(t, tok+"\n", "ticket", "inspect", "-"); err != nil || !strings.Contains(out, "verified: not checked") {
		t.Fatalf("inspect -: %v\n%s", err, out)
	}
}

func TestIssueRefuses(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "plc.pem")
	if _, err := run(t, "", "authority", "keygen", "--authority", "plc", "--out", key); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct{ spec, want string }{
		"unknown field":         {"audience: ple\nsliver: {slice: plc.a.b, template: {image: x}}\nextra: 1\n", "unknown field"},
		"another authority":     {"audience: ple\nsliver: {slice: ple.a.b, template: {image: x}}\n", "OutOfScope"},
		"no grant":              {"audience: ple\n", "InvalidGrant"},
		"both expiries":         {"audience: ple\nexpiresIn: 1h\nexpiresAt: 2027-01-01T00:00:00Z\nsliver: {slice: plc.a.b, template: {image: x}}\n", "not both"},
		"slice outlives ticket": {"audience: ple\nexpiresIn: 1h\nsliver: {slice: plc.a.b, template: {image: x}, expiresAt: 2027-06-01T00:00:00Z}\n", "InvalidGrant"},
		// exp - iat as a Duration wrapped past 292 years: 2320 was signed.
		"expiry in 2320":             {"audience: ple\nexpiresAt: 2320-01-01T00:00:00Z\nsliver: {slice: plc.a.b, template: {image: x}}\n", "InvalidGrant"},
		"withdrawal of another's":    {"audience: ple\nwithdraw: {slice: ple.a.b}\n", "OutOfScope"},
		"withdrawal and sliver both": {"audience: ple\nwithdraw: {slice: plc.a.b}\nsliver: {slice: plc.a.b, template: {image: x}}\n", "InvalidGrant"},
	} {
		t.Run(name, func(t *testing.T) {
			spec := write(t, dir, "spec.yaml", c.spec)
			_, err := run(t, "", "ticket", "issue", "-f", spec, "--key", key, "--authority", "plc")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want one saying %q", err, c.want)
			}
		})
	}
	spec := write(t, dir, "ok.yaml", "audience: ple\nsliver: {slice: plc.a.b, template: {image: x}}\n")
	if _, err := run(t, "", "ticket", "issue", "-f", spec); err == nil || !strings.Contains(err.Error(), "--key") {
		t.Fatalf("no key: %v", err)
	}
	// A withdrawal lives, by default, as long as any ticket it revokes.
	spec = write(t, dir, "withdraw.yaml", "audience: ple\nwithdraw: {slice: plc.a.b}\n")
	token, err := run(t, "", "ticket", "issue", "-f", spec, "--key", key, "--authority", "plc")
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := ticket.Inspect(strings.TrimSpace(token))
	if err != nil || c.Kind() != "withdraw" || c.Withdraw.Slice != "plc.a.b" || c.Expiry-c.IssuedAt != ticket.MaxLifetimeSeconds {
		t.Fatalf("withdrawal %+v (%v): want plc.a.b withdrawn for 8 weeks", c, err)
	}
}

// TestNothingOutlivesItsChain checks that a delegate signs neither a
// delegation nor a ticket that would outlive its own delegation (its
// audience would refuse both), and signs them when they do not.
func TestNothingOutlivesItsChain(t *testing.T) {
	dir := t.TempDir()
	keys := map[string]string{}
	pubs := map[string]string{}
	for _, name := range []string{"plc", "plc.japan", "plc.japan.tokyo"} {
		keys[name] = filepath.Join(dir, name+".pem")
		out, err := run(t, "", "authority", "keygen", "--authority", name, "--out", keys[name])
		if err != nil {
			t.Fatal(err)
		}
		pubs[name] = field(t, out, "publicKey:")
	}
	deleg, err := run(t, "", "authority", "delegate", "--key", keys["plc"], "--authority", "plc", "--child", "plc.japan", "--child-public-key", pubs["plc.japan"], "--expires-in", "48h")
	if err != nil {
		t.Fatal(err)
	}
	chain := write(t, dir, "chain", deleg)
	sub := func(expiresIn string, signer ...string) []string {
		return append([]string{"authority", "delegate", "--chain", chain, "--child", "plc.japan.tokyo", "--child-public-key", pubs["plc.japan.tokyo"], "--expires-in", expiresIn}, signer...)
	}
	japan := []string{"--key", keys["plc.japan"], "--authority", "plc.japan"}

	_, err = run(t, "", sub("96h", japan...)...)
	if err == nil || !strings.Contains(err.Error(), "2026-12-06T12:00:00Z") || !strings.Contains(err.Error(), "2026-12-04T12:00:00Z") || !strings.Contains(err.Error(), "--expires-in") {
		t.Fatalf("a 96h delegation under a 48h one: %v", err)
	}
	if _, err := run(t, "", sub("96h", "--key", keys["plc.japan"], "--authority", "plc.korea")...); err == nil || !strings.Contains(err.Error(), "not to the signer plc.korea") {
		t.Fatalf("a chain that is not the signer's: %v", err)
	}
	if _, err := run(t, "", sub("48h", japan...)...); err != nil {
		t.Fatalf("a delegation as long as its parent's: %v", err)
	}

	issue := func(expiresIn string) error {
		spec := write(t, dir, "spec.yaml", "audience: ple\nexpiresIn: "+expiresIn+"\nsliver: {slice: plc.japan.utokyo.codeen, template: {image: nginx}}\n")
		_, err := run(t, "", append([]string{"ticket", "issue", "-f", spec, "--chain", chain}, japan...)...)
		return err
	}
	if err := issue("96h"); err == nil || !strings.Contains(err.Error(), "after its delegation") || !strings.Contains(err.Error(), "2026-12-04T12:00:00Z") {
		t.Fatalf("a 96h ticket under a 48h delegation: %v", err)
	}
	if err := issue("48h"); err != nil {
		t.Fatalf("a ticket as long as its delegation: %v", err)
	}
	if err := issue("336h"); err == nil {
		t.Fatal("a ticket of the default lifetime (14 days) under a 48h delegation")
	}
	empty := write(t, dir, "empty", "\n")
	spec := write(t, dir, "spec.yaml", "audience: ple\nexpiresIn: 1h\nsliver: {slice: plc.japan.utokyo.codeen, template: {image: nginx}}\n")
	if _, err := run(t, "", append([]string{"ticket", "issue", "-f", spec, "--chain", empty}, japan...)...); err == nil || !strings.Contains(err.Error(), "no delegation") {
		t.Fatalf("an empty chain: %v", err)
	}
}

// TestHelp checks that every command prints its usage on --help and
// succeeds.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{
		{"ticket", "--help"}, {"ticket", "issue", "--help"}, {"ticket", "inspect", "-h"},
		{"authority", "--help"}, {"authority", "keygen", "--help"}, {"authority", "delegate", "--help"},
	} {
		out, err := run(t, "", args...)
		if err != nil || !strings.Contains(out, "Usage: planetkube "+args[0]) {
			t.Errorf("%v: err %v, output %q", args, err, out)
		}
	}
}

// field returns the value after the first "key" in a YAML text.
func field(t *testing.T, text, key string) string {
	t.Helper()
	i := strings.Index(text, key)
	if i < 0 {
		t.Fatalf("no %q in %s", key, text)
	}
	rest := strings.TrimSpace(text[i+len(key):])
	return strings.Fields(rest)[0]
}
