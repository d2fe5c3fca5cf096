package cli

import (
	"bytes"
	"flag"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestHelp checks that --help prints the usage to standard output and is
// told apart from an error (the binary exits 0 on it).
func TestHelp(t *testing.T) {
	for _, arg := range []string{"--help", "-h", "-help"} {
		var out bytes.Buffer
		Stdout = &out
		err := Parse("manager", []string{arg}, func(fs *flag.FlagSet) { fs.String("authority", "plc", "the authority") })
		Stdout = os.Stdout
		if !IsHelp(err) {
			t.Fatalf("%s: err %v, want help", arg, err)
		}
		if s := out.String(); !strings.Contains(s, "Usage: planetkube manager") || !strings.Contains(s, "-authority") {
			t.Fatalf("%s: usage %q", arg, s)
		}
	}
	if err := Parse("manager", []string{"--nope"}, func(*flag.FlagSet) {}); err == nil || IsHelp(err) {
		t.Fatalf("an unknown flag: %v", err)
	}
}

func TestSplitList(t *testing.T) {
	for in, want := range map[string][]string{
		"":                        nil,
		" , ,":                    nil,
		"localhost":               {"localhost"},
		"a, b ,,c":                {"a", "b", "c"},
		"princeton,mit,berkeley,": {"princeton", "mit", "berkeley"},
	} {
		if got := SplitList(in); !slices.Equal(got, want) {
			t.Errorf("SplitList(%q) = %q, want %q", in, got, want)
		}
	}
}
