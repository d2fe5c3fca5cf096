// Package poll waits, in plain Go tests, for a condition on a real system
// (an API server, a process) to hold: the testing package's Eventually.
package poll

import (
	"testing"
	"time"
)

// Until calls cond every interval until it returns nil, and fails the test
// with cond's last error when timeout passes first.
func Until(t testing.TB, what string, timeout, interval time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s: %v", what, timeout, err)
		}
		time.Sleep(interval)
	}
}
