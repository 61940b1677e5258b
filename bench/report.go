package main

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// tests in the order of the table and the chart.
var testOrder = []string{"tcp1", "tcp2", "tcp1v6", "udp64", "lossfree", "ping"}

// results are every measurement of a run, and what the JSON file holds.
type results struct {
	Date     string   `json:"date"`
	Host     hostInfo `json:"host"`
	Rounds   int      `json:"rounds"`
	Quick    bool     `json:"quick"`
	Seconds  float64  `json:"seconds"`
	Switches []string `json:"switches"`
	// Runs maps switch, then test, to the measurements of each round.
	Runs map[string]map[string][]measurement `json:"runs"`
	// Summary maps switch, then test, to the median, min and max.
	Summary map[string]map[string]summary `json:"summary"`
}

type hostInfo struct {
	Kernel string `json:"kernel"`
	CPUs   int    `json:"cpus"`
	Load   string `json:"loadavg_at_start"`
}

type summary struct {
	Unit   string  `json:"unit"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	// Ratio is Median over the Linux bridge's median.
	Ratio     float64 `json:"ratio_to_bridge"`
	SwitchCPU float64 `json:"switch_cpu_pct_median"`
}

func newResults(ts []topology, rounds int, quick bool) *results {
	r := &results{Date: time.Now().UTC().Format(time.RFC3339), Rounds: rounds, Quick: quick,
		Runs: map[string]map[string][]measurement{}}
	for _, t := range ts {
		r.Switches = append(r.Switches, t.name())
		r.Runs[t.name()] = map[string][]measurement{}
	}
	k, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	l, _ := os.ReadFile("/proc/loadavg")
	r.Host = hostInfo{Kernel: strings.TrimSpace(string(k)), CPUs: cpus(), Load: strings.TrimSpace(string(l))}
	return r
}

func cpus() int {
	b, _ := os.ReadFile("/proc/stat")
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "cpu") && !strings.HasPrefix(line, "cpu ") {
			n++
		}
	}
	return n
}

func (r *results) add(sw, test string, m measurement) {
	r.Runs[sw][test] = append(r.Runs[sw][test], m)
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// summarize fills Summary.
func (r *results) summarize() {
	r.Summary = map[string]map[string]summary{}
	for _, sw := range r.Switches {
		r.Summary[sw] = map[string]summary{}
		for _, test := range testOrder {
			ms := r.Runs[sw][test]
			if len(ms) == 0 {
				continue
			}
			var v, c []float64
			for _, m := range ms {
				v = append(v, m.Value)
				c = append(c, m.SwitchCPU)
			}
			r.Summary[sw][test] = summary{Unit: units[test], Median: median(v), Min: slices.Min(v), Max: slices.Max(v), SwitchCPU: median(c)}
		}
	}
	for _, sw := range r.Switches {
		for test, s := range r.Summary[sw] {
			if ref, ok := r.Summary["linux-bridge"][test]; ok && ref.Median > 0 {
				s.Ratio = s.Median / ref.Median
				r.Summary[sw][test] = s
			}
		}
	}
}

// printTable prints one row per test, one column per switch: median
// [min-max] and the ratio to the bridge; then switch CPU for TCP 1 stream.
func (r *results) printTable(w io.Writer) {
	r.summarize()
	const col = 30
	fmt.Fprintf(w, "%-30s", fmt.Sprintf("median [min-max] of %d round(s)", r.Rounds))
	for _, sw := range r.Switches {
		fmt.Fprintf(w, " %*s", col, sw)
	}
	fmt.Fprintln(w)
	for _, test := range testOrder {
		fmt.Fprintf(w, "%-30s", titles[test]+", "+units[test])
		for _, sw := range r.Switches {
			s, ok := r.Summary[sw][test]
			cell := "-"
			if ok {
				cell = fmt.Sprintf("%s [%s-%s]", num(s.Median), num(s.Min), num(s.Max))
				if sw != "linux-bridge" && s.Ratio > 0 {
					cell += fmt.Sprintf(" x%.2f", s.Ratio)
				}
			}
			fmt.Fprintf(w, " %*s", col, cell)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "%-30s", "switch CPU % (TCP 1 stream)")
	for _, sw := range r.Switches {
		cell := "-"
		if s, ok := r.Summary[sw]["tcp1"]; ok {
			cell = cpuStr(s.SwitchCPU)
		}
		fmt.Fprintf(w, " %*s", col, cell)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-30s", "switch CPU % per Gbit/s")
	for _, sw := range r.Switches {
		s, ok := r.Summary[sw]["tcp1"]
		cell := "-"
		if ok && s.SwitchCPU >= 0 && s.Median > 0 {
			cell = fmt.Sprintf("%.1f", s.SwitchCPU/s.Median)
		}
		fmt.Fprintf(w, " %*s", col, cell)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "\n%d CPUs, kernel %s, load average at start %s, %.0f s. x = ratio to linux-bridge.\n",
		r.Host.CPUs, r.Host.Kernel, r.Host.Load, r.Seconds)
	fmt.Fprintln(w, "UDP: 64-byte payloads (106-byte frames); loss-free: highest paced rate of a bisection losing at most 0.1%.")
}

func num(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// write writes bench-DATE.json and bench-DATE.svg into dir, and copies
// them to latest.json and latest.svg.
func (r *results) write(dir string) ([]string, error) {
	r.summarize()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	stamp := time.Now().UTC().Format("20060102-150405")
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	svg := r.svg()
	var files []string
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"bench-" + stamp + ".json", js}, {"bench-" + stamp + ".svg", svg},
		{"latest.json", js}, {"latest.svg", svg},
	} {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return files, err
		}
		files = append(files, p)
	}
	return files, nil
}

// colors of the switches in the chart, in order.
var colors = []string{"#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"}

// svg draws one panel per test: a bar per switch at its median, a whisker
// from min to max, the value and the ratio to the bridge above it.
func (r *results) svg() []byte {
	const pw, ph, top, left, gap = 230, 260, 60, 20, 20
	n := len(testOrder)
	width := left + n*(pw+gap)
	height := top + ph + 90
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15">tapswitch make bench: median [min-max] of %d round(s), %s, %d CPUs, kernel %s</text>`+"\n",
		left, r.Rounds, html.EscapeString(r.Date), r.Host.CPUs, html.EscapeString(r.Host.Kernel))
	fmt.Fprintf(&b, `<text x="%d" y="40" fill="#555">ping: lower is better; the others: higher is better. ×: ratio to linux-bridge.</text>`+"\n", left)
	for i, test := range testOrder {
		x0 := left + i*(pw+gap)
		var max float64
		for _, sw := range r.Switches {
			if s, ok := r.Summary[sw][test]; ok && s.Max > max {
				max = s.Max
			}
		}
		if max == 0 {
			max = 1
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">%s (%s)</text>`+"\n", x0, top-4, html.EscapeString(titles[test]), html.EscapeString(units[test]))
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/>`+"\n", x0, top+ph, x0+pw, top+ph)
		bw := (pw - 10) / max1(len(r.Switches))
		for j, sw := range r.Switches {
			s, ok := r.Summary[sw][test]
			if !ok {
				continue
			}
			y := func(v float64) float64 { return float64(top+ph) - v/max*float64(ph-30) }
			bx := x0 + 5 + j*bw
			fmt.Fprintf(&b, `<rect x="%d" y="%.1f" width="%d" height="%.1f" fill="%s"><title>%s: %s</title></rect>`+"\n",
				bx+2, y(s.Median), bw-4, float64(top+ph)-y(s.Median), colors[j%len(colors)], html.EscapeString(sw), num(s.Median))
			cx := float64(bx) + float64(bw)/2
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", cx, y(s.Min), cx, y(s.Max))
			label := num(s.Median)
			if sw != "linux-bridge" && s.Ratio > 0 {
				label += fmt.Sprintf(" ×%.2f", s.Ratio)
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="9">%s</text>`+"\n", cx, y(s.Max)-4, html.EscapeString(label))
		}
	}
	for j, sw := range r.Switches {
		x := left + j*150
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n",
			x, top+ph+30, colors[j%len(colors)], x+16, top+ph+40, html.EscapeString(sw))
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

func max1(n int) int {
	if n < 1 {
		return 1
	}
	return n
}
