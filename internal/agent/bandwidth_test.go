package agent

import (
	"flag"
	"strings"
	"testing"
)

// TestBandwidthFlags: the defaults are PlanetLab's and valid; bad values are
// refused with the flag named.
func TestBandwidthFlags(t *testing.T) {
	parse := func(args ...string) (Options, error) {
		var o Options
		fs := flag.NewFlagSet("node-agent", flag.ContinueOnError)
		o.BindFlags(fs)
		if err := fs.Parse(append([]string{"--node-name=n1", "--bandwidth"}, args...)); err != nil {
			return o, err
		}
		return o, o.Validate()
	}
	o, err := parse()
	if err != nil {
		t.Fatalf("Defaults refused: %v", err)
	}
	if p := o.Bandwidth.policy(); p.Budget != 10_546_875*1024 || p.Threshold != 0.8 || p.MaxRate != DefaultNodeCap || p.MinRate != 1000 {
		t.Errorf("Default policy %+v, want PlanetLab's", p)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--bandwidth-exempt=10.0.0.0/8,nowhere"}, "--bandwidth-exempt"},
		{[]string{"--bandwidth-threshold=1.5"}, "threshold"},
		{[]string{"--bandwidth-node-cap=0"}, "max rate is zero"},
		{[]string{"--bandwidth-interval=0s"}, "--bandwidth-interval"},
		{[]string{"--bandwidth-node-cap=1000", "--bandwidth-min-rate=5000"}, "--bandwidth-min-rate"},
		{[]string{"--bandwidth-period=-1h"}, "period"},
	} {
		if _, err := parse(c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error naming %s", c.args, err, c.want)
		}
	}
	if _, err := parse("--bandwidth-exempt=192.0.2.0/24, 2001:db8::/32"); err != nil {
		t.Errorf("Two exempt networks refused: %v", err)
	}
}
