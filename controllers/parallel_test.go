package controllers

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestWriteEachBoundsEveryReconcileTogether: the sliver writes of slices
// reconciled at once share the controller's write slots, so no more than
// SliverWriters are in flight however many reconciles write; each write
// runs once.
func TestWriteEachBoundsEveryReconcileTogether(t *testing.T) {
	const slots, reconciles, writes = 3, 4, 25
	r := &SliceReconciler{SliverWriters: slots, writeSlots: make(chan struct{}, slots)}
	var inFlight, most, done atomic.Int64
	gate := make(chan struct{})
	var wg sync.WaitGroup
	for range reconciles {
		wg.Go(func() {
			_ = r.writeEach(context.Background(), writes, func(int) error {
				n := inFlight.Add(1)
				for {
					m := most.Load()
					if n <= m || most.CompareAndSwap(m, n) {
						break
					}
				}
				<-gate // held until every reconcile has had a chance to pile on
				inFlight.Add(-1)
				done.Add(1)
				return nil
			})
		})
	}
	const total = reconciles * writes
	for released := range total {
		// Each release waits for the slots to fill (as far as the writes
		// not yet released can fill them), so that a write past the bound
		// would show. A write released but not yet counted out only makes
		// this release come early: the send waits for the next write.
		for inFlight.Load() < min(slots, total-int64(released)) {
			runtime.Gosched()
		}
		gate <- struct{}{}
	}
	wg.Wait()
	if done.Load() != total {
		t.Fatalf("%d of %d writes ran", done.Load(), total)
	}
	if got := most.Load(); got != slots {
		t.Fatalf("%d sliver writes were in flight at once, want at most (and, with this much work, exactly) %d", got, slots)
	}
}
