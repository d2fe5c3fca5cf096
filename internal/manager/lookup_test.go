package manager

import (
	"flag"
	"strings"
	"testing"
)

// TestFlowLookupHandlerRefusesBadFlags: the cluster-wide lookup's flags are
// checked when the manager builds it, with the flag named.
func TestFlowLookupHandlerRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, ""},
		{[]string{"--lookup-trusted-proxies=10.244.0.0/16, fd00::/64"}, ""},
		{[]string{"--lookup-trusted-proxies=10.244.0.0/16,ingress-nginx"}, `--lookup-trusted-proxies: "ingress-nginx" is not a CIDR`},
		{[]string{"--agent-port=0"}, "--agent-port must be in 1..65535"},
		{[]string{"--archive-url=http://planetkube-archiver.planetkube-system.svc:9470"}, ""},
		{[]string{"--archive-url=planetkube-archiver:9470"}, "--archive-url"},
		{[]string{"--archive-url=http://x:9470/?a=b"}, "--archive-url"},
		{[]string{"--agent-selector=a in (b"}, "--agent-selector"},
		{[]string{"--operator-url=javascript:alert(1)"}, "--operator-url"},
	} {
		var o Options
		fs := flag.NewFlagSet("manager", flag.ContinueOnError)
		o.BindFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		_, err := FlowLookupHandler(nil, nil, o)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}
