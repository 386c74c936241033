// Package testutil holds the waiting and leak checks the provider tests
// share. Waits are generous (a loaded 2-core machine is slow, not wrong);
// nothing asserts how fast something happened.
package testutil

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// Wait bounds every wait for something that should happen promptly.
const Wait = 10 * time.Second

// NoLeaks registers a cleanup that fails tb if, a few seconds after the
// test and its other cleanups ended, a goroutine is still running a
// function of pkg (e.g. "voxbridge/agent/openai."; the trailing dot keeps
// the package's _test functions out). Call it first so it runs last.
func NoLeaks(tb testing.TB, pkg string) {
	tb.Helper()
	tb.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			leaked := goroutines(pkg)
			if len(leaked) == 0 {
				return
			}
			if time.Now().After(deadline) {
				tb.Errorf("%d goroutines of %s still running:\n%s", len(leaked), pkg, strings.Join(leaked, "\n\n"))
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func goroutines(pkg string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, pkg) {
			out = append(out, g)
		}
	}
	return out
}

// Eventually polls cond until it holds; after Wait it fails tb with what.
func Eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(Wait)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("after %s: %s", Wait, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Returns runs f and fails tb if it has not returned within Wait (a Close
// that blocks on a hanging server).
func Returns(tb testing.TB, what string, f func()) {
	tb.Helper()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(Wait):
		tb.Fatalf("%s did not return within %s", what, Wait)
	}
}

// Receive reads ch until last(item) holds (that item included) or ch
// closes; closed reports which. It fails tb if neither happens within Wait.
func Receive[T any](tb testing.TB, ch <-chan T, last func(T) bool) (items []T, closed bool) {
	tb.Helper()
	timeout := time.After(Wait)
	for {
		select {
		case v, ok := <-ch:
			if !ok {
				return items, true
			}
			items = append(items, v)
			if last != nil && last(v) {
				return items, false
			}
		case <-timeout:
			tb.Fatalf("after %s and %d items: no end of stream", Wait, len(items))
			return items, false
		}
	}
}

// Next returns the next item on ch; it fails tb if ch closes or nothing
// arrives within Wait.
func Next[T any](tb testing.TB, ch <-chan T) T {
	tb.Helper()
	select {
	case v, ok := <-ch:
		if !ok {
			tb.Fatal("channel closed")
		}
		return v
	case <-time.After(Wait):
		tb.Fatalf("nothing received within %s", Wait)
	}
	var zero T
	return zero
}
