// Package netns runs code inside another network namespace: the node agent
// uses it to audit a namespace other than its own, the tests to act as pods.
package netns

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs fn on a locked OS thread switched into the network namespace
// mounted at path (such as /run/netns/x), and switches back afterwards.
// Sockets fn creates stay in that namespace. An empty path runs fn as is.
func Do(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening network namespace %s: %w", path, err)
	}
	defer unix.Close(target)

	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("opening the current network namespace: %w", err)
	}
	defer unix.Close(orig)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering network namespace %s: %w", path, err)
	}
	fnErr := fn()
	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: the runtime ends it with the goroutine
		// rather than reuse it in the wrong namespace.
		return fmt.Errorf("returning from network namespace %s: %w", path, err)
	}
	runtime.UnlockOSThread()
	return fnErr
}

// Open opens the namespace file at path for setns(2) and the netlink
// libraries' namespace options; it returns 0 (the current namespace) and a
// no-op close for "".
func Open(path string) (fd int, closeFn func(), err error) {
	if path == "" {
		return 0, func() {}, nil
	}
	fd, err = unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, nil, fmt.Errorf("opening network namespace %s: %w", path, err)
	}
	return fd, func() { unix.Close(fd) }, nil
}
