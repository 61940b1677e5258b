package main

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// sample is one reading of the daemon.
type sample struct {
	At         float64 `json:"seconds"`
	RSSKB      int     `json:"rss_kb"`
	Goroutines int     `json:"goroutines"`
	FDs        int     `json:"fds"`
	Cycles     int64   `json:"attach_detach_cycles"`
	Conns      int64   `json:"connections"`
	ConnErrs   int64   `json:"connection_errors"`
	Captures   int64   `json:"captures"`
	Frames     int64   `json:"flood_frames"`
}

// run builds the rig, runs the load for duration and samples it.
func run(ctx context.Context, bin string, duration time.Duration, samples int, out string) error {
	r := &rig{bin: bin}
	defer r.close()
	if err := r.start(ctx); err != nil {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, duration)
	defer cancel()
	var wg sync.WaitGroup
	floodErr := make(chan error, 1)
	for _, f := range []func(){
		func() { r.churnLoop(lctx) },
		func() { r.connLoop(lctx) },
		func() { r.captureLoop(lctx) },
		func() { floodErr <- r.floodLoop(lctx) },
	} {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	every := max(duration/time.Duration(max(samples, 1)), time.Second)
	fmt.Printf("soak: %v, a sample every %v; daemon pid %d\n", duration, every, r.daemon.Process.Pid)
	fmt.Printf("%8s %9s %10s %5s %8s %8s %6s %8s %9s\n", "seconds", "rss_MB", "goroutines", "fds", "cycles", "conns", "errors", "captures", "frames")
	var got []sample
	start := time.Now()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-tick.C:
		case <-lctx.Done():
			done = true
		}
		s, err := r.sample(ctx, time.Since(start))
		if err != nil {
			cancel()
			wg.Wait()
			return err
		}
		got = append(got, s)
		fmt.Printf("%8.0f %9.1f %10d %5d %8d %8d %6d %8d %9d\n", s.At, float64(s.RSSKB)/1024, s.Goroutines, s.FDs, s.Cycles, s.Conns, s.ConnErrs, s.Captures, s.Frames)
	}
	wg.Wait()
	if err := <-floodErr; err != nil {
		return fmt.Errorf("mac flood: %w", err)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	summarize(got)
	files, err := write(out, got)
	for _, f := range files {
		fmt.Println("wrote", f)
	}
	return err
}

func (r *rig) sample(ctx context.Context, at time.Duration) (sample, error) {
	pid := r.daemon.Process.Pid
	s := sample{At: at.Seconds(), Cycles: r.cycles.Load(), Conns: r.conns.Load(), ConnErrs: r.connErrs.Load(), Captures: r.captures.Load(), Frames: r.frames.Load()}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("the daemon is gone: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			s.RSSKB, _ = strconv.Atoi(f[1])
		}
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.FDs = len(ents)
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s.Goroutines, err = r.goroutines(qctx)
	return s, err
}

// summarize prints, for each series, its value after warm-up (the first
// fifth of the samples) and at the end, and the largest value after
// warm-up: flat is the goal.
func summarize(got []sample) {
	if len(got) < 2 {
		return
	}
	w := got[len(got)/5]
	last := got[len(got)-1]
	maxOf := func(f func(sample) int) int {
		m := 0
		for _, s := range got[len(got)/5:] {
			m = max(m, f(s))
		}
		return m
	}
	fmt.Printf("after warm-up (%.0f s) -> end (%.0f s), max after warm-up:\n", w.At, last.At)
	fmt.Printf("  rss        %7.1f -> %7.1f MB, max %.1f\n", float64(w.RSSKB)/1024, float64(last.RSSKB)/1024, float64(maxOf(func(s sample) int { return s.RSSKB }))/1024)
	fmt.Printf("  goroutines %7d -> %7d, max %d\n", w.Goroutines, last.Goroutines, maxOf(func(s sample) int { return s.Goroutines }))
	fmt.Printf("  fds        %7d -> %7d, max %d\n", w.FDs, last.FDs, maxOf(func(s sample) int { return s.FDs }))
	fmt.Printf("  load: %d attach/detach cycles, %d connections (%d failed), %d captures, %d flood frames\n",
		last.Cycles, last.Conns, last.ConnErrs, last.Captures, last.Frames)
}

// write puts the samples in soak-DATE.json and the chart in soak-DATE.svg.
func write(dir string, got []sample) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	base := filepath.Join(dir, "soak-"+time.Now().UTC().Format("20060102-150405"))
	j, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(base+".json", append(j, '\n'), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(base+".svg", svg(got), 0o644); err != nil {
		return []string{base + ".json"}, err
	}
	return []string{base + ".json", base + ".svg"}, nil
}

// svg draws one line chart per series over time.
func svg(got []sample) []byte {
	const pw, ph, top, left, gap = 300, 200, 50, 50, 60
	series := []struct {
		title string
		value func(sample) float64
	}{
		{"RSS (MB)", func(s sample) float64 { return float64(s.RSSKB) / 1024 }},
		{"goroutines", func(s sample) float64 { return float64(s.Goroutines) }},
		{"open fds", func(s sample) float64 { return float64(s.FDs) }},
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", left+len(series)*(pw+gap), top+ph+50)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	end := 1.0
	if len(got) > 0 {
		end = max(got[len(got)-1].At, 1)
	}
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="15">tapswitch make soak: %.0f s, %s</text>`+"\n", left, end, html.EscapeString(time.Now().UTC().Format(time.RFC3339)))
	for i, s := range series {
		x0 := left + i*(pw+gap)
		hi := 1.0
		for _, g := range got {
			hi = max(hi, s.value(g))
		}
		hi *= 1.1
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", x0, top-8, s.title)
		fmt.Fprintf(&b, `<polyline fill="none" stroke="#999" points="%d,%d %d,%d %d,%d"/>`+"\n", x0, top, x0, top+ph, x0+pw, top+ph)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%.0f</text><text x="%d" y="%d" text-anchor="end">0</text>`+"\n", x0-4, top+8, hi, x0-4, top+ph)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%.0f s</text>`+"\n", x0+pw, top+ph+16, end)
		var pts []string
		for _, g := range got {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", float64(x0)+g.At/end*pw, float64(top+ph)-s.value(g)/hi*ph))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="#4c72b0" stroke-width="1.5" points="%s"/>`+"\n", strings.Join(pts, " "))
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}
