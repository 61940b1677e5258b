package gateway

import (
	"sync"
	"time"
)

// tokenBucket limits the rate of ICMP errors as the kernel's icmp_ratelimit
// does (xrlim_allow in net/ipv4/icmp.c): credit accrues with elapsed time up
// to a burst, and each message spends one token. Credit is kept in
// nanoseconds, so no floating point is needed.
type tokenBucket struct {
	interval time.Duration // cost of one token: 1s / rate
	burst    time.Duration // the most credit that can accrue

	mu     sync.Mutex // guards credit and last
	credit time.Duration
	last   time.Time
}

// newTokenBucket allows rate messages per second with a burst of rate
// messages (one second's worth), starting full.
func newTokenBucket(rate int, now time.Time) *tokenBucket {
	interval := time.Second / time.Duration(rate)
	burst := interval * time.Duration(rate)
	return &tokenBucket{interval: interval, burst: burst, credit: burst, last: now}
}

// allow spends one token if there is one at time now. A clock that goes
// backwards adds no credit.
func (b *tokenBucket) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if d := now.Sub(b.last); d > 0 {
		b.credit = min(b.credit+d, b.burst)
		b.last = now
	}
	if b.credit < b.interval {
		return false
	}
	b.credit -= b.interval
	return true
}
