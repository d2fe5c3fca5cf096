package controllers

import (
	"context"
	"errors"
	"sync"
)

// forEach runs fn for 0..n-1 on at most workers goroutines and returns every
// error joined. It stops handing out work once ctx is done.
func forEach(ctx context.Context, n, workers int, fn func(i int) error) error {
	if workers < 1 {
		workers = 1
	}
	workers = min(workers, n)
	next := make(chan int)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			mu.Lock()
			errs = append(errs, ctx.Err())
			mu.Unlock()
			break feed
		}
	}
	close(next)
	wg.Wait()
	return errors.Join(errs...)
}
