package archiver

import (
	"flag"
	"strings"
	"testing"
)

// TestValidate: the archiver's flags are checked at start, with the flag
// named.
func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, ""},
		{[]string{"--archive-dir=/data", "--retention=720h", "--max-bytes=1000000000"}, ""},
		{[]string{"--archive-dir="}, "--archive-dir"},
		{[]string{"--interval=0"}, "--interval"},
		{[]string{"--max-bytes=-1"}, "--max-bytes"},
		{[]string{"--agent-port=70000"}, "--agent-port"},
		{[]string{"--agent-selector=a in (b"}, "--agent-selector"},
		{[]string{"--service-account="}, "--service-account"},
		{[]string{"--lookup-unlimited=10.244.0.0/16,pods"}, "--lookup-unlimited"},
		{[]string{"--agent-tls=plain"}, ""},
		{[]string{"--agent-tls=none"}, "--agent-tls"},
	} {
		var o Options
		fs := flag.NewFlagSet("archiver", flag.ContinueOnError)
		o.BindFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		err := o.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}
