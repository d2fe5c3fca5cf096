// Command workload is what the real-node tests run in slivers, one static
// binary in two images (internal/testing/realnode builds them): as the
// sandbox's pause process, and as a sliver's workload that burns CPU, grows
// its memory or sends and receives TCP and UDP.
//
//	workload pause [anything]               sleep until SIGTERM, reaping children (the sandbox image)
//	workload cpu [-threads N] [-pin CPU]    spin N threads until killed, on one CPU if pinned
//	workload mem -mib N [-step-mib S]       grow to N MiB, S MiB a second, touching every page; then hold
//	workload cat FILE...                    print files (the images have no shell)
//	workload tcp-serve -listen ADDR         accept connections and discard what they send
//	workload udp-serve -listen ADDR         receive datagrams and discard them
//	workload tcp-send -to ADDR -bytes N     send N bytes on one connection (N 0: until killed), then sleep
//	workload udp-send -to ADDR -bytes N     send N bytes in 1,000-byte datagrams (N 0: until killed), then sleep
//	workload tcp-send ... -every D          send N bytes on a new connection every D, until killed
//
// The senders sleep once done, so that a sliver's pod stays Running; with
// -exit they exit (`kubectl exec`).
//
// Every mode prints one line a second saying what it did so far, so that
// `kubectl logs` shows progress.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: workload pause|cpu|mem|tcp-serve|udp-serve|tcp-send|udp-send [flags]")
		os.Exit(2)
	}
	mode, args := os.Args[1], os.Args[2:]
	if mode == "cat" {
		for _, f := range args {
			b, err := os.ReadFile(f)
			if err != nil {
				fmt.Fprintln(os.Stderr, "workload:", err)
				os.Exit(1)
			}
			_, _ = os.Stdout.Write(b)
		}
		return
	}
	if mode == "pause" {
		// The pause image stands in for registry.k8s.io/pause on the real
		// nodes: whatever arguments a sliver's template gives, it sleeps.
		pause()
		return
	}
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	threads := fs.Int("threads", 1, "cpu: busy threads")
	pin := fs.Int("pin", -1, "cpu: the CPU the threads spin on (-1: any); slivers pinned to one CPU compete for it by their weights alone")
	mib := fs.Int("mib", 64, "mem: MiB to grow to")
	stepMiB := fs.Int("step-mib", 16, "mem: MiB added a second")
	listen := fs.String("listen", ":9000", "tcp-serve, udp-serve: the address to listen on")
	to := fs.String("to", "", "tcp-send, udp-send: the address to send to")
	bytes := fs.Int64("bytes", 0, "tcp-send, udp-send: bytes to send (0: until killed)")
	exit := fs.Bool("exit", false, "tcp-send, udp-send: exit once done instead of sleeping")
	every := fs.Duration("every", 0, "tcp-send, udp-send: send -bytes again on a new connection (a new flow) every this long, until killed (0: once)")
	_ = fs.Parse(args)

	var err error
	switch mode {
	case "cpu":
		for range *threads {
			go spin(*pin)
		}
		pause()
	case "mem":
		grow(*mib, *stepMiB)
	case "tcp-serve":
		err = tcpServe(*listen)
	case "udp-serve":
		err = udpServe(*listen)
	case "tcp-send", "udp-send":
		if *every > 0 {
			err = sendEvery(mode[:3], *to, *bytes, *every)
		} else {
			err = send(mode[:3], *to, *bytes, *exit)
		}
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "workload:", err)
		os.Exit(1)
	}
}

// pause waits for SIGTERM or SIGINT; as a sandbox's PID 1 it also reaps the
// children that the runtime leaves to it.
func pause() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}

func spin(cpu int) {
	if cpu >= 0 {
		runtime.LockOSThread()
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			fmt.Fprintln(os.Stderr, "workload: pinning to CPU", cpu, err)
			os.Exit(1)
		}
	}
	for x := uint64(0); ; x++ {
		_ = x * x
	}
}

// grow allocates memory step by step, writing every page so that it counts
// in the cgroup, then holds it.
func grow(mib, stepMiB int) {
	var held [][]byte
	for have := 0; have < mib; {
		n := min(stepMiB, mib-have)
		b := make([]byte, n<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		held = append(held, b)
		have += n
		fmt.Printf("mem: %d MiB\n", have)
		time.Sleep(time.Second)
	}
	fmt.Printf("mem: holding %d MiB\n", mib)
	pause()
	_ = held
}

func tcpServe(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Printf("tcp-serve: listening on %s\n", l.Addr())
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			n, _ := io.Copy(io.Discard, c)
			_ = c.Close()
			fmt.Printf("tcp-serve: %d bytes from %s\n", n, c.RemoteAddr())
		}()
	}
}

func udpServe(addr string) error {
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	fmt.Printf("udp-serve: listening on %s\n", c.LocalAddr())
	buf := make([]byte, 65536)
	var total int64
	last := time.Now()
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return err
		}
		total += int64(n)
		if time.Since(last) > time.Second {
			fmt.Printf("udp-serve: %d bytes, last from %s\n", total, from)
			last = time.Now()
		}
	}
}

// sendEvery sends bytes to addr on a new connection every interval, until
// killed; a failed send is reported and tried again at the next tick.
func sendEvery(network, addr string, bytes int64, every time.Duration) error {
	if bytes <= 0 {
		return fmt.Errorf("-every needs -bytes > 0")
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for n := 1; ; n++ {
		if err := send(network, addr, bytes, true); err != nil {
			fmt.Fprintf(os.Stderr, "%s-send %d: %v\n", network, n, err)
		}
		<-t.C
	}
}

// send writes bytes (0: without end) to addr over TCP or UDP.
func send(network, addr string, bytes int64, exit bool) error {
	c, err := net.DialTimeout(network, addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	chunk := make([]byte, 1000)
	var sent int64
	last := time.Now()
	for bytes == 0 || sent < bytes {
		n := int64(len(chunk))
		if bytes > 0 {
			n = min(n, bytes-sent)
		}
		w, err := c.Write(chunk[:n])
		sent += int64(w)
		if err != nil {
			if network == "udp" {
				continue // a refused datagram (no listener yet) is not the end
			}
			return err
		}
		if time.Since(last) > time.Second {
			fmt.Printf("%s-send: %d bytes to %s\n", network, sent, addr)
			last = time.Now()
		}
	}
	fmt.Printf("%s-send: %d bytes to %s, done\n", network, sent, addr)
	if !exit {
		pause()
	}
	return nil
}
