package ipfix

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/planetkube/planetkube/internal/flow"
	"github.com/planetkube/planetkube/internal/testing/ports"
	"github.com/planetkube/planetkube/internal/testing/skiplog"
)

// TestNfcapdRoundTrip sends records to a real collector, Debian's nfdump:
// nfcapd receives the IPFIX messages over UDP and nfdump reads back the
// same flows, bytes, packets and times, the NAT source, and each slice by
// number and, from the options template, by name.
func TestNfcapdRoundTrip(t *testing.T) {
	nfcapd, err := exec.LookPath("nfcapd")
	if err != nil {
		skiplog.Skip(t, "nfcapd is not installed (apt-get install nfdump)")
	}
	dir := t.TempDir()
	port := ports.FreeUDP(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, nfcapd, "-b", "127.0.0.1", "-p", strconv.Itoa(port), "-w", dir, "-t", "3600")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// nfcapd is ready once its socket is bound (/proc/net/udp lists it).
	g := NewWithT(t)
	local := fmt.Sprintf("0100007F:%04X", port)
	g.Eventually(func() (string, error) {
		select {
		case err := <-exited:
			return "", fmt.Errorf("nfcapd exited: %v\n%s", err, out.String())
		default:
		}
		b, err := os.ReadFile("/proc/net/udp")
		return string(b), err
	}, "20s", "20ms").Should(ContainSubstring(local), "nfcapd bound to 127.0.0.1:%d", port)

	e, err := New(Options{Collector: fmt.Sprintf("udp://127.0.0.1:%d", port), ObservationDomain: 7}, nil)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Start(runCtx) }()
	tuple := func(src, dst string) flow.Tuple { return flow.Tuple{Src: ap(src), Dst: ap(dst)} }
	recs := []flow.Record{
		{Start: t0, End: t0.Add(90 * time.Second), Proto: 6, Orig: tuple("10.244.1.5:40000", "198.51.100.7:443"),
			Reply: tuple("198.51.100.7:443", "192.0.2.10:61000"), OrigBytes: 5_000_000_000, OrigPackets: 3_400_000, ReplyBytes: 1234, ReplyPackets: 12,
			Slice: "plc.princeton.codeen"},
		{Start: t0.Add(time.Second), End: t0.Add(1500 * time.Millisecond), Proto: 17, Orig: tuple("[fd00::5]:5353", "[2001:db8::7]:53"),
			Reply: tuple("[2001:db8::7]:53", "[fd00::5]:5353"), OrigBytes: 80, OrigPackets: 1, ReplyBytes: 120, ReplyPackets: 1, Slice: "ple.inria.measure"},
		{Start: t0.Add(3 * time.Second), End: t0.Add(4 * time.Second), Proto: 17, Orig: tuple("192.0.2.10:123", "198.51.100.7:123"),
			Reply: tuple("198.51.100.7:123", "192.0.2.10:123"), OrigBytes: 48, OrigPackets: 1, ReplyBytes: 48, ReplyPackets: 1},
	}
	e.Export(recs)
	g.Eventually(func() float64 { return testutil.ToFloat64(e.m.Records) }, "20s").Should(Equal(float64(len(recs))), "records exported")
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// nfcapd has read every datagram (its socket's receive queue is empty):
	// what is still queued when it stops is lost.
	g.Eventually(func() (string, error) { return udpRxQueue(local) }, "20s", "20ms").Should(Equal("00000000"), "nfcapd's receive queue")
	// nfcapd writes its file when it stops.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := <-exited; err != nil {
		t.Fatalf("nfcapd: %v\n%s", err, out.String())
	}
	files, _ := filepath.Glob(filepath.Join(dir, "nfcapd.2*"))
	if len(files) == 0 {
		t.Fatalf("nfcapd wrote no file:\n%s", out.String())
	}
	dump := exec.CommandContext(ctx, "nfdump", "-q", "-N", "-6", "-R", dir, "-o", "fmt:%ts|%te|%pr|%sa|%sp|%da|%dp|%pkt|%byt|%opkt|%obyt|%ivrf|%ivrfnam|%xsa|%xsp")
	dump.Env = append(os.Environ(), "TZ=UTC")
	b, err := dump.CombinedOutput()
	if err != nil {
		t.Fatalf("nfdump: %v\n%s", err, b)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		fs := strings.Split(line, "|")
		for i := range fs {
			fs[i] = strings.TrimSpace(fs[i])
		}
		got = append(got, strings.Join(fs, "|"))
	}
	slices.Sort(got)
	t.Logf("nfdump read back:\n%s", strings.Join(got, "\n"))
	codeen, inria := SliceID("plc.princeton.codeen"), SliceID("ple.inria.measure")
	want := []string{
		fmt.Sprintf("2026-12-02 10:00:00.000|2026-12-02 10:01:30.000|6|10.244.1.5|40000|198.51.100.7|443|3400000|5000000000|12|1234|%d|plc.princeton.codeen|192.0.2.10|61000", codeen),
		fmt.Sprintf("2026-12-02 10:00:01.000|2026-12-02 10:00:01.500|17|fd00::5|5353|2001:db8::7|53|1|80|1|120|%d|ple.inria.measure|0.0.0.0|0", inria),
		"2026-12-02 10:00:03.000|2026-12-02 10:00:04.000|17|192.0.2.10|123|198.51.100.7|123|1|48|1|48|0||0.0.0.0|0",
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("nfdump read back\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// udpRxQueue is the receive queue (hex bytes) of the UDP socket bound to
// local (/proc/net/udp's address:port form).
func udpRxQueue(local string) (string, error) {
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		fs := strings.Fields(line)
		if len(fs) > 4 && fs[1] == local {
			_, rx, _ := strings.Cut(fs[4], ":")
			return rx, nil
		}
	}
	return "", fmt.Errorf("no UDP socket bound to %s", local)
}
